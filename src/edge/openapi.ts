// /openapi.json, generated from the endpoint table (api.ts) that the handlers
// answer through, so the description cannot drift from the code.
import { RecordSchema, ScalingReportSchema } from "../core/schema.ts";
import { ErrorBodySchema } from "../core/wire.ts";
import { type Answer, API, type Endpoint, jsonSchema, UNROUTED_ANSWERS } from "./api.ts";

/** `/v1/realms/:realm/nodes/:name` → `/v1/realms/{realm}/nodes/{name}`. */
export function openApiPath(path: string): string {
  return path.replace(/:([A-Za-z_]+)/g, "{$1}");
}

function responses(answers: Readonly<Record<number, Answer>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [status, answer] of Object.entries(answers)) {
    out[status] =
      answer.schema === undefined
        ? { description: answer.description }
        : { description: answer.description, content: { "application/json": { schema: jsonSchema(answer.schema) } } };
  }
  return out;
}

function operation(e: Endpoint): Record<string, unknown> {
  const pathParams = [...e.path.matchAll(/:([A-Za-z_]+)/g)].map((m) => ({
    name: m[1],
    in: "path",
    required: true,
    schema: { type: "string" },
  }));
  const parameters = [...pathParams, ...(e.query ?? [])];
  return {
    ...(e.summary !== undefined ? { summary: e.summary } : {}),
    ...(e.public ? { security: [] } : {}),
    ...(parameters.length > 0 ? { parameters } : {}),
    ...(e.body !== undefined ? { requestBody: { content: e.body } } : {}),
    responses: responses(e.answers),
  };
}

export function openApiDocument(): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const e of Object.values(API) as Endpoint[]) {
    const path = openApiPath(e.path);
    paths[path] ??= {};
    (paths[path] as Record<string, unknown>)[e.method] = operation(e);
  }
  return {
    openapi: "3.0.3",
    info: {
      title: "Hopway edge",
      version: "1",
      description:
        "Registry, leases and route resolution for Hopway relays. Authenticate with `Authorization: Bearer <token>`. Errors are `{error: {code, message, path?, issues?}}`; a path or method no endpoint serves answers one too (`default` below).",
    },
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer" } },
      schemas: {
        Record: jsonSchema(RecordSchema, "input"),
        ScalingReport: jsonSchema(ScalingReportSchema),
        Error: jsonSchema(ErrorBodySchema),
      },
      responses: responses(UNROUTED_ANSWERS),
    },
    security: [{ bearer: [] }],
    paths,
  };
}
