// Scaling decisions shared by the edge (which aggregates reports per namespace
// and workload: the same workload name in two namespaces is two workloads) and
// the agent. The HorizontalPodAutoscaler model the tests use to prove the
// loop closes is test support: src/core/testing/hpa-model.ts
// (docs/contract/autoscaling.md §1).
// Pure: no runtime imports, no clock.
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
 * options win over the HPA settings the reports carry. `reports` must come
 * from one namespace only: the hints of any report given here bound every
 * pod's draining, so the edge never passes another namespace's reports.
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
