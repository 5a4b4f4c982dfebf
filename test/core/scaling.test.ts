import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { computeWorkloadScaling, deletionCostBucket, ordinalFromPodName } from "../../src/core/scaling.ts";
import type { ScalingReport } from "../../src/core/schema.ts";

const W = "relay";
const rep = (ordinal: number, load: number, holds_state = false, workload = W): ScalingReport => ({
  workload,
  ordinal,
  load,
  holds_state,
});

describe("computeWorkloadScaling", () => {
  it("asks for ceil(sum(load) / target) replicas and drains the ordinals above", () => {
    const s = computeWorkloadScaling(W, [rep(0, 0.3), rep(1, 0.3), rep(2, 0.2), rep(3, 0.1)], 0.7);
    // sum 0.9 / 0.7 = 1.29 → 2; ratio 0.9 / (0.7 × 4) = 0.32, far outside the tolerance.
    expect(s.desired_by_load).toBe(2);
    expect(s.draining).toEqual([2, 3]);
    expect(s.state_floor).toBe(0);
    expect(s.desired_replicas).toBe(2);
    expect(s.replicas_reporting).toBe(4);
    expect(s.total_load).toBeCloseTo(0.9);
  });

  it("state floor is the highest ordinal holding state + 1, and does not stop draining", () => {
    const s = computeWorkloadScaling(W, [rep(0, 0.1, true), rep(1, 0.1), rep(2, 0.1, true), rep(3, 0.1)]);
    expect(s.state_floor).toBe(3);
    expect(s.desired_by_load).toBe(1);
    // Ordinal 2 must drain precisely because it still holds state.
    expect(s.draining).toEqual([1, 2, 3]);
    expect(s.desired_replicas).toBe(3);
  });

  it("ignores other workloads, and a pod with two live reports counts once, conservatively", () => {
    const s = computeWorkloadScaling(W, [rep(0, 0.5), rep(1, 0.2), rep(1, 0.6, true), rep(5, 9, true, "other")]);
    expect(s.replicas_reporting).toBe(2);
    expect(s.total_load).toBeCloseTo(1.1);
    expect(s.state_floor).toBe(2);
  });

  it("no pod drains while the HPA would stay put (tolerance dead band)", () => {
    // 10 pods at 0.65 average: ceil(6.5 / 0.7) = 10 — but at 0.64: 6.4 / 0.7 = 9.14 → 10 as well;
    // at 0.63: ratio 0.9, within tolerance: the HPA keeps 10 although load alone says 9.
    const reports = Array.from({ length: 10 }, (_, i) => rep(i, 0.63));
    expect(Math.ceil(6.3 / 0.7)).toBe(9);
    expect(computeWorkloadScaling(W, reports).draining).toEqual([]);
    const lower = Array.from({ length: 10 }, (_, i) => rep(i, 0.6));
    expect(computeWorkloadScaling(W, lower).draining).toEqual([9]);
  });

  it("respects min/max replicas and never asks for zero", () => {
    expect(computeWorkloadScaling(W, []).desired_by_load).toBe(1);
    const idle = [rep(0, 0), rep(1, 0), rep(2, 0)];
    expect(computeWorkloadScaling(W, idle).draining).toEqual([1, 2]);
    expect(computeWorkloadScaling(W, idle, { minReplicas: 2 }).draining).toEqual([2]);
    const hot = [rep(0, 1), rep(1, 1)];
    expect(computeWorkloadScaling(W, hot, { maxReplicas: 2 }).desired_by_load).toBe(2);
  });

  it("takes the HPA settings from the reports, conservatively, unless given explicitly", () => {
    const idle = [0, 1, 2, 3].map((o) => ({ ...rep(o, 0), min_replicas: 2, max_replicas: 10 }));
    expect(computeWorkloadScaling(W, idle).draining).toEqual([2, 3]);
    // A config change rolling out: one pod already says min 3 — nobody below 3 drains.
    const rolling = idle.map((r, i) => (i === 0 ? { ...r, min_replicas: 3 } : r));
    expect(computeWorkloadScaling(W, rolling).draining).toEqual([3]);
    // The smaller target wins: 1.2 / 0.4 = 3 pods rather than 1.2 / 0.7 = 2.
    const targets = [0, 1, 2, 3].map((o) => ({ ...rep(o, 0.3), target_load: o === 1 ? 0.4 : 0.7 }));
    expect(computeWorkloadScaling(W, targets).desired_by_load).toBe(3);
    expect(computeWorkloadScaling(W, rolling, { minReplicas: 1 }).draining).toEqual([1, 2, 3]);
  });

  it("rejects a non-positive target", () => {
    expect(() => computeWorkloadScaling(W, [], { targetLoad: 0 })).toThrow(RangeError);
  });
});

describe("helpers", () => {
  it("reads the StatefulSet ordinal from the pod name", () => {
    expect(ordinalFromPodName("hopway-agent-0")).toBe(0);
    expect(ordinalFromPodName("hopway-agent-17")).toBe(17);
    expect(ordinalFromPodName("hopway-agent-7d9f-x2z")).toBeUndefined();
    expect(ordinalFromPodName("hopway-agent-007")).toBeUndefined();
  });

  it("deletion cost buckets are monotone and coarse", () => {
    expect(deletionCostBucket(false, 0)).toBe(0);
    expect(deletionCostBucket(true, 0)).toBe(1);
    expect(deletionCostBucket(true, 1)).toBe(2);
    expect(deletionCostBucket(true, 1000)).toBe(deletionCostBucket(true, 1010));
    fc.assert(
      fc.property(fc.nat(1_000_000), fc.nat(1_000_000), (a, b) => {
        const [lo, hi] = a <= b ? [a, b] : [b, a];
        return deletionCostBucket(true, lo) <= deletionCostBucket(true, hi);
      }),
    );
  });
});
