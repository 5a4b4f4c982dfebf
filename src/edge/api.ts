// Every endpoint of the edge with the answers it may give, per status, in one
// table. Handlers answer through `reply`/`replyText`, which type the body by the
// endpoint's schema for that status; /openapi.json is generated from the same
// table; and the edge tests check every answer they get against it. An answer
// that is not in this table is a bug in one of the three.
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { z } from "zod";
import {
  AddressPolicySchema,
  ListenerDeclarationSchema,
  ListenersAnswerSchema,
  MembershipSchema,
  OwnersAnswerSchema,
  OwnersRequestSchema,
  RealmLimitsSchema,
  RealmLimitsViewSchema,
  SharedNamespacesBodySchema,
} from "../core/index.ts";
import { RecordSchema } from "../core/schema.ts";
import {
  CaSettingsBodySchema,
  CaStatusSchema,
  CertificateAnswerSchema,
  CertificateRequestSchema,
  ChangesAnswerSchema,
  DeleteAnswerSchema,
  ErrorBodySchema,
  HealthAnswerSchema,
  HeartbeatAnswerSchema,
  HeartbeatBodySchema,
  ImportAnswerSchema,
  InstanceIdSchema,
  LinksAnswerSchema,
  ListenerWriteAnswerSchema,
  NodeAnswerSchema,
  NodesAnswerSchema,
  PutAnswerSchema,
  RealmAnswerSchema,
  RealmExistsAnswerSchema,
  RealmListSchema,
  RouteAnswerSchema,
  RouteTableSchema,
  TokenCreateBodySchema,
  TokenCreatedSchema,
  TokenRevokedSchema,
  TokensAnswerSchema,
  TrustBundleAnswerSchema,
  TtlSecondsSchema,
  WorkloadAnswerSchema,
} from "../core/wire.ts";

/** One status of one endpoint: a JSON body of `schema`, or no body at all. */
export interface Answer {
  description: string;
  schema?: z.ZodType;
}

export interface Endpoint {
  method: "get" | "put" | "post" | "delete";
  /** Hono's syntax (`:name`); /openapi.json shows it as `{name}`. */
  path: string;
  summary?: string;
  /** No Authorization needed. */
  public?: true;
  /** OpenAPI parameter objects for the query and headers; path parameters are derived from `path`. */
  query?: ReadonlyArray<Record<string, unknown>>;
  /** OpenAPI request body `content`. */
  body?: Record<string, unknown>;
  answers: Readonly<Record<number, Answer>>;
}

const error = (description: string): Answer => ({ description, schema: ErrorBodySchema });

/** What any realm endpoint may answer besides its own successes. */
const REALM_ERRORS = {
  400: error("`invalid_input` (path names the field), `invalid_json`, `invalid_yaml`"),
  401: error("`unauthorized`: no token, or one not signed for this realm (decided before the realm is touched)"),
  403: error(
    "`forbidden` / `namespace_forbidden` / `gateway_forbidden` and `name_forbidden` (address policy) / `quota_exceeded` (record limits)",
  ),
  404: error(
    "`unknown_realm`: the admin has not created this realm; `unknown_node` / `not_found`: no such record, group, listener, token or workload report",
  ),
  413: error("`body_too_large`"),
  429: error(
    "`rate_limited`: the token is past its write or change budget (GET /limits); `Retry-After` says in how many seconds to try again",
  ),
  500: error("`internal`"),
  503: error("`not_configured`: a secret the request needs is not set on the Worker"),
} as const;
/** A node record may not take a name another namespace holds unexpired relay certificates for. */
const NAME_CERTIFIED = error(
  "`name_certified`: relay certificates for this name issued to another namespace are unexpired; the message says until when",
);
/** Another agent instance holds the record's live lease (docs/contract/edge-api.md §4.7). */
const NAME_IN_USE = error(
  "`name_in_use`: another agent instance (Hopway-Instance) holds this record's live lease; the message says until when",
);
const INSTANCE = {
  name: "Hopway-Instance",
  in: "header",
  required: false,
  description:
    "the writing agent's instance id (its pod UID): a live lease another instance holds is not replaced, renewed or deleted (409 name_in_use)",
  schema: jsonSchema(InstanceIdSchema),
} as const;
const NOT_MODIFIED = { 304: { description: "not modified: the realm version still matches If-None-Match" } } as const;
const WAIT = {
  name: "wait",
  in: "query",
  required: false,
  description: "with If-None-Match: hold the request up to this many seconds (max 60) until the version changes",
  schema: { type: "number", minimum: 0, maximum: 60 },
} as const;

type Json = Record<string, unknown>;
export function jsonSchema(s: z.ZodType, io: "input" | "output" = "output"): Json {
  const out: Json = { ...z.toJSONSchema(s, { io, unrepresentable: "any", target: "openapi-3.0" }) };
  delete out.$schema;
  return out;
}
const json = (s: z.ZodType) => ({ "application/json": { schema: jsonSchema(s, "input") } });

export const API = {
  health: {
    method: "get",
    path: "/healthz",
    public: true,
    answers: { 200: { description: "alive", schema: HealthAnswerSchema } },
  },
  openapi: {
    method: "get",
    path: "/openapi.json",
    public: true,
    summary: "This document",
    answers: {
      200: {
        description: "the OpenAPI 3.0 description of the edge",
        schema: z.object({
          openapi: z.string(),
          info: z.unknown(),
          components: z.unknown(),
          security: z.unknown(),
          paths: z.record(z.string(), z.unknown()),
        }),
      },
    },
  },
  listRealms: {
    method: "get",
    path: "/v1/realms",
    summary: "Every realm the admin created (admin)",
    answers: { 200: { description: "realms", schema: RealmListSchema }, ...REALM_ERRORS },
  },
  createRealm: {
    method: "put",
    path: "/v1/realms/:realm",
    summary: "Create a realm (admin); idempotent. Until then every request for it is refused",
    answers: {
      200: { description: "existed", schema: RealmAnswerSchema },
      201: { description: "created", schema: RealmAnswerSchema },
      ...REALM_ERRORS,
    },
  },
  getRealm: {
    method: "get",
    path: "/v1/realms/:realm",
    summary: "Whether the realm exists (admin): 200 or 404 unknown_realm",
    answers: { 200: { description: "exists", schema: RealmExistsAnswerSchema }, ...REALM_ERRORS },
  },
  getPolicy: {
    method: "get",
    path: "/v1/realms/:realm/policy",
    summary: "The gateway address policy (admin); `{}` is the built-in default",
    answers: { 200: { description: "policy", schema: AddressPolicySchema }, ...REALM_ERRORS },
  },
  putPolicy: {
    method: "put",
    path: "/v1/realms/:realm/policy",
    summary: "Replace the gateway address policy (admin); checked on every non-admin write from then on",
    body: json(AddressPolicySchema),
    answers: { 200: { description: "stored", schema: AddressPolicySchema }, ...REALM_ERRORS },
  },
  putSharedNamespaces: {
    method: "put",
    path: "/v1/realms/:realm/policy/shared-namespaces",
    summary:
      "Set only the policy's shared namespaces (admin; null: every namespace), keeping its address and name rules; answers the whole stored policy",
    body: json(SharedNamespacesBodySchema),
    answers: { 200: { description: "stored", schema: AddressPolicySchema }, ...REALM_ERRORS },
  },
  getLimits: {
    method: "get",
    path: "/v1/realms/:realm/limits",
    summary: "The realm's record limits (admin), defaults filled in, and how many records each namespace holds",
    answers: { 200: { description: "limits and usage", schema: RealmLimitsViewSchema }, ...REALM_ERRORS },
  },
  putLimits: {
    method: "put",
    path: "/v1/realms/:realm/limits",
    summary:
      "Replace the record limits (admin); an omitted field is its default. Records already stored stay; writes that would add past a limit are refused",
    body: json(RealmLimitsSchema),
    answers: { 200: { description: "stored", schema: RealmLimitsViewSchema }, ...REALM_ERRORS },
  },
  importRecords: {
    method: "post",
    path: "/v1/realms/:realm/import",
    summary: "Store every record of a topology (YAML or JSON), or none on any error",
    body: {
      "application/yaml": { schema: { type: "string" } },
      "application/json": {
        schema: { oneOf: [{ type: "array", items: jsonSchema(RecordSchema, "input") }, { type: "object" }] },
      },
    },
    answers: {
      200: { description: "stored", schema: ImportAnswerSchema },
      ...REALM_ERRORS,
      409: error(`${NAME_CERTIFIED.description}; \`name_held\`: a name another namespace let go moments ago`),
    },
  },
  listNodes: {
    method: "get",
    path: "/v1/realms/:realm/nodes",
    summary: "Records matching a selector",
    query: [
      ...["name", "type", "namespace_name", "api_version", "kind", "group", "hostname", "pid", "after", "limit"].map(
        (n) => ({ name: n, in: "query", required: false, schema: { type: "string" } }),
      ),
      {
        name: "label",
        in: "query",
        required: false,
        description: "key=value, repeatable",
        schema: { type: "array", items: { type: "string" } },
        explode: true,
      },
      WAIT,
    ],
    answers: {
      200: { description: "records at a version (ETag)", schema: NodesAnswerSchema },
      ...NOT_MODIFIED,
      ...REALM_ERRORS,
    },
  },
  getNode: {
    method: "get",
    path: "/v1/realms/:realm/nodes/:name",
    summary: "One record with its lease and last scaling report",
    answers: { 200: { description: "the record", schema: NodeAnswerSchema }, ...REALM_ERRORS },
  },
  putNode: {
    method: "put",
    path: "/v1/realms/:realm/nodes/:name",
    summary: "Register or replace one record; ttl_seconds makes it a lease",
    query: [INSTANCE],
    body: {
      "application/json": {
        schema: {
          allOf: [
            jsonSchema(RecordSchema, "input"),
            {
              type: "object",
              properties: { ttl_seconds: jsonSchema(TtlSecondsSchema) },
              description: "optional: makes the record a lease that expires unless renewed by heartbeat",
            },
          ],
        },
      },
    },
    answers: {
      200: { description: "replaced", schema: PutAnswerSchema },
      201: { description: "created", schema: PutAnswerSchema },
      ...REALM_ERRORS,
      409: error(
        `${NAME_CERTIFIED.description}; \`name_held\`: a name another namespace let go moments ago; ${NAME_IN_USE.description}`,
      ),
    },
  },
  deleteNode: {
    method: "delete",
    path: "/v1/realms/:realm/nodes/:name",
    query: [INSTANCE],
    answers: { 200: { description: "removed", schema: DeleteAnswerSchema }, ...REALM_ERRORS, 409: NAME_IN_USE },
  },
  heartbeat: {
    method: "post",
    path: "/v1/realms/:realm/nodes/:name/heartbeat",
    summary: "Renew the lease and report the pod's scaling signals; answers the workload's scaling view",
    query: [INSTANCE],
    body: json(HeartbeatBodySchema),
    answers: { 200: { description: "renewed", schema: HeartbeatAnswerSchema }, ...REALM_ERRORS, 409: NAME_IN_USE },
  },
  listListeners: {
    method: "get",
    path: "/v1/realms/:realm/listeners",
    summary:
      "Every listener declaration; with If-None-Match and ?wait=N (≤ 60) the edge holds the request until they change",
    query: [WAIT],
    answers: {
      200: { description: "declarations", schema: ListenersAnswerSchema },
      ...NOT_MODIFIED,
      ...REALM_ERRORS,
    },
  },
  putListener: {
    method: "put",
    path: "/v1/realms/:realm/listeners/:name",
    summary: "Declare a listener for the relays a selector picks (admin, or an agent token in its namespace)",
    body: json(ListenerDeclarationSchema),
    answers: {
      200: { description: "replaced", schema: ListenerWriteAnswerSchema },
      201: { description: "declared", schema: ListenerWriteAnswerSchema },
      ...REALM_ERRORS,
    },
  },
  deleteListener: {
    method: "delete",
    path: "/v1/realms/:realm/listeners/:name",
    answers: { 200: { description: "removed", schema: DeleteAnswerSchema }, ...REALM_ERRORS },
  },
  links: {
    method: "get",
    path: "/v1/realms/:realm/links",
    summary: "Each relay's links to its neighbour relays, as it last reported them with its heartbeat",
    answers: { 200: { description: "link state per relay and peer", schema: LinksAnswerSchema }, ...REALM_ERRORS },
  },
  workload: {
    method: "get",
    path: "/v1/realms/:realm/workloads/:workload",
    summary:
      "The scaling view of a workload from its pods' live reports, in one namespace: the same workload name in two namespaces is two workloads",
    query: [
      {
        name: "namespace",
        in: "query",
        required: false,
        description:
          "whose reports (empty: records without a namespace); omitted: the only namespace reporting the workload (for an agent token, among its own), 400 when several do",
        schema: { type: "string" },
      },
    ],
    answers: { 200: { description: "aggregate scaling view", schema: WorkloadAnswerSchema }, ...REALM_ERRORS },
  },
  route: {
    method: "get",
    path: "/v1/realms/:realm/routes",
    summary: "The route from one record to another; to a group, also the route to each member (`routes`)",
    query: [
      { name: "from", in: "query", required: true, schema: { type: "string" } },
      { name: "to", in: "query", required: true, schema: { type: "string" } },
    ],
    answers: {
      200: { description: "route (hops null with a reason when there is none)", schema: RouteAnswerSchema },
      ...NOT_MODIFIED,
      ...REALM_ERRORS,
    },
  },
  routeTable: {
    method: "get",
    path: "/v1/realms/:realm/route-tables/:node",
    summary: "Every route from a node; long-poll with If-None-Match and wait",
    query: [WAIT],
    answers: {
      200: { description: "route table (ETag)", schema: RouteTableSchema },
      ...NOT_MODIFIED,
      ...REALM_ERRORS,
    },
  },
  changes: {
    method: "get",
    path: "/v1/realms/:realm/changes",
    summary:
      "Records changed since a version (for clients that keep a replica and resolve routes locally); reset = reload via /nodes",
    query: [
      { name: "since", in: "query", required: false, schema: { type: "integer", minimum: 0 } },
      { name: "epoch", in: "query", required: false, schema: { type: "string" } },
      WAIT,
    ],
    answers: { 200: { description: "changes", schema: ChangesAnswerSchema }, ...REALM_ERRORS },
  },
  ownersQuery: {
    method: "get",
    path: "/v1/realms/:realm/owners",
    summary:
      "Which member of a group owns each key (rendezvous over active members), and the previous owner during a move",
    query: [
      { name: "group", in: "query", required: true, schema: { type: "string" } },
      {
        name: "key",
        in: "query",
        required: true,
        description: "repeatable, up to 256 keys",
        schema: { type: "array", items: { type: "string" } },
        style: "form",
        explode: true,
      },
    ],
    answers: { 200: { description: "owners", schema: OwnersAnswerSchema }, ...REALM_ERRORS },
  },
  ownersBatch: {
    method: "post",
    path: "/v1/realms/:realm/owners",
    summary: "Batch form of the owner look-up (up to 10,000 keys)",
    body: json(OwnersRequestSchema),
    answers: { 200: { description: "owners", schema: OwnersAnswerSchema }, ...REALM_ERRORS },
  },
  membership: {
    method: "get",
    path: "/v1/realms/:realm/groups/:group/membership",
    summary: "A group's members with their draining and holds_state flags (ETag)",
    answers: { 200: { description: "membership", schema: MembershipSchema }, ...NOT_MODIFIED, ...REALM_ERRORS },
  },
  certificate: {
    method: "post",
    path: "/v1/realms/:realm/relays/:name/certificate",
    summary:
      "Issue a relay certificate (URI SAN spiffe://{realm}/relay/{name}) for a P-256 public key; admin or an agent token holding the node record's namespace",
    body: json(CertificateRequestSchema),
    answers: {
      200: { description: "the leaf, the chain to present and the trust bundle", schema: CertificateAnswerSchema },
      ...REALM_ERRORS,
      409: error(
        "`conflict`: too many unexpired certificates for this name in its namespace, or the CA or the record changed while signing; `name_certified`: another namespace holds unexpired certificates for this name",
      ),
    },
  },
  trustBundle: {
    method: "get",
    path: "/v1/realms/:realm/trust-bundle",
    summary: "The relay CA certificates peers are checked against (two during a rotation); any token of the realm",
    answers: { 200: { description: "trust bundle", schema: TrustBundleAnswerSchema }, ...REALM_ERRORS },
  },
  getCa: {
    method: "get",
    path: "/v1/realms/:realm/ca",
    summary: "The realm CA's generations, outstanding certificates and the leaf lifetime (admin)",
    answers: { 200: { description: "CA status (no private keys)", schema: CaStatusSchema }, ...REALM_ERRORS },
  },
  putCa: {
    method: "put",
    path: "/v1/realms/:realm/ca",
    summary: "Set the lifetime of certificates issued from now on (admin)",
    body: json(CaSettingsBodySchema),
    answers: { 200: { description: "CA status", schema: CaStatusSchema }, ...REALM_ERRORS },
  },
  rotateCa: {
    method: "post",
    path: "/v1/realms/:realm/ca/rotate",
    summary: "Create a new CA that signs from now on; the old one stays in the trust bundle (admin)",
    answers: {
      200: { description: "CA status", schema: CaStatusSchema },
      ...REALM_ERRORS,
      409: error("`conflict`: another rotation ran at the same time"),
    },
  },
  retireOldCa: {
    method: "post",
    path: "/v1/realms/:realm/ca/retire-old",
    summary: "Drop every CA but the active one; refused (409) while any of them has unexpired certificates (admin)",
    answers: {
      200: { description: "CA status with `retired`", schema: CaStatusSchema },
      ...REALM_ERRORS,
      409: error("`conflict`: the old CA still has unexpired certificates"),
    },
  },
  createToken: {
    method: "post",
    path: "/v1/realms/:realm/tokens",
    summary: "Create a scoped token (admin); the token is shown once and stored only as a SHA-256 hash",
    body: json(TokenCreateBodySchema),
    answers: { 201: { description: "created", schema: TokenCreatedSchema }, ...REALM_ERRORS },
  },
  listTokens: {
    method: "get",
    path: "/v1/realms/:realm/tokens",
    summary: "The realm's tokens, without their secrets (admin)",
    answers: { 200: { description: "tokens (no secrets)", schema: TokensAnswerSchema }, ...REALM_ERRORS },
  },
  revokeToken: {
    method: "delete",
    path: "/v1/realms/:realm/tokens/:id",
    summary: "Revoke a token (admin); effective on the next request",
    answers: { 200: { description: "revoked", schema: TokenRevokedSchema }, ...REALM_ERRORS },
  },
} as const satisfies Record<string, Endpoint>;

export type Api = typeof API;

/** Answers of any path or method no endpoint serves (404 `not_found`, 405 `method_not_allowed`). */
export const UNROUTED_ANSWERS = {
  404: error("`not_found`: no such endpoint"),
  405: error("`method_not_allowed`: an HTTP method no endpoint takes (the `Allow` header lists them)"),
  500: error("`internal`"),
} as const satisfies Record<number, Answer>;

type BodyOf<E extends Endpoint, S extends keyof E["answers"]> = E["answers"][S] extends infer A
  ? A extends { schema: infer Z extends z.ZodType }
    ? z.input<Z>
    : never
  : never;

/** A JSON answer of `endpoint` with `status`, its body typed by the schema the table gives for that status. */
export function reply<E extends Endpoint, S extends keyof E["answers"] & ContentfulStatusCode>(
  c: Context,
  _endpoint: E,
  status: S,
  body: BodyOf<E, S>,
  headers?: Record<string, string>,
): Response {
  return c.json(body, status, headers);
}

/** The same body, as text: for answers rendered once and served from a cache. */
export function replyText<E extends Endpoint, S extends keyof E["answers"]>(
  _endpoint: E,
  _status: S,
  body: BodyOf<E, S>,
): string {
  return JSON.stringify(body);
}
