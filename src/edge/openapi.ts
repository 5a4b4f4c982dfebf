// /openapi.json, generated from the same zod schemas the handlers validate
// with (zod 4's toJSONSchema), so the description cannot drift from the code.
import { z } from "zod";
import {
  AddressPolicySchema,
  ListenerDeclarationSchema,
  ListenersAnswerSchema,
  MembershipSchema,
  OwnersAnswerSchema,
  OwnersRequestSchema,
  RecordSchema,
  ScalingReportSchema,
} from "../core/index.ts";
import {
  CaSettingsBodySchema,
  CaStatusSchema,
  CertificateAnswerSchema,
  CertificateRequestSchema,
  ChangesAnswerSchema,
  ErrorBodySchema,
  HeartbeatAnswerSchema,
  HeartbeatBodySchema,
  ImportAnswerSchema,
  LinksAnswerSchema,
  ListenerDeleteAnswerSchema,
  ListenerWriteAnswerSchema,
  NodeAnswerSchema,
  NodesAnswerSchema,
  PutAnswerSchema,
  RealmAnswerSchema,
  RealmListSchema,
  RouteAnswerSchema,
  RouteTableSchema,
  TokenCreateBodySchema,
  TokenCreatedSchema,
  TokenInfoSchema,
  TrustBundleAnswerSchema,
  TtlSecondsSchema,
  WorkloadAnswerSchema,
} from "./schemas.ts";

type Json = Record<string, unknown>;

function schema(s: z.ZodType, io: "input" | "output" = "output"): Json {
  const out: Json = { ...z.toJSONSchema(s, { io, unrepresentable: "any", target: "openapi-3.0" }) };
  delete out.$schema;
  return out;
}

const json = (s: z.ZodType, io: "input" | "output" = "output") => ({ "application/json": { schema: schema(s, io) } });
const ok = (description: string, s: z.ZodType) => ({ description, content: json(s) });
const errors = {
  "400": {
    description: "invalid input (`invalid_input`, `invalid_json`, `invalid_yaml`)",
    content: json(ErrorBodySchema),
  },
  "401": {
    description: "`unauthorized`: no token, or one not signed for this realm (decided before the realm is touched)",
    content: json(ErrorBodySchema),
  },
  "403": {
    description: "`forbidden` / `namespace_forbidden` / `gateway_forbidden` (address policy)",
    content: json(ErrorBodySchema),
  },
  "404": { description: "`unknown_realm`: the admin has not created this realm", content: json(ErrorBodySchema) },
  "413": { description: "`body_too_large`", content: json(ErrorBodySchema) },
};
const realmParam = { name: "realm", in: "path", required: true, schema: { type: "string" } };
const nameParam = (name: string) => ({ name, in: "path", required: true, schema: { type: "string" } });
const waitParam = {
  name: "wait",
  in: "query",
  required: false,
  description: "with If-None-Match: hold the request up to this many seconds (max 60) until the version changes",
  schema: { type: "number", minimum: 0, maximum: 60 },
};
const conditional = {
  "304": { description: "not modified: the realm version still matches If-None-Match" },
};

export function openApiDocument(): Record<string, unknown> {
  const putBody = {
    allOf: [
      schema(RecordSchema, "input"),
      {
        type: "object",
        properties: { ttl_seconds: schema(TtlSecondsSchema) },
        description: "optional: makes the record a lease that expires unless renewed by heartbeat",
      },
    ],
  };
  return {
    openapi: "3.0.3",
    info: {
      title: "Hopway edge",
      version: "1",
      description:
        "Registry, leases and route resolution for Hopway relays. Authenticate with `Authorization: Bearer <token>`. Errors are `{error: {code, message, path?}}`.",
    },
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer" } },
      schemas: {
        Record: schema(RecordSchema, "input"),
        ScalingReport: schema(ScalingReportSchema),
        Error: schema(ErrorBodySchema),
      },
    },
    security: [{ bearer: [] }],
    paths: {
      "/healthz": { get: { security: [], responses: { "200": { description: "alive" } } } },
      "/v1/realms": {
        get: {
          summary: "Every realm the admin created (admin)",
          responses: { "200": ok("realms", RealmListSchema), ...errors },
        },
      },
      "/v1/realms/{realm}": {
        put: {
          summary: "Create a realm (admin); idempotent. Until then every request for it is refused",
          parameters: [realmParam],
          responses: { "200": ok("existed", RealmAnswerSchema), "201": ok("created", RealmAnswerSchema), ...errors },
        },
        get: {
          summary: "Whether the realm exists (admin): 200 or 404 unknown_realm",
          parameters: [realmParam],
          responses: { "200": { description: "exists" }, ...errors },
        },
      },
      "/v1/realms/{realm}/policy": {
        get: {
          summary: "The gateway address policy (admin); `{}` is the built-in default",
          parameters: [realmParam],
          responses: { "200": ok("policy", AddressPolicySchema), ...errors },
        },
        put: {
          summary: "Replace the gateway address policy (admin); checked on every non-admin write from then on",
          parameters: [realmParam],
          requestBody: { content: json(AddressPolicySchema, "input") },
          responses: { "200": ok("stored", AddressPolicySchema), ...errors },
        },
      },
      "/v1/realms/{realm}/import": {
        post: {
          summary: "Store every record of a topology (YAML or JSON), or none on any error",
          parameters: [realmParam],
          requestBody: {
            content: {
              "application/yaml": { schema: { type: "string" } },
              "application/json": {
                schema: { oneOf: [{ type: "array", items: schema(RecordSchema, "input") }, { type: "object" }] },
              },
            },
          },
          responses: { "200": ok("stored", ImportAnswerSchema), ...errors },
        },
      },
      "/v1/realms/{realm}/nodes": {
        get: {
          summary: "Records matching a selector",
          parameters: [
            realmParam,
            ...[
              "name",
              "type",
              "namespace_name",
              "api_version",
              "kind",
              "group",
              "hostname",
              "pid",
              "after",
              "limit",
            ].map((n) => ({ name: n, in: "query", required: false, schema: { type: "string" } })),
            {
              name: "label",
              in: "query",
              required: false,
              description: "key=value, repeatable",
              schema: { type: "array", items: { type: "string" } },
              explode: true,
            },
            waitParam,
          ],
          responses: { "200": ok("records at a version (ETag)", NodesAnswerSchema), ...conditional, ...errors },
        },
      },
      "/v1/realms/{realm}/nodes/{name}": {
        get: {
          parameters: [realmParam, nameParam("name")],
          responses: { "200": ok("the record", NodeAnswerSchema), ...errors },
        },
        put: {
          summary: "Register or replace one record; ttl_seconds makes it a lease",
          parameters: [realmParam, nameParam("name")],
          requestBody: { content: { "application/json": { schema: putBody } } },
          responses: { "200": ok("replaced", PutAnswerSchema), "201": ok("created", PutAnswerSchema), ...errors },
        },
        delete: {
          parameters: [realmParam, nameParam("name")],
          responses: { "200": { description: "removed" }, ...errors },
        },
      },
      "/v1/realms/{realm}/nodes/{name}/heartbeat": {
        post: {
          summary: "Renew the lease and report the pod's scaling signals; answers the workload's scaling view",
          parameters: [realmParam, nameParam("name")],
          requestBody: { content: json(HeartbeatBodySchema, "input") },
          responses: { "200": ok("renewed", HeartbeatAnswerSchema), ...errors },
        },
      },
      "/v1/realms/{realm}/listeners": {
        get: {
          summary:
            "Every listener declaration; with If-None-Match and ?wait=N (≤ 60) the edge holds the request until they change",
          parameters: [realmParam, { name: "wait", in: "query", required: false, schema: { type: "number" } }],
          responses: { "200": ok("declarations", ListenersAnswerSchema), ...conditional, ...errors },
        },
      },
      "/v1/realms/{realm}/listeners/{name}": {
        put: {
          summary: "Declare a listener for the relays a selector picks (admin, or an agent token in its namespace)",
          parameters: [realmParam, nameParam("name")],
          requestBody: { content: json(ListenerDeclarationSchema, "input") },
          responses: {
            "200": ok("replaced", ListenerWriteAnswerSchema),
            "201": ok("declared", ListenerWriteAnswerSchema),
            ...errors,
          },
        },
        delete: {
          parameters: [realmParam, nameParam("name")],
          responses: { "200": ok("removed", ListenerDeleteAnswerSchema), ...errors },
        },
      },
      "/v1/realms/{realm}/links": {
        get: {
          summary: "Each relay's links to its neighbour relays, as it last reported them with its heartbeat",
          parameters: [realmParam],
          responses: { "200": ok("link state per relay and peer", LinksAnswerSchema), ...errors },
        },
      },
      "/v1/realms/{realm}/workloads/{workload}": {
        get: {
          parameters: [realmParam, nameParam("workload")],
          responses: { "200": ok("aggregate scaling view", WorkloadAnswerSchema), ...errors },
        },
      },
      "/v1/realms/{realm}/routes": {
        get: {
          summary: "The route from one record to another",
          parameters: [
            realmParam,
            { name: "from", in: "query", required: true, schema: { type: "string" } },
            { name: "to", in: "query", required: true, schema: { type: "string" } },
          ],
          responses: {
            "200": ok("route (hops null with a reason when there is none)", RouteAnswerSchema),
            ...conditional,
            ...errors,
          },
        },
      },
      "/v1/realms/{realm}/route-tables/{node}": {
        get: {
          summary: "Every route from a node; long-poll with If-None-Match and wait",
          parameters: [realmParam, nameParam("node"), waitParam],
          responses: { "200": ok("route table (ETag)", RouteTableSchema), ...conditional, ...errors },
        },
      },
      "/v1/realms/{realm}/changes": {
        get: {
          summary:
            "Records changed since a version (for clients that keep a replica and resolve routes locally); reset = reload via /nodes",
          parameters: [
            realmParam,
            { name: "since", in: "query", required: false, schema: { type: "integer", minimum: 0 } },
            { name: "epoch", in: "query", required: false, schema: { type: "string" } },
            waitParam,
          ],
          responses: { "200": ok("changes", ChangesAnswerSchema), ...errors },
        },
      },
      "/v1/realms/{realm}/owners": {
        get: {
          summary:
            "Which member of a group owns each key (rendezvous over active members), and the previous owner during a move",
          parameters: [
            realmParam,
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
          responses: { "200": ok("owners", OwnersAnswerSchema), ...errors },
        },
        post: {
          summary: "Batch form of the owner look-up (up to 10,000 keys)",
          parameters: [realmParam],
          requestBody: { content: json(OwnersRequestSchema, "input") },
          responses: { "200": ok("owners", OwnersAnswerSchema), ...errors },
        },
      },
      "/v1/realms/{realm}/groups/{group}/membership": {
        get: {
          summary: "A group's members with their draining and holds_state flags (ETag)",
          parameters: [realmParam, nameParam("group")],
          responses: { "200": ok("membership", MembershipSchema), ...conditional, ...errors },
        },
      },
      "/v1/realms/{realm}/relays/{name}/certificate": {
        post: {
          summary:
            "Issue a relay certificate (URI SAN spiffe://{realm}/relay/{name}) for a P-256 public key; admin or an agent token holding the node record's namespace",
          parameters: [realmParam, nameParam("name")],
          requestBody: { content: json(CertificateRequestSchema, "input") },
          responses: {
            "200": ok("the leaf, the chain to present and the trust bundle", CertificateAnswerSchema),
            ...errors,
            "404": {
              description: "`unknown_node`: no such record; `unknown_realm`: the admin has not created this realm",
              content: json(ErrorBodySchema),
            },
            "409": {
              description: "`conflict`: too many unexpired certificates for this name",
              content: json(ErrorBodySchema),
            },
          },
        },
      },
      "/v1/realms/{realm}/trust-bundle": {
        get: {
          summary:
            "The relay CA certificates peers are checked against (two during a rotation); any token of the realm",
          parameters: [realmParam],
          responses: { "200": ok("trust bundle", TrustBundleAnswerSchema), ...errors },
        },
      },
      "/v1/realms/{realm}/ca": {
        get: {
          summary: "The realm CA's generations, outstanding certificates and the leaf lifetime (admin)",
          parameters: [realmParam],
          responses: { "200": ok("CA status (no private keys)", CaStatusSchema), ...errors },
        },
        put: {
          summary: "Set the lifetime of certificates issued from now on (admin)",
          parameters: [realmParam],
          requestBody: { content: json(CaSettingsBodySchema, "input") },
          responses: { "200": ok("CA status", CaStatusSchema), ...errors },
        },
      },
      "/v1/realms/{realm}/ca/rotate": {
        post: {
          summary: "Create a new CA that signs from now on; the old one stays in the trust bundle (admin)",
          parameters: [realmParam],
          responses: { "200": ok("CA status", CaStatusSchema), ...errors },
        },
      },
      "/v1/realms/{realm}/ca/retire-old": {
        post: {
          summary:
            "Drop every CA but the active one; refused (409) while any of them has unexpired certificates (admin)",
          parameters: [realmParam],
          responses: {
            "200": ok("CA status with `retired`", CaStatusSchema),
            "409": {
              description: "`conflict`: the old CA still has unexpired certificates",
              content: json(ErrorBodySchema),
            },
            ...errors,
          },
        },
      },
      "/v1/realms/{realm}/tokens": {
        post: {
          summary: "Create a scoped token (admin); the token is shown once and stored only as a SHA-256 hash",
          parameters: [realmParam],
          requestBody: { content: json(TokenCreateBodySchema, "input") },
          responses: { "201": ok("created", TokenCreatedSchema), ...errors },
        },
        get: {
          parameters: [realmParam],
          responses: { "200": ok("tokens (no secrets)", z.object({ tokens: z.array(TokenInfoSchema) })), ...errors },
        },
      },
      "/v1/realms/{realm}/tokens/{id}": {
        delete: {
          parameters: [realmParam, nameParam("id")],
          responses: { "200": { description: "revoked" }, ...errors },
        },
      },
    },
  };
}
