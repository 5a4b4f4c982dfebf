// The network-policy component: kustomize renders it onto the base with the listeners component,
// the NetworkPolicy validates against the Kubernetes schema, selects the relay pods, and opens
// exactly the relay's and the listeners' ports to clients and the admin port to monitoring only.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1";
import { afterAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";

const DEPLOY = join(dirname(fileURLToPath(import.meta.url)), "../../../deploy");
const work = mkdtempSync(join(tmpdir(), "hopway-netpol-kustomize-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

type Obj = Record<string, unknown> & { kind: string; metadata: { name: string; namespace?: string } };
type Rule = { from: Array<Record<string, unknown>>; ports: Array<{ port: number; protocol: string }> };

function render(): Obj[] {
  writeFileSync(
    join(work, "kustomization.yaml"),
    [
      "apiVersion: kustomize.config.k8s.io/v1beta1",
      "kind: Kustomization",
      "resources:",
      `  - ${relative(work, join(DEPLOY, "base"))}`,
      "components:",
      `  - ${relative(work, join(DEPLOY, "components", "listeners"))}`,
      `  - ${relative(work, join(DEPLOY, "components", "network-policy"))}`,
      "",
    ].join("\n"),
  );
  // kubectl is part of the CI machine (.ci/system-deps.sh): a missing one fails here, never skips.
  const out = execFileSync("kubectl", ["kustomize", work], { encoding: "utf8", timeout: 30_000 });
  return parseAllDocuments(out).map((d) => d.toJS() as Obj);
}

describe("network-policy component", () => {
  const objects = render();
  const policy = objects.find((o) => o.kind === "NetworkPolicy") as Obj & {
    spec: { podSelector: { matchLabels: Record<string, string> }; ingress: Rule[] };
  };
  const sts = objects.find((o) => o.kind === "StatefulSet") as Obj & {
    spec: {
      template: { metadata: { labels: Record<string, string> }; spec: { containers: Array<Record<string, unknown>> } };
    };
  };
  const containerPorts = (sts.spec.template.spec.containers[0]?.ports ?? []) as Array<{
    name: string;
    containerPort: number;
  }>;
  const portOf = (name: string) => containerPorts.find((p) => p.name === name)?.containerPort;

  it("is a valid NetworkPolicy in the agent's namespace that selects the relay pods", () => {
    expect(policy.metadata.namespace).toBe("hopway");
    expect(() => new NetworkPolicy(policy as never).validate()).not.toThrow();
    const broken = structuredClone(policy);
    // The validator is not a rubber stamp: a selector that is not an object fails it.
    (broken.spec as Record<string, unknown>).podSelector = "all pods";
    expect(() => new NetworkPolicy(broken as never).validate()).toThrow();
    for (const [k, v] of Object.entries(policy.spec.podSelector.matchLabels)) {
      expect(sts.spec.template.metadata.labels[k], k).toBe(v);
    }
  });

  it("opens the relay port and every listener Service's port to clients, and the admin port to monitoring only", () => {
    const [clients, monitoring] = policy.spec.ingress as [Rule, Rule];
    const listenerPorts = objects
      .filter(
        (o) =>
          o.kind === "Service" &&
          (o.metadata as { labels?: Record<string, string> }).labels?.["app.kubernetes.io/component"] === "listener",
      )
      .flatMap((s) => ((s.spec as { ports: Array<{ targetPort: number }> }).ports ?? []).map((p) => p.targetPort));
    expect(clients.ports.map((p) => p.port).sort()).toEqual([portOf("relay"), ...listenerPorts].sort());
    expect(clients.from).toContainEqual({ namespaceSelector: { matchLabels: { "hopway.dev/client": "true" } } });
    expect(monitoring.ports.map((p) => p.port)).toEqual([portOf("admin")]);
    expect(monitoring.from).toEqual([
      { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } } },
    ]);
    expect(policy.spec.ingress).toHaveLength(2);
  });
});
