import { computeWorkloadScaling } from "@hopway/core/scaling";
import { ScalingReportSchema } from "@hopway/core/schema";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { ScalingConfigSchema } from "../../src/scaling/config.ts";
import { type StartScalingOptions, startDeletionCost } from "../../src/scaling/index.ts";
import { ScalingSignals } from "../../src/scaling/signals.ts";

const make = (podName: string, config: Record<string, unknown> = { workload: "relay" }) => {
  const registry = new Registry();
  let t = Date.UTC(2026, 0, 1);
  const signals = new ScalingSignals({
    config: ScalingConfigSchema.parse(config),
    podName,
    registry,
    now: () => t,
  });
  return { registry, signals, tick: (ms: number) => (t += ms) };
};

const value = async (registry: Registry, name: string) => {
  const m = await registry.getSingleMetric(name)?.get();
  return m?.values[0]?.value;
};

describe("config", () => {
  it("is prefault-able and validates the workload name", () => {
    const c = ScalingConfigSchema.parse(undefined);
    expect(c).toMatchObject({ workload: "", target_load: 0.7, local_api_from: "loopback", undrain_after_seconds: 120 });
    expect(c.deletion_cost).toEqual({ enabled: false, min_interval_seconds: 30, max_backoff_seconds: 300 });
    const bad = ScalingConfigSchema.safeParse({ workload: "Not_A_Name", deletion_cost: { min_interval_seconds: 0 } });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues.map((i) => i.path.join("."))).toEqual(["workload", "deletion_cost.min_interval_seconds"]);
  });
});

describe("ScalingSignals", () => {
  it("exports load, state floor (ordinal + 1 while holding state) and items", async () => {
    const { registry, signals } = make("relay-4");
    expect(await value(registry, "hopway_state_floor")).toBe(0);
    signals.setReport({ load: 0.8, holds_state: true, state_items: 120 });
    expect(await value(registry, "hopway_load_factor")).toBe(0.8);
    expect(await value(registry, "hopway_state_floor")).toBe(5);
    expect(await value(registry, "hopway_state_items")).toBe(120);
    expect(await value(registry, "hopway_scaling_report_timestamp_seconds")).toBe(Date.UTC(2026, 0, 1) / 1000);
    signals.setReport({ load: 0.1, holds_state: false });
    expect(await value(registry, "hopway_state_floor")).toBe(0);
    expect(await value(registry, "hopway_state_items")).toBe(0);
  });

  it("the heartbeat report is a valid ScalingReport; absent without workload or ordinal", () => {
    const { signals } = make("relay-3");
    signals.setReport({ load: 0.5, holds_state: true, state_items: 2 });
    const r = signals.heartbeatReport();
    expect(ScalingReportSchema.parse(r)).toEqual({
      workload: "relay",
      ordinal: 3,
      load: 0.5,
      holds_state: true,
      state_items: 2,
      target_load: 0.7,
    });
    const withHpa = make("relay-3", { workload: "relay", min_replicas: 2, max_replicas: 9 }).signals;
    expect(withHpa.heartbeatReport()).toMatchObject({ min_replicas: 2, max_replicas: 9, target_load: 0.7 });
    expect(make("relay-3", {}).signals.heartbeatReport()).toBeUndefined();
    expect(make("relay-abcde").signals.heartbeatReport()).toBeUndefined();
    expect(make("relay-abcde", { workload: "relay", ordinal: 7 }).signals.heartbeatReport()?.ordinal).toBe(7);
  });

  it("takes draining back from the edge's answer computed over all pods' heartbeats", async () => {
    // Three pods report; the edge runs computeWorkloadScaling over them and answers each.
    const pods = [0, 1, 2].map((i) => make(`relay-${i}`));
    pods[0]?.signals.setReport({ load: 0.3, holds_state: true });
    pods[1]?.signals.setReport({ load: 0.2, holds_state: false });
    pods[2]?.signals.setReport({ load: 0.1, holds_state: true });
    const reports = pods.map((p) => p.signals.heartbeatReport()).filter((r) => r !== undefined);
    const answer = computeWorkloadScaling("relay", reports);
    expect(answer).toMatchObject({ desired_by_load: 1, state_floor: 3, draining: [1, 2], desired_replicas: 3 });
    for (const p of pods) p.signals.applyEdgeScaling(answer);
    expect(pods.map((p) => p.signals.isDraining())).toEqual([false, true, true]);
    expect(await value(pods[2]?.registry as Registry, "hopway_draining")).toBe(1);
    expect(await value(pods[2]?.registry as Registry, "hopway_desired_replicas")).toBe(3);
    // No scaling field in an answer: keep draining (moving state needlessly is cheap, losing it is not).
    pods[2]?.signals.applyEdgeScaling(undefined);
    expect(pods[2]?.signals.isDraining()).toBe(true);
  });

  it("keeps draining for undrain_after_seconds after the coordinator stops asking", () => {
    const { signals, tick } = make("relay-3", { workload: "relay", undrain_after_seconds: 120 });
    const answer = (draining: number[]) =>
      signals.applyEdgeScaling({ workload: "relay", desired_by_load: 3, state_floor: 0, draining });
    answer([3]);
    expect(signals.isDraining()).toBe(true);
    answer([]);
    tick(60_000);
    answer([]);
    expect(signals.isDraining()).toBe(true); // 60 s < 120 s
    answer([3]); // asked again: the hold-down restarts from the next release
    tick(100_000);
    answer([]);
    tick(100_000);
    answer([]);
    expect(signals.isDraining()).toBe(true); // 100 s since the release
    tick(20_000);
    answer([]);
    expect(signals.isDraining()).toBe(false);
    // Never asked: an answer without this ordinal leaves it serving.
    const fresh = make("relay-1").signals;
    fresh.applyEdgeScaling({ workload: "relay", desired_by_load: 3, state_floor: 0, draining: [] });
    expect(fresh.isDraining()).toBe(false);
  });

  it("notifies listeners and survives a throwing one", () => {
    const { signals } = make("relay-0");
    const costs: number[] = [];
    signals.onChange(() => {
      throw new Error("boom");
    });
    const off = signals.onChange((s) => costs.push(s.deletionCost()));
    signals.setReport({ load: 0, holds_state: true, state_items: 100 });
    signals.setReport({ load: 0, holds_state: false, state_items: 0 });
    off();
    signals.setReport({ load: 0, holds_state: true });
    expect(costs).toEqual([7, 0]);
  });
});

/** What main does when the deletion cost is enabled: the signals first, then the patcher fed from them. */
function startDeletionCostForPod(opts: Omit<StartScalingOptions, "podName" | "podNamespace" | "registry">) {
  const registry = new Registry();
  const signals = new ScalingSignals({ config: opts.config, podName: "relay-0", registry });
  return startDeletionCost({ ...opts, signals, podName: "relay-0", podNamespace: "ns", registry });
}

describe("startDeletionCost", () => {
  it("runs without the deletion cost outside a cluster, with a warning", async () => {
    const warnings: string[] = [];
    const patcher = await startDeletionCostForPod({
      config: ScalingConfigSchema.parse({ workload: "relay", deletion_cost: { enabled: true } }),
      env: {},
      log: { warn: (m) => warnings.push(m) },
    });
    expect(patcher).toBeUndefined();
    expect(warnings).toHaveLength(1);
  });

  it("runs without the deletion cost when the cluster's service account is not mounted, and says so", async () => {
    const warnings: Array<[string, Record<string, unknown> | undefined]> = [];
    const patcher = await startDeletionCostForPod({
      config: ScalingConfigSchema.parse({ workload: "relay", deletion_cost: { enabled: true } }),
      env: { KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" },
      log: { warn: (m, f) => warnings.push([m, f]) },
    });
    expect(patcher).toBeUndefined();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.[0]).toMatch(/credentials are unreadable/);
    expect(String(warnings[0]?.[1]?.error)).toMatch(/serviceaccount\/token/);
  });
});

describe("pre-delete hook: open tunnels hold a pod for pre_delete_tunnel_grace_seconds at most", () => {
  const at = (t0: number, s: number) => new Date(t0 + s * 1000).toISOString();
  it("counts the grace from the hook's first call with tunnels alone, and only from hook calls", () => {
    const { signals, tick } = make("relay-1", { workload: "relay", pre_delete_tunnel_grace_seconds: 300 });
    const t0 = Date.UTC(2026, 0, 1);
    signals.setReport({ load: 0.1, holds_state: true });
    // State first: tunnels wait behind it, and no grace runs yet.
    expect(signals.preDelete(2, true)).toMatchObject({
      may_delete: 0,
      blockers: ["holds_state", "open_tunnels"],
      tunnel_grace_ends_at: null,
    });
    tick(50_000);
    signals.setReport({ load: 0.1, holds_state: false });
    // The application's own status reads the rule without starting the grace.
    expect(signals.status(2, true).may_delete).toBe(false);
    tick(10_000);
    expect(signals.preDelete(2, true)).toMatchObject({
      may_delete: 0,
      blockers: ["open_tunnels"],
      tunnel_grace_ends_at: at(t0, 360),
    });
    for (let i = 0; i < 149; i++) {
      tick(2_000);
      expect(signals.preDelete(2, true).may_delete).toBe(0);
    }
    tick(2_000);
    expect(signals.preDelete(2, true)).toMatchObject({
      may_delete: 1,
      blockers: [],
      open_tunnels: 2,
      tunnel_grace_ends_at: at(t0, 360),
    });
    expect(signals.status(2, true).may_delete).toBe(true);
    // State again: the grace is over and starts anew once the state is gone.
    signals.setReport({ load: 0.1, holds_state: false, state_items: 3 });
    expect(signals.preDelete(2, true)).toMatchObject({ may_delete: 0, blockers: ["state_items", "open_tunnels"] });
    tick(2_000);
    signals.setReport({ load: 0.1, holds_state: false, state_items: 0 });
    expect(signals.preDelete(2, true).tunnel_grace_ends_at).toBe(at(t0, 662));
    // A hook left unpolled for a minute starts over: an old call never shortens a later deletion's wait.
    tick(61_000);
    expect(signals.preDelete(2, true)).toMatchObject({ may_delete: 0, tunnel_grace_ends_at: at(t0, 723) });
    // No tunnel open: nothing holds the pod, and the next tunnels get a whole grace again.
    tick(2_000);
    expect(signals.preDelete(0, true)).toMatchObject({ may_delete: 1, tunnel_grace_ends_at: null });
    tick(2_000);
    expect(signals.preDelete(1, true)).toMatchObject({ may_delete: 0, tunnel_grace_ends_at: at(t0, 727) });
  });

  it("the status agrees with the hook: a grace whose hook went quiet is over, and state between two calls restarts it", () => {
    const { signals, tick } = make("relay-1", { workload: "relay", pre_delete_tunnel_grace_seconds: 300 });
    const t0 = Date.UTC(2026, 0, 1);
    for (let i = 0; i < 10; i++) {
      signals.preDelete(2, true);
      tick(30_000);
    }
    expect(signals.preDelete(2, true).may_delete).toBe(1);
    expect(signals.status(2, true).may_delete).toBe(true);
    // No hook call for a minute: the grace is over for the status too, not only for the next call.
    tick(61_000);
    expect(signals.status(2, true).may_delete).toBe(false);
    expect(signals.preDelete(2, true)).toMatchObject({ may_delete: 0, tunnel_grace_ends_at: at(t0, 661) });
    // State reported and cleared again between two of the controller's calls: a whole grace again.
    tick(1_000);
    signals.setReport({ load: 0.1, holds_state: true });
    signals.setReport({ load: 0.1, holds_state: false });
    tick(1_000);
    expect(signals.preDelete(2, true).tunnel_grace_ends_at).toBe(at(t0, 663));
  });

  it("with a grace of 0, open tunnels never hold the pod; the default is 300 s", () => {
    const { signals } = make("relay-1", { workload: "relay", pre_delete_tunnel_grace_seconds: 0 });
    // The status says so before any hook call, as the hook does.
    expect(signals.status(5, true).may_delete).toBe(true);
    expect(signals.preDelete(5, true)).toMatchObject({ may_delete: 1, blockers: [], open_tunnels: 5 });
    expect(ScalingConfigSchema.parse({}).pre_delete_tunnel_grace_seconds).toBe(300);
    expect(ScalingConfigSchema.safeParse({ pre_delete_tunnel_grace_seconds: -1 }).success).toBe(false);
  });
});
