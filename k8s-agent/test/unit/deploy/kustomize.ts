// Renders the base with kustomize components, as an overlay of a user's would, for the
// components' tests.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";

export const DEPLOY = join(dirname(fileURLToPath(import.meta.url)), "../../../deploy");

export type Obj = {
  kind: string;
  metadata: { name: string; namespace?: string };
  spec: Record<string, unknown>;
} & Record<string, unknown>;

/** The objects `kubectl kustomize` builds from the base and the named components (under deploy/components). */
export function renderWithComponents(components: string[]): Obj[] {
  const work = mkdtempSync(join(tmpdir(), "hopway-kustomize-"));
  try {
    writeFileSync(
      join(work, "kustomization.yaml"),
      [
        "apiVersion: kustomize.config.k8s.io/v1beta1",
        "kind: Kustomization",
        "resources:",
        // kustomize takes only relative paths to other kustomizations.
        `  - ${relative(work, join(DEPLOY, "base"))}`,
        "components:",
        ...components.map((c) => `  - ${relative(work, join(DEPLOY, "components", c))}`),
        "",
      ].join("\n"),
    );
    // kubectl is part of the CI machine (.ci/system-deps.sh): a missing one fails here, never skips.
    const out = execFileSync("kubectl", ["kustomize", work], { encoding: "utf8", timeout: 30_000 });
    return parseAllDocuments(out).map((d) => d.toJS() as Obj);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
