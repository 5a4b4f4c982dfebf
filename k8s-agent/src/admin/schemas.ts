// The wire format of the agent's admin HTTP server: the application's local
// API and the pre-delete hook. The server validates with these schemas and the
// typed client (k8s-agent/src/client) parses the answers with the same ones
// (docs/contract/autoscaling.md §3 and §4.1).
import { z } from "zod";

/** `PUT /v1/local/report`: what the application says about itself. */
export const LocalReportSchema = z.strictObject({
  /** Load factor: 1.0 = at capacity. */
  load: z.number().min(0).max(1_000),
  /** Whether this pod still holds state that must move before it may go. */
  holds_state: z.boolean(),
  /** How much state (keys, sessions); feeds the pod deletion cost. */
  state_items: z.number().int().nonnegative().max(1e12).optional(),
});
export type LocalReport = z.infer<typeof LocalReportSchema>;

/** `GET /v1/local/status` (and the answer to a report). */
export const LocalStatusSchema = z.object({
  pod: z.string(),
  workload: z.string(),
  /** null when the pod name carries no ordinal and none is configured. */
  ordinal: z.number().int().nullable(),
  load: z.number(),
  holds_state: z.boolean(),
  state_items: z.number().int().nullable(),
  /** This pod's own state-floor gauge: ordinal + 1 while it holds state, else 0. */
  state_floor: z.number().int(),
  /** The coordinator asks this pod to move its state away: it is above what load needs. */
  draining: z.boolean(),
  /** Replicas the workload converges to (the edge's view: max(load, state floor)); null until the edge answered. */
  desired_replicas: z.number().int().nullable(),
  /** Replicas load alone asks for; null until the edge answered. */
  desired_by_load: z.number().int().nullable(),
  /** The workload's highest ordinal holding state + 1, as the edge sees it; null until it answered. */
  workload_state_floor: z.number().int().nullable(),
  /** When the application last reported (ISO 8601), null before the first report. */
  reported_at: z.string().nullable(),
  /** When the edge's scaling answer was last taken (ISO 8601), null before. */
  scaling_updated_at: z.string().nullable(),
  open_tunnels: z.number().int(),
  ready: z.boolean(),
  /** Same rule as the pre-delete hook. */
  may_delete: z.boolean(),
});
export type LocalStatus = z.infer<typeof LocalStatusSchema>;

export const PRE_DELETE_BLOCKERS = ["holds_state", "state_items", "open_tunnels"] as const;

/**
 * `GET /v1/hooks/pre-delete`. `may_delete` is the number a HookTemplate's web
 * provider reads with `jsonPath: "{$.may_delete}"`: 1 = the pod may go.
 */
export const PreDeleteSchema = z.object({
  may_delete: z.union([z.literal(0), z.literal(1)]),
  /** Why not, from a closed set; empty when may_delete is 1. */
  blockers: z.array(z.enum(PRE_DELETE_BLOCKERS)),
  holds_state: z.boolean(),
  state_items: z.number().int().nullable(),
  open_tunnels: z.number().int(),
  draining: z.boolean(),
  /**
   * While open tunnels are all that holds the pod: when they stop (or stopped) holding it,
   * `scaling.pre_delete_tunnel_grace_seconds` after the hook first saw them alone; else null.
   */
  tunnel_grace_ends_at: z.string().nullable(),
});
export type PreDelete = z.infer<typeof PreDeleteSchema>;
