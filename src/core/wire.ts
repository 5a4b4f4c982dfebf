// The edge HTTP API's request and answer bodies, each defined once. The edge
// validates requests and types its answers with these, /openapi.json is
// generated from them, and the CLI, the topology page and the agent read the
// edge's answers with them (docs/edge-api.md). Records, selectors and routes
// themselves live in schema.ts; listeners, key ownership and the address
// policy in their own modules.
//
// Answers are plain `z.object`s: a reader ignores a field a newer edge adds.
// The edge tests hold the edge itself to the exact shapes (no unknown keys).
//
// Part of the pure core: zod only, no `cloudflare:*`, `hono` or `node:*`.
import { z } from "zod";
import { SharedNamespacesSchema } from "./address-policy.ts";
import { ERROR_CODES } from "./errors.ts";
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
} from "./schema.ts";

export const RealmNameSchema = NameSchema.max(63);
export const TtlSecondsSchema = z.number().int().min(1).max(86_400);
export const VersionSchema = z.number().int().nonnegative();
/**
 * Which agent process registers a record (`Hopway-Instance`, docs/contract/edge-api.md §4.7): its
 * pod's UID in Kubernetes. Opaque to the edge; only compared.
 */
export const InstanceIdSchema = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/,
    "1 to 128 characters: letters, digits, '.', '_', ':' and '-', starting with a letter or digit",
  );
/** The realm changelog's epoch: changes when the realm's storage was recreated and versions start over. */
export const EpochSchema = z.string().regex(/^[0-9a-f]{1,32}$/);
/** One PEM certificate is about 1 KiB; the cap only keeps garbage out. */
const PemSchema = z.string().max(16 * 1024);
/**
 * PEM CA certificates that relay certificates are checked against
 * (docs/identity.md): one, or two during a CA rotation; more is not a rotation.
 */
export const TrustBundleSchema = z.array(PemSchema).max(16);

// ---- errors ------------------------------------------------------------------

export const FieldProblemSchema = z.object({ path: z.string(), message: z.string() });

/** Every failure, from the edge and from the agent's local API: `{error: {code, message, path?, issues?}}`. */
export const ErrorBodySchema = z.object({
  error: z.object({
    code: z.enum(ERROR_CODES),
    message: z.string(),
    /** The first bad field, when one is to blame. */
    path: z.string().optional(),
    /** Every bad field of a rejected write or import, so all are fixed in one pass. */
    issues: z.array(FieldProblemSchema).optional(),
  }),
});
export type ErrorBody = z.infer<typeof ErrorBodySchema>;

// ---- requests ----------------------------------------------------------------

export const HeartbeatBodySchema = z.strictObject({
  ttl_seconds: TtlSecondsSchema.optional(),
  report: ScalingReportSchema.optional(),
  /** The relay's links to its neighbour relays, for the topology page (docs/links.md). */
  links: LinkReportSchema.optional(),
});

const NamespaceSchema = TextFieldSchema;

export const TokenCreateBodySchema = z
  .strictObject({
    role: z.enum(["agent", "reader"]),
    namespaces: z.array(NamespaceSchema).max(256).default([]),
  })
  .superRefine((v, ctx) => {
    if (v.role === "agent" && v.namespaces.length === 0) {
      ctx.addIssue({ code: "custom", path: ["namespaces"], message: "an agent token needs at least one namespace" });
    }
    // A reader reads the whole realm: namespaces given to one would suggest a scope it does not have.
    if (v.role === "reader" && v.namespaces.length > 0) {
      ctx.addIssue({
        code: "custom",
        path: ["namespaces"],
        message: "a reader token reads the whole realm; namespaces are for agent tokens only",
      });
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
    .array(
      z
        .string()
        .regex(/^[^=]+=.*$/, "must be key=value")
        // As in records: assignment would take it as the prototype and drop the condition.
        .refine((kv) => !kv.startsWith("__proto__="), "'__proto__' is not a label key"),
    )
    .max(64)
    .optional(),
  limit: z.coerce.number().int().min(1).max(100_000).optional(),
  after: NameSchema.optional(),
  wait: z.coerce.number().min(0).max(60).optional(),
});

export const RouteQuerySchema = z.strictObject({ from: NameSchema, to: NameSchema });
export const ChangesQuerySchema = z.strictObject({
  since: z.coerce.number().int().nonnegative().optional(),
  epoch: EpochSchema.optional(),
  wait: z.coerce.number().min(0).max(60).optional(),
});
export const WaitQuerySchema = z.strictObject({ wait: z.coerce.number().min(0).max(60).optional() });
/** Query of GET /workloads/{workload}: the namespace whose reports to read; empty for records without one. */
export const WorkloadQuerySchema = z.strictObject({ namespace: z.union([z.literal(""), TextFieldSchema]).optional() });

/** A PEM SubjectPublicKeyInfo is about 180 bytes; the cap only keeps garbage out. */
export const CertificateRequestSchema = z.strictObject({
  public_key: z.string().min(1).max(4096),
});

/** Bounds of the per-realm leaf lifetime: renewal at two thirds must leave time to retry; the cap bounds exposure. */
export const MIN_CERT_LIFETIME_SECONDS = 600;
export const MAX_CERT_LIFETIME_SECONDS = 30 * 24 * 3600;
export const CaSettingsBodySchema = z.strictObject({
  cert_lifetime_seconds: z.number().int().min(MIN_CERT_LIFETIME_SECONDS).max(MAX_CERT_LIFETIME_SECONDS),
});

// ---- answers -----------------------------------------------------------------

export const HealthAnswerSchema = z.object({ ok: z.literal(true) });

export const RealmAnswerSchema = z.object({ realm: RealmNameSchema, created: z.boolean(), created_at: z.string() });
export const RealmExistsAnswerSchema = z.object({ realm: RealmNameSchema });
export const RealmListSchema = z.object({
  realms: z.array(z.object({ name: RealmNameSchema, created_at: z.string() })),
});

export const ImportAnswerSchema = z.object({
  version: VersionSchema,
  /** How many records the import stored. */
  records: z.number().int().nonnegative(),
});
export type ImportAnswer = z.infer<typeof ImportAnswerSchema>;

export const PutAnswerSchema = z.object({
  version: VersionSchema,
  name: NameSchema,
  created: z.boolean(),
  /** false when the record was the stored one byte for byte: the lease was renewed, the version not bumped. */
  changed: z.boolean(),
  expires_at: z.string().nullable(),
});

/** DELETE /nodes/{name} and DELETE /listeners/{name}. */
export const DeleteAnswerSchema = z.object({ version: VersionSchema, name: NameSchema });

/**
 * The scaling view of one workload (heartbeat answers, GET /workloads). The
 * fields added after the first version are optional so that an agent keeps
 * working against an edge that does not send them yet.
 */
export const WorkloadScalingSchema = z.object({
  workload: z.string(),
  desired_by_load: z.number().int().nonnegative(),
  state_floor: z.number().int().nonnegative(),
  draining: z.array(z.number().int().nonnegative()),
  desired_replicas: z.number().int().nonnegative().optional(),
  replicas_reporting: z.number().int().nonnegative().optional(),
  total_load: z.number().nonnegative().optional(),
});
export type WorkloadScalingAnswer = z.infer<typeof WorkloadScalingSchema>;

export const HeartbeatAnswerSchema = z.object({
  version: VersionSchema,
  expires_at: z.string().nullable(),
  scaling: WorkloadScalingSchema.optional(),
});

/** GET /nodes: the records at one version; `next` (with `limit`) is the `after` of the next page, null at the end. */
/**
 * The realm's shared namespaces (docs/contract/records.md §2.3) as record lists and changes carry
 * them, for whoever resolves routes from the records: null, every namespace; absent, an edge of
 * an earlier release (every namespace) or, in a change answer, no change.
 */
const SharedSettingSchema = SharedNamespacesSchema.nullable().optional();

export const NodesAnswerSchema = z.object({
  version: VersionSchema,
  records: z.array(RecordSchema),
  next: NameSchema.nullable().optional(),
  shared_namespaces: SharedSettingSchema,
});
export type NodesAnswer = z.infer<typeof NodesAnswerSchema>;

export const NodeAnswerSchema = z.object({
  version: VersionSchema,
  record: RecordSchema,
  /** ISO time the lease ends; null for a permanent record. */
  expires_at: z.string().nullable(),
  ttl_seconds: z.number().int().nullable(),
  report: ScalingReportSchema.nullable(),
});
export type NodeAnswer = z.infer<typeof NodeAnswerSchema>;

/** GET /routes; to a group, `routes` holds the route to each member. */
export const RouteAnswerSchema = z.object({
  from: NameSchema,
  to: NameSchema,
  version: VersionSchema,
  hops: z.array(HopSchema).nullable(),
  reason: NoRouteReasonSchema.optional(),
  detail: z.string().optional(),
  routes: z.array(RouteSchema).optional(),
});
export type RouteAnswer = z.infer<typeof RouteAnswerSchema>;

/**
 * The route table's form, raised whenever the table gains a field that older readers drop
 * (2: `peers.tenants`). The edge names it in a table's ETag and an agent in the table it saves, so
 * a table read by, or fetched from, a release without the field is fetched again in full rather
 * than kept until the realm's next change.
 */
export const ROUTE_TABLE_FORMAT = 2;

/** GET /route-tables/{node}: every route from one node. */
export const RouteTableSchema = z.object({
  node: NameSchema,
  version: VersionSchema,
  routes: z.array(RouteSchema),
  /** Always sent by the edge; absent from tables an agent computes itself (records sync). */
  trust_bundle: TrustBundleSchema.optional(),
  /**
   * The intermediates this relay treats as relays (core/relays.ts, docs/contract/edge-api.md §5.2). Sent
   * by the edge and computed by records sync; a table without it (an edge of an earlier release)
   * treats every intermediate as a relay, by name and by address.
   */
  relays: z.array(z.object({ node: NameSchema, aliases: z.boolean() })).optional(),
  /**
   * The nodes that may open relay links to this relay: those its gateways accept (core/relays.ts,
   * docs/contract/edge-api.md §5.2). A table without it (an edge of an earlier release) takes links
   * from every node it lists.
   */
  peers: z
    .object({
      any: z.boolean(),
      nodes: z.array(NameSchema),
      /**
       * Under shared namespaces, the peers of each unshared namespace other than the relay's own: the relay bounds
       * what each holds of its tunnel pool (core/relays.ts). Absent: none (or an edge of an earlier release).
       */
      tenants: z.array(z.object({ namespace: TextFieldSchema, nodes: z.array(NameSchema) })).optional(),
    })
    .optional(),
});
export type RouteTable = z.infer<typeof RouteTableSchema>;

const RecordChangeSchema = z.object({
  name: NameSchema,
  /** null: the record was removed. */
  record: RecordSchema.nullable(),
});
/**
 * GET /changes. `reset`: the caller's version is too old or from another
 * epoch; reload with GET /nodes, then ask again. The edge always sends the
 * trust bundle and the shared namespaces; readers take an answer without one as "no change to it".
 */
export const ChangesAnswerSchema = z.discriminatedUnion("kind", [
  z.object({
    kind: z.literal("current"),
    epoch: EpochSchema,
    version: VersionSchema,
    trust_bundle: TrustBundleSchema.optional(),
    shared_namespaces: SharedSettingSchema,
  }),
  z.object({
    kind: z.literal("reset"),
    epoch: EpochSchema,
    version: VersionSchema,
    trust_bundle: TrustBundleSchema.optional(),
    shared_namespaces: SharedSettingSchema,
  }),
  z.object({
    kind: z.literal("delta"),
    epoch: EpochSchema,
    version: VersionSchema,
    changes: z.array(RecordChangeSchema),
    trust_bundle: TrustBundleSchema.optional(),
    shared_namespaces: SharedSettingSchema,
  }),
]);
export type ChangesAnswer = z.infer<typeof ChangesAnswerSchema>;

export const WorkloadAnswerSchema = z.object({
  version: VersionSchema,
  /** Reports are per namespace: the namespace of the pods reporting (null: records without one). */
  namespace: TextFieldSchema.nullable(),
  scaling: WorkloadScalingSchema,
  pods: z.array(z.object({ node: NameSchema, report: ScalingReportSchema, reported_at: z.string() })),
});

/** PUT /listeners/{name}; `version` is the declarations' own counter, not the realm's. */
export const ListenerWriteAnswerSchema = z.object({ version: VersionSchema, name: NameSchema, created: z.boolean() });

/** One relay's link to a neighbour, as the relay last reported it with its heartbeat. */
export const LinkStatusSchema = z.object({
  from: NameSchema,
  ...LinkStateSchema.shape,
  reported_at: z.string(),
});
export type LinkStatus = z.infer<typeof LinkStatusSchema>;
export const LinksAnswerSchema = z.object({ links: z.array(LinkStatusSchema) });
export type LinksAnswer = z.infer<typeof LinksAnswerSchema>;

export const TokenInfoSchema = z.object({
  id: z.string(),
  role: z.enum(["agent", "reader"]),
  namespaces: z.array(z.string()),
  created_at: z.string(),
});
export type TokenInfo = z.infer<typeof TokenInfoSchema>;
export const TokenCreatedSchema = TokenInfoSchema.extend({ token: z.string() });
export const TokensAnswerSchema = z.object({ tokens: z.array(TokenInfoSchema) });
/** DELETE /tokens/{id}: the id of the token revoked. */
export const TokenRevokedSchema = z.object({ revoked: z.string() });

export const CertificateAnswerSchema = z.object({
  certificate: PemSchema,
  /** What the relay presents: the leaf, then intermediates (none: the realm CA signs leaves directly). */
  chain: z.array(PemSchema).min(1).max(16),
  trust_bundle: TrustBundleSchema.min(1),
  not_after: z.string(),
  uri: z.string(),
  serial: z.string(),
});
export type CertificateAnswer = z.infer<typeof CertificateAnswerSchema>;
export const TrustBundleAnswerSchema = z.object({ version: VersionSchema, trust_bundle: TrustBundleSchema });
export type TrustBundleAnswer = z.infer<typeof TrustBundleAnswerSchema>;
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
      /** Leaves of this CA that have not expired yet. */
      outstanding_certificates: z.number().int(),
      /** When the last of them expires; null when none is outstanding. */
      outstanding_until: z.string().nullable(),
    }),
  ),
  /** Generations dropped by this call (retire-old only). */
  retired: z.array(z.number().int()).optional(),
});
export type CaStatus = z.infer<typeof CaStatusSchema>;
export type CaAuthorityInfo = CaStatus["authorities"][number];
