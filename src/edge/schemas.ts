// Request and response shapes of the edge HTTP API, built from the shared
// core schemas. The handlers validate with these and /openapi.json is
// generated from them, so the document cannot drift from the code.
import { z } from "zod";
import {
  HopSchema,
  NameSchema,
  NoRouteReasonSchema,
  RecordSchema,
  RouteSchema,
  ScalingReportSchema,
  TextFieldSchema,
} from "../core/schema.ts";

export const RealmNameSchema = NameSchema.max(63);
export const TtlSecondsSchema = z.number().int().min(1).max(86_400);

/** PUT /nodes/{name}: the record's own fields plus the lease. */
export const PutNodeBodySchema = z.intersection(RecordSchema, z.object({ ttl_seconds: TtlSecondsSchema.optional() }));

export const HeartbeatBodySchema = z.strictObject({
  ttl_seconds: TtlSecondsSchema.optional(),
  report: ScalingReportSchema.optional(),
});

export const NamespaceSchema = TextFieldSchema;

export const TokenCreateBodySchema = z
  .strictObject({
    role: z.enum(["agent", "reader"]),
    namespaces: z.array(NamespaceSchema).max(256).default([]),
  })
  .superRefine((v, ctx) => {
    if (v.role === "agent" && v.namespaces.length === 0) {
      ctx.addIssue({ code: "custom", path: ["namespaces"], message: "an agent token needs at least one namespace" });
    }
  });

/** Query of GET /nodes: a selector, flattened. */
export const NodesQuerySchema = z.strictObject({
  name: NameSchema.optional(),
  type: z.enum(["node", "client", "group"]).optional(),
  namespace_name: TextFieldSchema.optional(),
  api_version: TextFieldSchema.optional(),
  kind: TextFieldSchema.optional(),
  group: TextFieldSchema.optional(),
  hostname: TextFieldSchema.optional(),
  pid: z.coerce.number().int().nonnegative().optional(),
  /** Repeatable `key=value`. */
  label: z
    .array(z.string().regex(/^[^=]+=.*$/, "must be key=value"))
    .max(64)
    .optional(),
  limit: z.coerce.number().int().min(1).max(100_000).optional(),
  after: NameSchema.optional(),
  wait: z.coerce.number().min(0).max(60).optional(),
});

export const RouteQuerySchema = z.strictObject({ from: NameSchema, to: NameSchema });
export const ChangesQuerySchema = z.strictObject({
  since: z.coerce.number().int().nonnegative().optional(),
  epoch: z
    .string()
    .regex(/^[0-9a-f]{1,32}$/)
    .optional(),
  wait: z.coerce.number().min(0).max(60).optional(),
});
export const ChangesAnswerSchema = z.object({
  kind: z.enum(["current", "delta", "reset"]),
  epoch: z.string(),
  version: z.number().int().nonnegative(),
  changes: z.array(z.object({ name: z.string(), record: RecordSchema.nullable() })).optional(),
});
export const WaitQuerySchema = z.strictObject({ wait: z.coerce.number().min(0).max(60).optional() });

// ---- responses (documented in /openapi.json) ----

export const ErrorBodySchema = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    path: z.string().optional(),
    issues: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  }),
});
export const VersionSchema = z.number().int().nonnegative();
export const ImportAnswerSchema = z.object({ version: VersionSchema, records: z.number().int() });
export const PutAnswerSchema = z.object({
  version: VersionSchema,
  name: NameSchema,
  created: z.boolean(),
  changed: z.boolean(),
  expires_at: z.string().nullable(),
});
export const WorkloadScalingSchema = z.object({
  workload: z.string(),
  desired_by_load: z.number().int(),
  state_floor: z.number().int(),
  draining: z.array(z.number().int()),
  desired_replicas: z.number().int().optional(),
  replicas_reporting: z.number().int().optional(),
  total_load: z.number().optional(),
});
export const HeartbeatAnswerSchema = z.object({
  version: VersionSchema,
  expires_at: z.string().nullable(),
  scaling: WorkloadScalingSchema.optional(),
});
export const NodesAnswerSchema = z.object({
  version: VersionSchema,
  records: z.array(RecordSchema),
  next: NameSchema.nullable().optional(),
});
export const NodeAnswerSchema = z.object({
  version: VersionSchema,
  record: RecordSchema,
  expires_at: z.string().nullable(),
  ttl_seconds: z.number().int().nullable(),
  report: ScalingReportSchema.nullable(),
});
export const RouteAnswerSchema = z.object({
  from: NameSchema,
  to: NameSchema,
  version: VersionSchema,
  hops: z.array(HopSchema).nullable(),
  reason: NoRouteReasonSchema.optional(),
  detail: z.string().optional(),
});
export const RouteTableSchema = z.object({ node: NameSchema, version: VersionSchema, routes: z.array(RouteSchema) });
export const WorkloadAnswerSchema = z.object({
  version: VersionSchema,
  scaling: WorkloadScalingSchema,
  pods: z.array(z.object({ node: NameSchema, report: ScalingReportSchema, reported_at: z.string() })),
});
export const TokenInfoSchema = z.object({
  id: z.string(),
  role: z.enum(["agent", "reader"]),
  namespaces: z.array(z.string()),
  created_at: z.string(),
});
export const TokenCreatedSchema = TokenInfoSchema.extend({ token: z.string() });

export const RealmAnswerSchema = z.object({ realm: RealmNameSchema, created: z.boolean(), created_at: z.string() });
export const RealmListSchema = z.object({
  realms: z.array(z.object({ name: RealmNameSchema, created_at: z.string() })),
});
