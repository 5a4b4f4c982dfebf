// Scaling decisions shared by the edge (which aggregates reports per workload)
// and the agent. Pure: no runtime imports, no clock.
// OWNER: the autoscaling work (issue 5). This first version is the interface;
// the owner refines it.
import type { ScalingReport } from "./schema.ts";

export interface WorkloadScaling {
  workload: string;
  /** Replicas that load alone asks for: ceil(sum(load) / targetLoad), at least 1. */
  desired_by_load: number;
  /** Highest ordinal still holding state + 1 (0 when none holds state). */
  state_floor: number;
  /** Ordinals at or above desired_by_load: their applications must move state away. */
  draining: number[];
}

export function computeWorkloadScaling(
  workload: string,
  reports: readonly ScalingReport[],
  targetLoad = 0.7,
): WorkloadScaling {
  const mine = reports.filter((r) => r.workload === workload);
  const load = mine.reduce((sum, r) => sum + r.load, 0);
  const desired = Math.max(1, Math.ceil(load / targetLoad - 1e-9));
  const floor = mine.reduce((max, r) => (r.holds_state ? Math.max(max, r.ordinal + 1) : max), 0);
  const draining = mine
    .filter((r) => r.ordinal >= desired)
    .map((r) => r.ordinal)
    .sort((a, b) => a - b);
  return { workload, desired_by_load: desired, state_floor: floor, draining };
}
