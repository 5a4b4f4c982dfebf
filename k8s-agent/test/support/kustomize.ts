// `kubectl kustomize` for the manifest tests. The kustomizations use `labels`
// and patch `options.allowKindChange`; the tests require the kustomize v5 of
// kubectl ≥ 1.27, so an older kubectl (Debian's kubernetes-client 1.20 embeds
// kustomize v2) fails with a clear message instead of a confusing build error.
import { execFileSync } from "node:child_process";

export function hasKubectl(): boolean {
  try {
    execFileSync("kubectl", ["version", "--client"], { stdio: "ignore", timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/** The embedded kustomize's major version, from `kubectl version --client`. */
export function kustomizeMajor(): number | undefined {
  const out = execFileSync("kubectl", ["version", "--client"], { encoding: "utf8", timeout: 10_000 });
  const m = /Kustomize Version: v?(\d+)\./.exec(out);
  return m ? Number(m[1]) : undefined;
}

export function kustomize(dir: string): string {
  const major = kustomizeMajor();
  if (major === undefined || major < 5)
    throw new Error(`kubectl's kustomize is v${major ?? "?"}; these kustomizations need v5 (kubectl >= 1.27)`);
  return execFileSync("kubectl", ["kustomize", dir], { encoding: "utf8", timeout: 30_000 });
}
