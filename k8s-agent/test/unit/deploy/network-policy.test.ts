// The network-policy component: kustomize renders it onto the base with the listeners component,
// the NetworkPolicy validates against the Kubernetes schema, selects the relay pods, and opens
// exactly the relay's and the listeners' ports to clients and the admin port to monitoring and
// bk-bcs's hook operator only.
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1";
import { describe, expect, it } from "vitest";
import { type Obj, renderWithComponents } from "./kustomize.ts";

type Rule = { from: Array<Record<string, unknown>>; ports: Array<{ port: number; protocol: string }> };

describe("network-policy component", () => {
  const objects = renderWithComponents(["listeners", "network-policy"]);
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

  it("opens the relay port and every listener Service's port to clients, and the admin port to monitoring and the hook only", () => {
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
      // bcs-hook-operator calls the pre-delete hook (docs/autoscaling-bk-bcs.md).
      { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "bcs-system" } } },
    ]);
    expect(policy.spec.ingress).toHaveLength(2);
  });
});
