// The listeners component: kustomize renders it onto the base, every Service validates against
// the Kubernetes schema and forwards to the relay pods, and its port is a listener port the
// agent's schema accepts.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { ListenerSchema } from "@hopway/core/listener";
import { Service } from "kubernetes-models/v1";
import { afterAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";

const DEPLOY = join(dirname(fileURLToPath(import.meta.url)), "../../../deploy");
const work = mkdtempSync(join(tmpdir(), "hopway-listeners-kustomize-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

type Obj = { kind: string; metadata: { name: string; namespace?: string }; spec: Record<string, unknown> } & Record<
  string,
  unknown
>;

function render(): Obj[] {
  writeFileSync(
    join(work, "kustomization.yaml"),
    [
      "apiVersion: kustomize.config.k8s.io/v1beta1",
      "kind: Kustomization",
      "resources:",
      // kustomize takes only relative paths to other kustomizations.
      `  - ${relative(work, join(DEPLOY, "base"))}`,
      "components:",
      `  - ${relative(work, join(DEPLOY, "components", "listeners"))}`,
      "",
    ].join("\n"),
  );
  // kubectl is part of the CI machine (.ci/system-deps.sh): a missing one fails here, never skips.
  const out = execFileSync("kubectl", ["kustomize", work], { encoding: "utf8", timeout: 30_000 });
  return parseAllDocuments(out).map((d) => d.toJS() as Obj);
}

describe("listeners component", () => {
  const objects = render();
  const listenerServices = objects.filter(
    (o) =>
      o.kind === "Service" &&
      (o.metadata as { labels?: Record<string, string> }).labels?.["app.kubernetes.io/component"] === "listener",
  );

  it("adds listener Services to the base, in the agent's namespace, valid against the Kubernetes schema", () => {
    expect(listenerServices.map((s) => s.metadata.name)).toEqual(["redis-eu"]);
    for (const s of listenerServices) {
      expect(s.metadata.namespace).toBe("hopway");
      expect(() => new Service(s as never).validate()).not.toThrow();
    }
    // The validator is not a rubber stamp: a port given as text fails it.
    const broken = structuredClone(listenerServices[0] as Obj);
    (broken.spec.ports as Array<Record<string, unknown>>)[0] = { port: "6379" };
    expect(() => new Service(broken as never).validate()).toThrow();
  });

  it("selects the relay pods of the StatefulSet and forwards to a port a listener can declare", () => {
    const sts = objects.find((o) => o.kind === "StatefulSet") as Obj;
    const podLabels = (sts.spec.template as { metadata: { labels: Record<string, string> } }).metadata.labels;
    for (const s of listenerServices) {
      for (const [k, v] of Object.entries(s.spec.selector as Record<string, string>)) expect(podLabels[k]).toBe(v);
      for (const p of s.spec.ports as Array<{ port: number; targetPort: number }>) {
        expect(typeof p.targetPort).toBe("number");
        const decl = ListenerSchema.safeParse({
          listen: `0.0.0.0:${p.targetPort}`,
          target: `${s.metadata.name}:${p.port}`,
        });
        expect(decl.success, JSON.stringify(decl.error?.issues)).toBe(true);
      }
    }
  });
});
