// The agent's `scaling:` configuration section.
// OWNER: the autoscaling work (issue 5); the agent's config.ts embeds it.
import { z } from "zod";

export const ScalingConfigSchema = z
  .strictObject({
    /** StatefulSet this pod belongs to; empty disables scaling reports. */
    workload: z.string().default(""),
    /** Load factor per pod the HPA aims for (autoscaling.md: 0.7). */
    target_load: z.number().positive().max(10).default(0.7),
  })
  .prefault({});
export type ScalingConfig = z.infer<typeof ScalingConfigSchema>;
