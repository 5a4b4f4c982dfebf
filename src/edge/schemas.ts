// Request and response shapes of the edge HTTP API, built from the shared
// core schemas. The handlers validate with these and /openapi.json is
// generated from them, so the document cannot drift from the code.
import { z } from "zod";
import { MAX_CERT_LIFETIME_SECONDS, MIN_CERT_LIFETIME_SECONDS } from "../../durable-objects/ca.ts";
import {
  HopSchema,
  LinkReportSchema,
  LinkStateSchema,
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
  /** The relay's links to its neighbour relays, for the topology page (docs/links.md). */
  links: LinkReportSchema.optional(),
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
/** PEM CA certificates that relay certificates are checked against (docs/identity.md). */
export const TrustBundleSchema = z.array(z.string());
export const ChangesAnswerSchema = z.object({
  kind: z.enum(["current", "delta", "reset"]),
  epoch: z.string(),
  version: z.number().int().nonnegative(),
  changes: z.array(z.object({ name: z.string(), record: RecordSchema.nullable() })).optional(),
  trust_bundle: TrustBundleSchema,
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
export const RouteTableSchema = z.object({
  node: NameSchema,
  version: VersionSchema,
  routes: z.array(RouteSchema),
  trust_bundle: TrustBundleSchema,
});
export const WorkloadAnswerSchema = z.object({
  version: VersionSchema,
  scaling: WorkloadScalingSchema,
  pods: z.array(z.object({ node: NameSchema, report: ScalingReportSchema, reported_at: z.string() })),
});
/** PUT /listeners/{name}; `version` is the declarations' own counter, not the realm's. */
export const ListenerWriteAnswerSchema = z.object({ version: VersionSchema, name: NameSchema, created: z.boolean() });
export const ListenerDeleteAnswerSchema = z.object({ version: VersionSchema, name: NameSchema });

/** GET /links: the link state each relay last reported with its heartbeat. */
export const LinksAnswerSchema = z.object({
  links: z.array(
    z.object({
      from: NameSchema,
      ...LinkStateSchema.shape,
      reported_at: z.string(),
    }),
  ),
});
export const TokenInfoSchema = z.object({
  id: z.string(),
  role: z.enum(["agent", "reader"]),
  namespaces: z.array(z.string()),
  created_at: z.string(),
});
export const TokenCreatedSchema = TokenInfoSchema.extend({ token: z.string() });

// ---- relay identities (docs/identity.md) ----

/** A PEM SubjectPublicKeyInfo is about 180 bytes; the cap only keeps garbage out. */
export const CertificateRequestSchema = z.strictObject({
  public_key: z.string().min(1).max(4096),
});
export const CertificateAnswerSchema = z.object({
  certificate: z.string(),
  chain: z.array(z.string()),
  trust_bundle: TrustBundleSchema,
  not_after: z.string(),
  uri: z.string(),
  serial: z.string(),
});
export const TrustBundleAnswerSchema = z.object({ version: VersionSchema, trust_bundle: TrustBundleSchema });
export const CaSettingsBodySchema = z.strictObject({
  cert_lifetime_seconds: z.number().int().min(MIN_CERT_LIFETIME_SECONDS).max(MAX_CERT_LIFETIME_SECONDS),
});
export const CaStatusSchema = z.object({
  version: VersionSchema,
  cert_lifetime_seconds: z.number().int(),
  authorities: z.array(
    z.object({
      generation: z.number().int(),
      active: z.boolean(),
      certificate: z.string(),
      created_at: z.string(),
      not_after: z.string(),
      outstanding_certificates: z.number().int(),
      outstanding_until: z.string().nullable(),
    }),
  ),
  retired: z.array(z.number().int()).optional(),
});

export const RealmAnswerSchema = z.object({ realm: RealmNameSchema, created: z.boolean(), created_at: z.string() });
export const RealmListSchema = z.object({
  realms: z.array(z.object({ name: RealmNameSchema, created_at: z.string() })),
});
