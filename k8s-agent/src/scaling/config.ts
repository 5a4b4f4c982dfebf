// The agent's `scaling:` configuration section.
// The autoscaling settings (docs/autoscaling.md); the agent's config.ts embeds them.

import { NAME_PATTERN } from "@hopway/core/schema";
import { z } from "zod";

export const DeletionCostConfigSchema = z
  .strictObject({
    /**
     * Patch `controller.kubernetes.io/pod-deletion-cost` on the agent's own pod.
     * Honoured only for ReplicaSet-managed pods (Deployments, Kubernetes ≥ 1.22)
     * — a StatefulSet ignores it and always removes the highest ordinal.
     */
    enabled: z.boolean().default(false),
    /** No API write more often than this, failed or not (docs/contract/autoscaling.md §4.2: 30 s). */
    min_interval_seconds: z.number().int().min(1).max(3600).default(30),
    /** Upper bound for the spacing after repeated failures. */
    max_backoff_seconds: z.number().int().min(1).max(86_400).default(300),
  })
  .prefault({});

export const ScalingConfigSchema = z
  .strictObject({
    /** StatefulSet this pod belongs to; empty disables scaling reports. */
    workload: z
      .string()
      .max(253)
      .refine((v) => v === "" || NAME_PATTERN.test(v), "must be empty or a DNS-1123 name")
      .default(""),
    /** Load factor per pod the HPA aims for (docs/contract/autoscaling.md §1.1: 0.7). */
    target_load: z.number().positive().max(10).default(0.7),
    /**
     * The HPA's minReplicas and maxReplicas, sent with every report so that
     * the coordinator never asks pods to drain that the HPA will keep.
     */
    min_replicas: z.number().int().min(1).max(100_000).optional(),
    max_replicas: z.number().int().min(1).max(100_000).optional(),
    /**
     * The pod's StatefulSet ordinal. Left out, it is read from the pod name
     * (POD_NAME, `<statefulset>-<ordinal>`).
     */
    ordinal: z.number().int().min(0).max(100_000).optional(),
    /**
     * Who may call the application's local API (`/v1/local/*`): `loopback`
     * (the application runs in the same pod; the default) or `any`.
     * `/metrics`, the probes and the pre-delete hook are always open: the
     * scraper and the hook controller call them from outside the pod.
     */
    local_api_from: z.enum(["loopback", "any"]).default("loopback"),
    /**
     * A draining pod is told to keep draining this long after the coordinator
     * stops asking, so that it does not take state back while an HPA acting on
     * metrics one pipeline-latency old (scrape + adapter + sync, typically
     * 30-60 s) may still remove it. 0 follows the coordinator at once.
     */
    undrain_after_seconds: z.number().int().min(0).max(3600).default(120),
    /**
     * How long open tunnels alone may hold the pre-delete hook back once the hook is being polled
     * (docs/contract/autoscaling.md §4.1). A client that keeps a connection open for good (a
     * database pool) would otherwise keep the pod from ever scaling in. After it, the pod may go;
     * its shutdown still gives open tunnels `shutdown.drain_seconds`. 0: tunnels never hold it.
     */
    pre_delete_tunnel_grace_seconds: z.number().int().min(0).max(86_400).default(300),
    deletion_cost: DeletionCostConfigSchema,
  })
  .prefault({});
export type ScalingConfig = z.infer<typeof ScalingConfigSchema>;
export type DeletionCostConfig = z.infer<typeof DeletionCostConfigSchema>;
