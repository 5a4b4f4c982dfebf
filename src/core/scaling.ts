// Scaling decisions shared by the edge (which aggregates reports per workload)
// and the agent, plus a faithful model of the Kubernetes HorizontalPodAutoscaler
// (autoscaling/v2) that the tests use to prove the loop closes.
// Pure: no runtime imports, no clock (time is passed in, in milliseconds).
import type { ScalingReport } from "./schema.ts";

/** The HPA's default tolerance: no change while the usage ratio is within 1 ± 0.1. */
export const HPA_TOLERANCE = 0.1;

export interface WorkloadScaling {
  workload: string;
  /** Replicas that load alone asks for: ceil(sum(load) / targetLoad), at least 1 (and within min/max when given). */
  desired_by_load: number;
  /** Highest ordinal still holding state + 1 (0 when none holds state). */
  state_floor: number;
  /** Ordinals at or above desired_by_load: their applications must move state away. */
  draining: number[];
  /** What the HPA converges to with both metrics: max(desired_by_load, state_floor). */
  desired_replicas: number;
  /** Distinct ordinals that reported. */
  replicas_reporting: number;
  /** Sum of the load factors reported. */
  total_load: number;
}

export interface WorkloadScalingOptions {
  /** Load factor per pod the HPA aims for (the HPA's AverageValue target). */
  targetLoad?: number;
  /** The HPA's minReplicas: pods below it are never removed, so they never drain. */
  minReplicas?: number;
  /** The HPA's maxReplicas. */
  maxReplicas?: number;
  /** The HPA's tolerance; the same dead band keeps pods from draining when the HPA would not move. */
  tolerance?: number;
}

/**
 * The scaling state of one workload from its pods' live reports. Explicit
 * options win over the HPA settings the reports carry.
 *
 * `draining` is what load alone asks for, the state floor deliberately left out:
 * a pod above the load target must start moving its state away precisely
 * because it still holds some (that is what keeps the floor up).
 */
export function computeWorkloadScaling(
  workload: string,
  reports: readonly ScalingReport[],
  options: number | WorkloadScalingOptions = {},
): WorkloadScaling {
  const opts: WorkloadScalingOptions = {
    ...hintsFrom(workload, reports),
    ...(typeof options === "number" ? { targetLoad: options } : options),
  };
  const targetLoad = opts.targetLoad ?? 0.7;
  const tolerance = opts.tolerance ?? HPA_TOLERANCE;
  if (!(targetLoad > 0)) throw new RangeError("targetLoad must be positive");

  // One entry per ordinal: a restarted pod may briefly have two live leases
  // (old and new name); keep the more conservative view of each.
  const byOrdinal = new Map<number, { load: number; holds: boolean }>();
  for (const r of reports) {
    if (r.workload !== workload) continue;
    const prev = byOrdinal.get(r.ordinal);
    byOrdinal.set(r.ordinal, {
      load: Math.max(prev?.load ?? 0, r.load),
      holds: (prev?.holds ?? false) || r.holds_state,
    });
  }
  let load = 0;
  let floor = 0;
  let highest = -1;
  for (const [ordinal, r] of byOrdinal) {
    load += r.load;
    if (r.holds) floor = Math.max(floor, ordinal + 1);
    highest = Math.max(highest, ordinal);
  }
  const current = highest + 1;
  let desired = Math.max(1, Math.ceil(load / targetLoad - 1e-9));
  // Mirror the HPA's dead band: when the average is within tolerance of the
  // target the HPA keeps the replica count, so no pod should drain for it.
  if (current > 0 && Math.abs(1 - load / (targetLoad * current)) <= tolerance) desired = Math.max(desired, current);
  if (opts.minReplicas !== undefined) desired = Math.max(desired, opts.minReplicas);
  if (opts.maxReplicas !== undefined) desired = Math.min(desired, opts.maxReplicas);
  const draining = [...byOrdinal.keys()].filter((o) => o >= desired).sort((a, b) => a - b);
  return {
    workload,
    desired_by_load: desired,
    state_floor: floor,
    draining,
    desired_replicas: Math.max(desired, floor),
    replicas_reporting: byOrdinal.size,
    total_load: Math.round(load * 1e6) / 1e6,
  };
}

/**
 * The HPA settings the pods' agents report. While a config change rolls out
 * they may disagree; the most conservative combination (fewest pods drained)
 * wins: the smallest target, the largest min and max.
 */
function hintsFrom(workload: string, reports: readonly ScalingReport[]): WorkloadScalingOptions {
  const hints: WorkloadScalingOptions = {};
  for (const r of reports) {
    if (r.workload !== workload) continue;
    if (r.target_load !== undefined) hints.targetLoad = Math.min(hints.targetLoad ?? Infinity, r.target_load);
    if (r.min_replicas !== undefined) hints.minReplicas = Math.max(hints.minReplicas ?? 0, r.min_replicas);
    if (r.max_replicas !== undefined) hints.maxReplicas = Math.max(hints.maxReplicas ?? 0, r.max_replicas);
  }
  return hints;
}

/** `hopway-relay-12` → 12; undefined when the name carries no StatefulSet ordinal. */
export function ordinalFromPodName(podName: string): number | undefined {
  const m = /-(0|[1-9]\d{0,5})$/.exec(podName);
  return m ? Number(m[1]) : undefined;
}

/**
 * The value for `controller.kubernetes.io/pod-deletion-cost`: 0 for a pod with
 * nothing to move, otherwise 1 + floor(log2(1 + items)). Logarithmic buckets
 * keep the order (more state = more expensive to delete) while a pod whose
 * state grows from 1000 to 1010 items does not cause an API write.
 */
export function deletionCostBucket(holdsState: boolean, stateItems: number | undefined): number {
  const items = Math.max(0, Math.floor(stateItems ?? 0));
  if (!holdsState && items === 0) return 0;
  return 1 + Math.floor(Math.log2(1 + items));
}

// ---- The HorizontalPodAutoscaler (autoscaling/v2) -----------------------------
//
// Follows pkg/controller/podautoscaler (replica_calculator.go and
// horizontal.go) as documented at
// https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/:
// per-metric proposals with the tolerance, the max over metrics, the
// stabilization windows, the scaling policies and min/max replicas.

export type MetricTarget = { averageValue: number } | { value: number };

export type HpaMetric =
  | {
      type: "Pods";
      name: string;
      target: { averageValue: number };
      /** One entry per pod of the scale target; undefined = the pod has no sample yet. */
      values: ReadonlyArray<number | undefined>;
    }
  | {
      type: "Object";
      name: string;
      target: MetricTarget;
      /** The single value the custom metrics API answers for the object. */
      value: number;
    };

export interface HpaPolicy {
  type: "Pods" | "Percent";
  value: number;
  periodSeconds: number;
}

export interface HpaScalingRules {
  stabilizationWindowSeconds: number;
  selectPolicy: "Max" | "Min" | "Disabled";
  policies: HpaPolicy[];
}

export interface HpaSpec {
  minReplicas: number;
  maxReplicas: number;
  behavior?: { scaleUp?: Partial<HpaScalingRules>; scaleDown?: Partial<HpaScalingRules> };
  tolerance?: number;
}

/** Kubernetes' defaults (HPA docs, "Default Behavior"). */
export const DEFAULT_SCALE_UP: HpaScalingRules = {
  stabilizationWindowSeconds: 0,
  selectPolicy: "Max",
  policies: [
    { type: "Percent", value: 100, periodSeconds: 15 },
    { type: "Pods", value: 4, periodSeconds: 15 },
  ],
};
export const DEFAULT_SCALE_DOWN: HpaScalingRules = {
  stabilizationWindowSeconds: 300,
  selectPolicy: "Max",
  policies: [{ type: "Percent", value: 100, periodSeconds: 15 }],
};

/**
 * Replicas proposed by one metric, given the current replica count
 * (`status.replicas`). Throws when a metric cannot be computed (the HPA then
 * keeps the replica count, as Kubernetes does with an invalid metric).
 */
export function hpaMetricProposal(metric: HpaMetric, currentReplicas: number, tolerance = HPA_TOLERANCE): number {
  if (metric.type === "Pods")
    return podsAverageValueProposal(metric.values, metric.target.averageValue, currentReplicas, tolerance);
  const target = metric.target;
  if ("averageValue" in target) {
    // GetObjectPerPodMetricReplicas: ratio against target × replicas, and when
    // outside the tolerance ceil(metric / target) independent of the current
    // count. This is what makes the state floor a floor.
    if (!(target.averageValue > 0)) throw new RangeError(`${metric.name}: averageValue must be positive`);
    const ratio = metric.value / (target.averageValue * currentReplicas);
    if (currentReplicas > 0 && Math.abs(1 - ratio) <= tolerance) return currentReplicas;
    return Math.ceil(metric.value / target.averageValue);
  }
  // GetObjectMetricReplicas (target type Value): ceil(currentReplicas × metric / target).
  if (!(target.value > 0)) throw new RangeError(`${metric.name}: value must be positive`);
  const ratio = metric.value / target.value;
  if (currentReplicas === 0) return Math.ceil(ratio);
  if (Math.abs(1 - ratio) <= tolerance) return currentReplicas;
  return Math.ceil(ratio * currentReplicas);
}

// calcPlainMetricReplicas. The controller works in milli-units with integer
// division (prometheus-adapter truncates the float sample to milli-units), and
// pods without a sample count as 0 when scaling out and as exactly the target
// when scaling in, so a fresh pod neither triggers a scale-in nor inflates a
// scale-out; if filling them in flips the direction or lands within
// tolerance, nothing changes.
function podsAverageValueProposal(
  values: ReadonlyArray<number | undefined>,
  target: number,
  currentReplicas: number,
  tolerance: number,
): number {
  const targetMilli = Math.round(target * 1000);
  if (!(targetMilli > 0)) throw new RangeError("averageValue must be positive");
  const present = values.filter((v): v is number => v !== undefined).map((v) => Math.trunc(v * 1000));
  const missing = values.length - present.length;
  if (present.length === 0) throw new RangeError("no pod has reported the metric");
  const ratioOf = (milli: number[]) => Math.trunc(milli.reduce((a, b) => a + b, 0) / milli.length) / targetMilli;
  const within = (r: number) => Math.abs(1 - r) <= tolerance;
  const ratio = ratioOf(present);
  if (missing === 0) {
    if (within(ratio)) return currentReplicas;
    return Math.ceil(ratio * present.length);
  }
  const filled = [...present, ...new Array<number>(missing).fill(ratio < 1 ? targetMilli : 0)];
  const newRatio = ratioOf(filled);
  if (within(newRatio) || (ratio < 1 && newRatio > 1) || (ratio > 1 && newRatio < 1)) return currentReplicas;
  const proposal = Math.ceil(newRatio * filled.length);
  if ((newRatio < 1 && proposal > currentReplicas) || (newRatio > 1 && proposal < currentReplicas))
    return currentReplicas;
  return proposal;
}

export interface HpaStepResult {
  /** Replicas the HPA writes to the scale subresource. */
  replicas: number;
  /** Max over the metric proposals, before stabilization and policies. */
  recommended: number;
  proposals: Record<string, number>;
  /** Why the final value differs from the recommendation, if it does. */
  limitedBy?: "stabilization" | "policy" | "min_replicas" | "max_replicas" | "invalid_metric";
}

/**
 * One HPA controller with its memory (recommendations and scale events), for
 * one scale target. Each `step` is one sync period (15 s by default in the
 * controller manager); `now` is in milliseconds.
 */
export class HpaModel {
  private readonly spec: HpaSpec;
  private readonly up: HpaScalingRules;
  private readonly down: HpaScalingRules;
  private recommendations: Array<{ at: number; replicas: number }> = [];
  private events: Array<{ at: number; change: number }> = [];

  constructor(spec: HpaSpec) {
    if (spec.minReplicas < 1 || spec.maxReplicas < spec.minReplicas) throw new RangeError("need 1 ≤ min ≤ max");
    this.spec = spec;
    this.up = { ...DEFAULT_SCALE_UP, ...spec.behavior?.scaleUp };
    this.down = { ...DEFAULT_SCALE_DOWN, ...spec.behavior?.scaleDown };
  }

  step(now: number, currentReplicas: number, metrics: readonly HpaMetric[]): HpaStepResult {
    const tolerance = this.spec.tolerance ?? HPA_TOLERANCE;
    const { minReplicas, maxReplicas } = this.spec;
    const proposals: Record<string, number> = {};
    // horizontal.go: at 0 replicas autoscaling is off; outside [min, max] the
    // HPA first brings the count back in range without looking at metrics.
    if (currentReplicas === 0) return { replicas: 0, recommended: 0, proposals };
    if (currentReplicas > maxReplicas)
      return this.record(now, currentReplicas, maxReplicas, maxReplicas, proposals, "max_replicas");
    if (currentReplicas < minReplicas)
      return this.record(now, currentReplicas, minReplicas, minReplicas, proposals, "min_replicas");

    let recommended = 0;
    let invalid = 0;
    for (const m of metrics) {
      try {
        const p = hpaMetricProposal(m, currentReplicas, tolerance);
        proposals[m.name] = p;
        recommended = Math.max(recommended, p);
      } catch {
        invalid++;
      }
    }
    // computeReplicasForMetrics: with every metric invalid, or some invalid and
    // the rest asking to scale in, the HPA does nothing. A missing state-floor
    // metric therefore blocks scale-in instead of letting load alone decide.
    if (invalid >= metrics.length || (invalid > 0 && recommended < currentReplicas)) {
      return { replicas: currentReplicas, recommended: currentReplicas, proposals, limitedBy: "invalid_metric" };
    }

    const stabilized = this.stabilize(now, currentReplicas, recommended);
    const { replicas, limit } = this.applyPolicies(now, currentReplicas, stabilized);
    let limitedBy: HpaStepResult["limitedBy"];
    if (stabilized !== recommended) limitedBy = "stabilization";
    if (limit) limitedBy = limit;
    return this.record(now, currentReplicas, replicas, recommended, proposals, limitedBy);
  }

  private record(
    now: number,
    current: number,
    replicas: number,
    recommended: number,
    proposals: Record<string, number>,
    limitedBy: HpaStepResult["limitedBy"],
  ): HpaStepResult {
    if (replicas !== current) this.events.push({ at: now, change: replicas - current });
    const longest = Math.max(0, ...[...this.up.policies, ...this.down.policies].map((p) => p.periodSeconds)) * 1000;
    this.events = this.events.filter((e) => e.at > now - longest);
    const result: HpaStepResult = { replicas, recommended, proposals };
    if (limitedBy) result.limitedBy = limitedBy;
    return result;
  }

  // stabilizeRecommendationWithBehaviors: the lowest recommendation of the
  // scale-up window caps growth, the highest of the scale-down window caps shrinking.
  private stabilize(now: number, current: number, desired: number): number {
    const upCutoff = now - this.up.stabilizationWindowSeconds * 1000;
    const downCutoff = now - this.down.stabilizationWindowSeconds * 1000;
    let upRec = desired;
    let downRec = desired;
    for (const rec of this.recommendations) {
      if (rec.at > upCutoff) upRec = Math.min(upRec, rec.replicas);
      if (rec.at > downCutoff) downRec = Math.max(downRec, rec.replicas);
    }
    this.recommendations = this.recommendations.filter((r) => r.at > upCutoff || r.at > downCutoff);
    this.recommendations.push({ at: now, replicas: desired });
    let rec = current;
    if (rec < upRec) rec = upRec;
    if (rec > downRec) rec = downRec;
    return rec;
  }

  private changeInPeriod(now: number, periodSeconds: number, sign: 1 | -1): number {
    const cutoff = now - periodSeconds * 1000;
    let n = 0;
    for (const e of this.events) if (e.at > cutoff && Math.sign(e.change) === sign) n += Math.abs(e.change);
    return n;
  }

  // convertDesiredReplicasWithBehaviorRate.
  private applyPolicies(
    now: number,
    current: number,
    desired: number,
  ): { replicas: number; limit?: HpaStepResult["limitedBy"] } {
    const { minReplicas, maxReplicas } = this.spec;
    if (desired > current) {
      let upLimit: number;
      if (this.up.selectPolicy === "Disabled") upLimit = current;
      else {
        const pick = this.up.selectPolicy === "Min" ? Math.min : Math.max;
        upLimit = this.up.selectPolicy === "Min" ? Number.MAX_SAFE_INTEGER : Number.MIN_SAFE_INTEGER;
        for (const p of this.up.policies) {
          const start =
            current - this.changeInPeriod(now, p.periodSeconds, 1) + this.changeInPeriod(now, p.periodSeconds, -1);
          const proposed = p.type === "Pods" ? start + p.value : Math.ceil(start * (1 + p.value / 100));
          upLimit = pick(upLimit, proposed);
        }
      }
      if (upLimit < current) upLimit = current;
      const maxAllowed = Math.min(maxReplicas, upLimit);
      if (desired > maxAllowed)
        return { replicas: maxAllowed, limit: maxAllowed === maxReplicas ? "max_replicas" : "policy" };
    } else if (desired < current) {
      let downLimit: number;
      if (this.down.selectPolicy === "Disabled") downLimit = current;
      else {
        // For scaling in, the "Min" policy (smallest change) is the largest value.
        const pick = this.down.selectPolicy === "Min" ? Math.max : Math.min;
        downLimit = this.down.selectPolicy === "Min" ? Number.MIN_SAFE_INTEGER : Number.MAX_SAFE_INTEGER;
        for (const p of this.down.policies) {
          const start =
            current - this.changeInPeriod(now, p.periodSeconds, 1) + this.changeInPeriod(now, p.periodSeconds, -1);
          const proposed = p.type === "Pods" ? start - p.value : Math.trunc(start * (1 - p.value / 100));
          downLimit = pick(downLimit, proposed);
        }
      }
      if (downLimit > current) downLimit = current;
      const minAllowed = Math.max(minReplicas, downLimit);
      if (desired < minAllowed)
        return { replicas: minAllowed, limit: minAllowed === minReplicas ? "min_replicas" : "policy" };
    }
    if (desired > maxReplicas) return { replicas: maxReplicas, limit: "max_replicas" };
    if (desired < minReplicas) return { replicas: minReplicas, limit: "min_replicas" };
    return { replicas: desired };
  }
}
