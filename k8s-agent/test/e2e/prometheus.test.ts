// The metrics path of docs/contract/autoscaling.md §2, for real: four admin servers
// (one per StatefulSet pod, ordinals 0-3, real HTTP on loopback, each with the
// relay metrics and the scaling gauges on its registry) scraped every second
// by a real Prometheus (the Debian binary, started here with a generated
// config and a temporary TSDB). The PromQL of the SHIPPED prometheus-adapter
// rules, rendered the way the adapter renders it, is run through Prometheus's
// HTTP API, and its answers are fed to the HPA v2 model to prove the loop:
// out on load, never below the highest ordinal holding state, in once state
// has moved.
//
// What is emulated, and why: there is no cluster here, so Kubernetes service
// discovery is replaced by static targets that carry the same __meta_*
// labels Kubernetes SD would attach, and the relabelings are the ones the
// Prometheus operator generates for a ServiceMonitor (namespace, pod) plus
// the shipped ServiceMonitor's own (statefulset), converted to Prometheus
// syntax from the shipped file.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { computeWorkloadScaling } from "@hopway/core/scaling";
import { HpaModel, type HpaSpec } from "@hopway/core/testing/hpa-model";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { freePort } from "../../../test/support/loopback-mesh.ts";
import { type AdminServer, startAdminServer } from "../../src/admin/server.ts";
import { AgentClient } from "../../src/client/index.ts";
import { createRelayMetrics } from "../../src/metrics.ts";
import { ScalingConfigSchema } from "../../src/scaling/config.ts";
import { ScalingSignals } from "../../src/scaling/signals.ts";
import { renderAdapterQuery, toPrometheusRelabel } from "../support/prometheus.ts";

const AGENT = join(dirname(fileURLToPath(import.meta.url)), "../..");
const NS = "hopway";
const STS = "hopway-agent";
const PODS = 4;

// biome-ignore lint/suspicious/noExplicitAny: shipped YAML, narrowed where read
type Obj = Record<string, any>;
const shipped = (file: string) =>
  readFileSync(join(AGENT, "deploy", file), "utf8")
    .split(/^---$/m)
    .map((d) => parseYaml(d) as Obj);
const adapterRules = (parseYaml(shipped("prometheus-adapter/adapter-config.yaml")[0]?.data["config.yaml"]) as Obj)
  .rules as Obj[];
const serviceMonitor = shipped("base/servicemonitor.yaml")[0] as Obj;
const hpaManifest = shipped("base/hpa.yaml")[0] as Obj;

interface Pod {
  name: string;
  ordinal: number;
  server: AdminServer;
  client: AgentClient;
  registry: Registry;
}
const pods: Pod[] = [];
let prom: ChildProcess | undefined;
let promUrl = "";
let promLog = "";
let workDir = "";

const ruleFor = (metric: string) => adapterRules.find((r) => r.name.as === metric) as Obj;

async function query(q: string): Promise<Array<{ metric: Record<string, string>; value: number }>> {
  const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(q)}`);
  const body = (await res.json()) as {
    status: string;
    error?: string;
    data: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> };
  };
  if (body.status !== "success") throw new Error(`query failed: ${body.error} (${q})`);
  expect(body.data.resultType).toBe("vector");
  return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
}

/** What the custom metrics API would answer the HPA: per-pod load for the current pods, the StatefulSet's floor. */
async function adapterValues(
  replicas: number,
): Promise<{ load: Array<number | undefined>; floor: number | undefined }> {
  const names = pods.slice(0, replicas).map((p) => p.name);
  const loadRows = await query(renderAdapterQuery(ruleFor("hopway_load_factor"), NS, "pod", names));
  const byPod = new Map(loadRows.map((r) => [r.metric.pod, r.value]));
  const floorRows = await query(renderAdapterQuery(ruleFor("hopway_state_floor"), NS, "statefulset", [STS]));
  expect(floorRows.length).toBeLessThanOrEqual(1);
  return { load: names.map((n) => byPod.get(n)), floor: floorRows[0]?.value };
}

async function waitFor<T>(what: string, fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (ok(last)) return last;
    } catch {
      // Prometheus still starting
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last)}\n${promLog.slice(-2000)}`);
}

beforeAll(async () => {
  for (let ordinal = 0; ordinal < PODS; ordinal++) {
    const registry = new Registry();
    const name = `${STS}-${ordinal}`;
    const signals = new ScalingSignals({
      config: ScalingConfigSchema.parse({ workload: STS }),
      podName: name,
      registry,
    });
    // The relay's metrics share the registry, as in the agent: promtool checks them too.
    createRelayMetrics(registry, {
      counters: () => ({ up: { client: 10 * ordinal, relay: 0 }, down: { client: 0, relay: 5 } }),
      activeTunnels: () => 0,
      openConnections: () => 0,
      routeTableVersion: () => 7,
      routeTableFetchedAt: () => Date.now() - 1000,
      edgeReachable: () => true,
    });
    const server = await startAdminServer({
      listen: "127.0.0.1:0",
      registry,
      scaling: signals,
      tunnels: () => 0,
      ready: () => true,
      localApiToken: "prom-local-api-token-0123",
    });
    const client = new AgentClient({ baseUrl: server.url, token: "prom-local-api-token-0123" });
    pods.push({ name, ordinal, server, client, registry });
  }

  workDir = mkdtempSync(join(tmpdir(), "hopway-prom-"));
  const port = await freePort("127.0.0.1");
  promUrl = `http://127.0.0.1:${port}`;
  const endpoint = serviceMonitor.spec.endpoints[0] as Obj;
  const config = {
    global: { scrape_interval: "1s", scrape_timeout: "900ms", evaluation_interval: "1s" },
    scrape_configs: [
      {
        job_name: "hopway-agent",
        metrics_path: endpoint.path,
        static_configs: pods.map((p) => ({
          targets: [`127.0.0.1:${p.server.address.port}`],
          labels: {
            __meta_kubernetes_namespace: NS,
            __meta_kubernetes_pod_name: p.name,
            __meta_kubernetes_pod_controller_kind: "StatefulSet",
            __meta_kubernetes_pod_controller_name: STS,
          },
        })),
        relabel_configs: [
          // Generated by the Prometheus operator for every ServiceMonitor endpoint.
          { source_labels: ["__meta_kubernetes_namespace"], target_label: "namespace" },
          { source_labels: ["__meta_kubernetes_pod_name"], target_label: "pod" },
          // The shipped ServiceMonitor's own.
          ...(endpoint.relabelings as Obj[]).map(toPrometheusRelabel),
        ],
      },
    ],
  };
  writeFileSync(join(workDir, "prometheus.yml"), stringifyYaml(config));
  const check = spawnSync("promtool", ["check", "config", join(workDir, "prometheus.yml")], { encoding: "utf8" });
  expect(check.status, check.stdout + check.stderr).toBe(0);
  prom = spawn(
    "prometheus",
    [
      `--config.file=${join(workDir, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(workDir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--storage.tsdb.retention.time=1h",
      "--log.level=warn",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  prom.stdout?.on("data", (d: Buffer) => (promLog += d.toString()));
  prom.stderr?.on("data", (d: Buffer) => (promLog += d.toString()));
  await waitFor(
    "Prometheus ready",
    () => fetch(`${promUrl}/-/ready`).then((r) => r.status),
    (s) => s === 200,
    30_000,
  );
  await waitFor(
    "all targets up",
    () => query(`up{job="hopway-agent"} == 1`),
    (rows) => rows.length === PODS,
  );
}, 60_000);

afterAll(async () => {
  if (prom && prom.exitCode === null) {
    const exited = new Promise((r) => prom?.once("exit", r));
    prom.kill("SIGTERM");
    const timer = setTimeout(() => prom?.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  }
  await Promise.all(pods.map((p) => p.server.close()));
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

describe("the scraped metrics", () => {
  it("pass promtool check metrics", async () => {
    await pods[1]?.client.report({ load: 0.5, holds_state: true, state_items: 3 });
    for (const p of pods) {
      const text = await (await fetch(`${p.server.url}/metrics`)).text();
      expect(text).toContain("hopway_state_floor");
      expect(text).toContain("hopway_relay_bytes_total");
      const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
      expect(r.status, `${p.name}: ${r.stdout}${r.stderr}`).toBe(0);
      expect((r.stdout + r.stderr).trim()).toBe("");
    }
    // The linter does object (so the check above can fail): a counter without _total.
    const bad = spawnSync("promtool", ["check", "metrics"], {
      input: "# HELP foo Foo.\n# TYPE foo counter\nfoo 1\n",
      encoding: "utf8",
    });
    expect(bad.status).not.toBe(0);
  });

  it("carry namespace, pod and statefulset labels after the ServiceMonitor's relabeling", async () => {
    const rows = await query("hopway_state_floor");
    expect(rows.map((r) => r.metric.pod).sort()).toEqual(pods.map((p) => p.name));
    for (const r of rows) expect(r.metric).toMatchObject({ namespace: NS, statefulset: STS, job: "hopway-agent" });
  });
});

describe("the shipped adapter rules against Prometheus", () => {
  it("answer per-pod load and the max state floor over the StatefulSet", async () => {
    await pods[0]?.client.report({ load: 0.25, holds_state: true });
    await pods[1]?.client.report({ load: 0.5, holds_state: false });
    await pods[2]?.client.report({ load: 0.75, holds_state: true });
    await pods[3]?.client.report({ load: 0.1, holds_state: false });
    const expected = { load: [0.25, 0.5, 0.75, 0.1], floor: 3 }; // floor = ordinal 2 + 1
    const v = await waitFor(
      "the new reports to be scraped",
      () => adapterValues(PODS),
      (x) => JSON.stringify(x) === JSON.stringify(expected),
    );
    expect(v).toEqual(expected);
    // Only the pods the HPA asks about are returned (the matcher selects them by name).
    expect((await adapterValues(2)).load).toEqual([0.25, 0.5]);
    // A single-object query uses = rather than =~ and still answers.
    const single = await query(renderAdapterQuery(ruleFor("hopway_load_factor"), NS, "pod", [pods[3]?.name as string]));
    expect(single.map((r) => r.value)).toEqual([0.1]);
  });
});

describe("scale scenario: load rises then falls while some pods hold state", () => {
  it("scales out on load, never below the highest pod holding state, in once state has moved", async () => {
    const spec: HpaSpec = {
      minReplicas: hpaManifest.spec.minReplicas,
      maxReplicas: hpaManifest.spec.maxReplicas,
      behavior: hpaManifest.spec.behavior,
    };
    expect(spec.minReplicas).toBe(2);
    const hpa = new HpaModel(spec);
    // The HPA's clock: one step per minute (the controller syncs every 15 s;
    // a minute per step keeps the table short). Prometheus runs in real time.
    type Step = { loads: number[]; holds: boolean[]; expect: number; why: string };
    const steps: Step[] = [
      { loads: [0.6, 0.6], holds: [true, false], expect: 2, why: "ratio 0.857: ceil(1.71) = 2" },
      { loads: [1.2, 1.2], holds: [true, true], expect: 4, why: "ratio 1.71: ceil(3.43) = 4, within +100 %" },
      { loads: [0.7, 0.7, 0.6, 0.5], holds: [true, true, true, true], expect: 4, why: "ratio 0.893: ceil(3.57) = 4" },
      {
        loads: [0.2, 0.2, 0.1, 0.1],
        holds: [true, false, false, true],
        expect: 4,
        why: "load asks for 1, but ordinal 3 holds state: floor 4",
      },
      {
        loads: [0.2, 0.2, 0.1, 0.1],
        holds: [true, true, false, false],
        expect: 4,
        why: "state moved to 0-1 (floor 2), but the 300 s window still holds 4",
      },
      { loads: [0.2, 0.2, 0.1, 0.1], holds: [true, true, false, false], expect: 4, why: "window" },
      { loads: [0.2, 0.2, 0.1, 0.1], holds: [true, true, false, false], expect: 4, why: "window" },
      { loads: [0.2, 0.2, 0.1, 0.1], holds: [true, true, false, false], expect: 4, why: "window" },
      { loads: [0.2, 0.2, 0.1, 0.1], holds: [true, true, false, false], expect: 3, why: "window over: 1 pod/60 s" },
      { loads: [0.2, 0.2, 0.1], holds: [true, true, false], expect: 2, why: "down to the floor and minReplicas" },
      { loads: [0.3, 0.3], holds: [true, true], expect: 2, why: "steady" },
    ];
    let replicas = 2;
    const trace: string[] = [];
    for (const [i, step] of steps.entries()) {
      expect(step.loads.length, `step ${i}: one load per running pod`).toBe(replicas);
      // Running pods report; pods above the replica count do not exist: they report nothing held and no load.
      for (const p of pods) {
        const running = p.ordinal < replicas;
        await p.client.report({
          load: running ? (step.loads[p.ordinal] ?? 0) : 0,
          holds_state: running ? (step.holds[p.ordinal] ?? false) : false,
        });
      }
      const expectedFloor = Math.max(0, ...step.holds.map((h, o) => (h ? o + 1 : 0)));
      const v = await waitFor(
        `step ${i} scraped`,
        () => adapterValues(replicas),
        (x) => (x.floor ?? 0) === expectedFloor && x.load.every((l, o) => l === step.loads[o]),
      );
      const r = hpa.step(i * 60_000, replicas, [
        { type: "Pods", name: "hopway_load_factor", target: { averageValue: 0.7 }, values: v.load },
        { type: "Object", name: "hopway_state_floor", target: { averageValue: 1 }, value: v.floor ?? 0 },
      ]);
      trace.push(
        `t=${i * 60}s replicas ${replicas} → ${r.replicas} (load ${r.proposals.hopway_load_factor}, floor ${r.proposals.hopway_state_floor}${r.limitedBy ? `, ${r.limitedBy}` : ""}): ${step.why}`,
      );
      expect(r.replicas, trace.join("\n")).toBe(step.expect);
      // The invariant the whole design exists for.
      expect(r.replicas).toBeGreaterThanOrEqual(expectedFloor);
      // And what the coordinator tells the pods at this point.
      if (i === 3) {
        const reports = step.loads.map((load, o) => ({
          workload: STS,
          ordinal: o,
          load,
          holds_state: step.holds[o] ?? false,
        }));
        const s = computeWorkloadScaling(STS, reports, { minReplicas: spec.minReplicas });
        expect(s).toMatchObject({ desired_by_load: 2, state_floor: 4, draining: [2, 3], desired_replicas: 4 });
      }
      replicas = r.replicas;
    }
    console.log(trace.join("\n"));
  });
});
