// The HPA model the scaling tests drive: it must follow the Kubernetes controller, or the tests
// that use it prove nothing about a real cluster.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type HpaMetric, HpaModel, hpaMetricProposal } from "../../../src/core/testing/hpa-model.ts";

describe("HPA v2 formula", () => {
  const load = (values: Array<number | undefined>): HpaMetric => ({
    type: "Pods",
    name: "hopway_load_factor",
    target: { averageValue: 0.7 },
    values,
  });

  it("Pods/AverageValue: ceil(current × average / target)", () => {
    // 3 pods averaging 0.9: ceil(3 × 0.9 / 0.7) = ceil(3.857) = 4.
    expect(hpaMetricProposal(load([0.9, 0.9, 0.9]), 3)).toBe(4);
    // 4 pods averaging 0.2: ceil(4 × 0.2 / 0.7) = ceil(1.14) = 2.
    expect(hpaMetricProposal(load([0.2, 0.2, 0.2, 0.2]), 4)).toBe(2);
  });

  it("tolerance: no change while the ratio is within 1 ± 0.1", () => {
    expect(hpaMetricProposal(load([0.76, 0.76]), 2)).toBe(2); // ratio 1.086
    expect(hpaMetricProposal(load([0.78, 0.78]), 2)).toBe(3); // ratio 1.114
    expect(hpaMetricProposal(load([0.64, 0.64]), 2)).toBe(2); // ratio 0.914
    expect(hpaMetricProposal(load([0.62, 0.62]), 2)).toBe(2); // ratio 0.886 → ceil(1.77) = 2
    expect(hpaMetricProposal(load(new Array(10).fill(0.62)), 10)).toBe(9);
  });

  it("missing samples count as 0 on scale-out and as the target on scale-in", () => {
    // Scale-out: [1.4, missing] → average with the missing pod at 0 = 0.7: within tolerance, no change.
    expect(hpaMetricProposal(load([1.4, undefined]), 2)).toBe(2);
    // Scale-in: [0.1, missing, missing] → missing at 0.7 → avg 0.5 → ceil(3 × 0.714) = 3: no change.
    expect(hpaMetricProposal(load([0.1, undefined, undefined]), 3)).toBe(3);
    expect(() => hpaMetricProposal(load([undefined]), 1)).toThrow();
  });

  it("Object/AverageValue gives ceil(metric / target): a floor; Object/Value does not", () => {
    const floor = (value: number, target: { averageValue: number } | { value: number }): HpaMetric => ({
      type: "Object",
      name: "hopway_state_floor",
      target,
      value,
    });
    // 6 replicas, highest pod holding state is ordinal 2 → metric max(ordinal+1) = 3.
    // AverageValue 1: ratio 3 / (1 × 6) = 0.5, outside tolerance → ceil(3 / 1) = 3 replicas.
    expect(hpaMetricProposal(floor(3, { averageValue: 1 }), 6)).toBe(3);
    // Value 1: ratio 3 / 1 = 3 → ceil(3 × 6) = 18 replicas: a scale-OUT, not a floor.
    expect(hpaMetricProposal(floor(3, { value: 1 }), 6)).toBe(18);
    // And with no pod holding state the AverageValue proposal is 0: it never holds replicas up.
    expect(hpaMetricProposal(floor(0, { averageValue: 1 }), 6)).toBe(0);
    // Whatever the current count, AverageValue never proposes fewer than the floor.
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 200 }), fc.integer({ min: 0, max: 200 }), (current, f) => {
        const value = Math.min(f, current);
        return hpaMetricProposal(floor(value, { averageValue: 1 }), current) >= value;
      }),
    );
  });
});

describe("HpaModel (controller memory)", () => {
  const metrics = (loads: number[], floor: number): HpaMetric[] => [
    { type: "Pods", name: "load", target: { averageValue: 0.7 }, values: loads },
    { type: "Object", name: "floor", target: { averageValue: 1 }, value: floor },
  ];

  it("takes the max over metrics", () => {
    const hpa = new HpaModel({ minReplicas: 1, maxReplicas: 10 });
    const r = hpa.step(0, 4, metrics([0.1, 0.1, 0.1, 0.1], 3));
    expect(r.proposals).toEqual({ load: 1, floor: 3 });
    expect(r.recommended).toBe(3);
  });

  it("scale-down waits for the stabilization window; scale-up does not", () => {
    const hpa = new HpaModel({
      minReplicas: 1,
      maxReplicas: 10,
      behavior: { scaleDown: { stabilizationWindowSeconds: 60 } },
    });
    expect(hpa.step(0, 2, metrics([1.4, 1.4], 0)).replicas).toBe(4);
    // Load drops at t=15 s: the 4 recommended at t=0 is still in the window.
    const held = hpa.step(15_000, 4, metrics([0.1, 0.1, 0.1, 0.1], 0));
    expect(held.replicas).toBe(4);
    expect(held.limitedBy).toBe("stabilization");
    expect(hpa.step(45_000, 4, metrics([0.1, 0.1, 0.1, 0.1], 0)).replicas).toBe(4);
    expect(hpa.step(61_000, 4, metrics([0.1, 0.1, 0.1, 0.1], 0)).replicas).toBe(1);
  });

  it("scale-down policies limit the rate", () => {
    const hpa = new HpaModel({
      minReplicas: 1,
      maxReplicas: 20,
      behavior: {
        scaleDown: { stabilizationWindowSeconds: 0, policies: [{ type: "Pods", value: 1, periodSeconds: 60 }] },
      },
    });
    const idle = (n: number) => metrics(new Array(n).fill(0), 0);
    expect(hpa.step(0, 5, idle(5))).toMatchObject({ replicas: 4, limitedBy: "policy" });
    expect(hpa.step(30_000, 4, idle(4)).replicas).toBe(4); // one pod per minute
    expect(hpa.step(61_000, 4, idle(4)).replicas).toBe(3);
  });

  it("scale-up policies: default max(100 %, 4 pods) per 15 s", () => {
    const hpa = new HpaModel({ minReplicas: 1, maxReplicas: 100 });
    expect(hpa.step(0, 2, metrics([7, 7], 0)).replicas).toBe(6); // max(2 × 2, 2 + 4)
    expect(hpa.step(5_000, 6, metrics(new Array(6).fill(7), 0)).replicas).toBe(6);
    expect(hpa.step(16_000, 6, metrics(new Array(6).fill(7), 0)).replicas).toBe(12);
  });

  it("a missing state-floor metric blocks scale-in", () => {
    const hpa = new HpaModel({ minReplicas: 1, maxReplicas: 10 });
    const onlyLoad: HpaMetric[] = [
      { type: "Pods", name: "load", target: { averageValue: 0.7 }, values: [0, 0, 0] },
      { type: "Pods", name: "floor", target: { averageValue: 1 }, values: [undefined, undefined, undefined] },
    ];
    expect(hpa.step(0, 3, onlyLoad)).toMatchObject({ replicas: 3, limitedBy: "invalid_metric" });
  });

  it("never goes below the state floor, whatever the load (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 30 }),
        fc.array(fc.double({ min: 0, max: 3, noNaN: true }), { minLength: 30, maxLength: 30 }),
        fc.nat(30),
        fc.integer({ min: 0, max: 600 }),
        (current, loads, f, window) => {
          const hpa = new HpaModel({
            minReplicas: 1,
            maxReplicas: 30,
            behavior: { scaleDown: { stabilizationWindowSeconds: window } },
          });
          const floor = Math.min(f, current);
          const r = hpa.step(0, current, metrics(loads.slice(0, current), floor));
          return r.replicas >= floor;
        },
      ),
    );
  });
});
