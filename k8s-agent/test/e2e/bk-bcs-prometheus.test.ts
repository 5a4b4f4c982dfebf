// The state floor's path in the bk-bcs overlay, for real: four admin servers
// standing in for the pods of a GameStatefulSet (real HTTP on loopback),
// scraped by a real Prometheus with the overlay's ServiceMonitor relabeling,
// queried with the overlay's prometheus-adapter rules as the adapter renders
// them, and the answers fed to the GPA's formula. Kubernetes service
// discovery is emulated by static targets carrying the labels it would set
// for pods whose controller is a GameStatefulSet.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { HpaModel, hpaMetricProposal } from "@hopway/core/testing/hpa-model";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { type AdminServer, startAdminServer } from "../../src/admin/server.ts";
import { AgentClient } from "../../src/client/index.ts";
import { ScalingConfigSchema } from "../../src/scaling/config.ts";
import { LOAD_METRIC, ScalingSignals, STATE_FLOOR_METRIC } from "../../src/scaling/signals.ts";
import { type RunningPrometheus, renderAdapterQuery, startPrometheus } from "../support/prometheus.ts";

const DEPLOY = join(dirname(fileURLToPath(import.meta.url)), "../../deploy");
const OVERLAY = join(DEPLOY, "overlays/bk-bcs");
const NS = "hopway";
const GSS = "hopway-agent";
const PODS = 4;

// biome-ignore lint/suspicious/noExplicitAny: shipped YAML, narrowed where read
type Obj = Record<string, any>;
const yaml = (path: string) => parseYaml(readFileSync(path, "utf8")) as Obj;
const rulesOf = (configMap: Obj) => (parseYaml(configMap.data["config.yaml"]) as { rules: Obj[] }).rules;
const overlayRules = rulesOf(yaml(join(OVERLAY, "adapter-config.patch.yaml")));
const baseRules = rulesOf(yaml(join(DEPLOY, "prometheus-adapter/adapter-config.yaml")));
const smPatch = yaml(join(OVERLAY, "servicemonitor.patch.yaml")) as Obj[];
const baseSm = yaml(join(DEPLOY, "base/servicemonitor.yaml"));
const gpa = yaml(join(OVERLAY, "gpa.yaml"));
const rule = (rules: Obj[], metric: string) => rules.find((r) => r.name.as === metric) as Obj;

const LOCAL_API_TOKEN = "bk-bcs-local-api-token-0123";
const pods: Array<{ name: string; server: AdminServer; client: AgentClient }> = [];
let prom: RunningPrometheus;

async function until<T>(what: string, fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await fn();
    if (ok(last)) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last)}`);
}

const floorQuery = (rules: Obj[], label: string) =>
  renderAdapterQuery(rule(rules, STATE_FLOOR_METRIC), NS, label, [GSS]);

beforeAll(async () => {
  for (let ordinal = 0; ordinal < PODS; ordinal++) {
    const registry = new Registry();
    const name = `${GSS}-${ordinal}`;
    const signals = new ScalingSignals({
      config: ScalingConfigSchema.parse({ workload: GSS }),
      podName: name,
      registry,
    });
    const server = await startAdminServer({
      listen: "127.0.0.1:0",
      registry,
      scaling: signals,
      tunnels: () => 0,
      ready: () => true,
      // The local API's writes need their bearer token (docs/security/relay.md).
      localApiToken: LOCAL_API_TOKEN,
    });
    pods.push({ name, server, client: new AgentClient({ baseUrl: server.url, token: LOCAL_API_TOKEN }) });
  }
  // The overlay replaces the base ServiceMonitor's first relabeling.
  const op = smPatch.find((p) => p.path === "/spec/endpoints/0/relabelings/0") as Obj;
  expect(op.op).toBe("replace");
  const endpoint = baseSm.spec.endpoints[0] as Obj;
  const relabelings = [op.value, ...(endpoint.relabelings as Obj[]).slice(1)];
  prom = await startPrometheus({
    job: "hopway-agent",
    metricsPath: endpoint.path,
    relabelings,
    targets: pods.map((p) => ({
      port: p.server.address.port,
      labels: {
        __meta_kubernetes_namespace: NS,
        __meta_kubernetes_pod_name: p.name,
        __meta_kubernetes_pod_controller_kind: "GameStatefulSet",
        __meta_kubernetes_pod_controller_name: GSS,
      },
    })),
  });
  await until(
    "all targets up",
    () => prom.query(`up{job="hopway-agent"} == 1`),
    (rows) => rows.length === PODS,
  );
}, 60_000);

afterAll(async () => {
  await prom?.stop();
  await Promise.all(pods.map((p) => p.server.close()));
});

describe("the bk-bcs overlay's metrics path", () => {
  it("labels the series with the GameStatefulSet, the overlay's rule finds the floor, the base rule does not", async () => {
    for (const [i, p] of pods.entries())
      await p.client.report({ load: 0.1, holds_state: i === 2, state_items: i === 2 ? 40 : 0 });
    const floor = await until(
      "the floor of ordinal 2",
      () => prom.query(floorQuery(overlayRules, "gamestatefulset")),
      (rows) => rows.length === 1 && rows[0]?.value === 3,
    );
    expect(floor[0]?.metric).toEqual({ gamestatefulset: GSS });
    const series = await prom.query(`${STATE_FLOOR_METRIC}{namespace="${NS}"}`);
    expect(series).toHaveLength(PODS);
    for (const s of series) {
      expect(s.metric.gamestatefulset).toBe(GSS);
      expect(s.metric.statefulset).toBeUndefined();
    }
    // The base rules key the floor on `statefulset`: they see nothing here, hence the overlay's rule.
    expect(await prom.query(floorQuery(baseRules, "statefulset"))).toEqual([]);
    // Each pod's report reaches Prometheus at that pod's next scrape.
    const loadQuery = renderAdapterQuery(
      rule(overlayRules, LOAD_METRIC),
      NS,
      "pod",
      pods.map((p) => p.name),
    );
    const load = await until(
      "every pod's load",
      () => prom.query(loadQuery),
      (rows) => rows.length === PODS && rows.every((r) => r.value === 0.1),
    );
    expect(load.map((r) => r.metric.pod).sort()).toEqual(pods.map((p) => p.name));
  });

  it("fed to the GPA's formula: held at 3 while ordinal 2 holds state, down to minReplicas once it has moved", async () => {
    const target = (type: "Pods" | "Object") => (gpa.spec.metric.metrics as Obj[]).find((m) => m.type === type) as Obj;
    expect(target("Object").object.target).toEqual({ type: "AverageValue", averageValue: "1" });
    const values = async () => {
      const load = await prom.query(
        renderAdapterQuery(
          rule(overlayRules, LOAD_METRIC),
          NS,
          "pod",
          pods.map((p) => p.name),
        ),
      );
      const floor = await prom.query(floorQuery(overlayRules, "gamestatefulset"));
      return { load: load.map((r) => r.value), floor: floor[0]?.value ?? Number.NaN };
    };
    const proposal = (v: { load: number[]; floor: number }) => {
      const model = new HpaModel({ minReplicas: gpa.spec.minReplicas, maxReplicas: gpa.spec.maxReplicas });
      return model.step(0, PODS, [
        { type: "Pods", name: LOAD_METRIC, target: { averageValue: 0.7 }, values: v.load },
        { type: "Object", name: STATE_FLOOR_METRIC, target: { averageValue: 1 }, value: v.floor },
      ]);
    };
    const held = await values();
    expect(
      hpaMetricProposal(
        { type: "Object", name: STATE_FLOOR_METRIC, target: { averageValue: 1 }, value: held.floor },
        PODS,
      ),
    ).toBe(3);
    expect(proposal(held).recommended).toBe(3);

    await pods[2]?.client.report({ load: 0.1, holds_state: false, state_items: 0 });
    const moved = await until("the floor to drop", values, (v) => v.floor === 0);
    expect(proposal(moved)).toMatchObject({ recommended: 1, replicas: 2 }); // ceil(0.4 / 0.7) = 1, minReplicas 2
  });
});
