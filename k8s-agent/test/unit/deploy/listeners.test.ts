// The listeners component: kustomize renders it onto the base, every Service validates against
// the Kubernetes schema and forwards to the relay pods, and its port is a listener port the
// agent's schema accepts.
import { ListenerSchema } from "@hopway/core/listener";
import { Service } from "kubernetes-models/v1";
import { describe, expect, it } from "vitest";
import { type Obj, renderWithComponents } from "./kustomize.ts";

describe("listeners component", () => {
  const objects = renderWithComponents(["listeners"]);
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
