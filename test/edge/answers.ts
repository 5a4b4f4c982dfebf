// Holds every answer the edge gives in the edge tests to the endpoint table
// (src/edge/api.ts), the one /openapi.json is generated from: the status must
// be one the endpoint declares, and the body must parse against the schema for
// that status with no key the schema does not name, at any depth.
import { z } from "zod";
import { type Answer, API, type Endpoint, UNROUTED_ANSWERS } from "../../src/edge/api.ts";

/**
 * `schema` with every object made strict, all the way down. The wire schemas
 * are plain objects so that readers ignore fields a newer edge adds; the edge
 * itself must send exactly what it documents.
 */
export function strictly(schema: z.ZodType): z.ZodType {
  if (schema instanceof z.ZodObject) {
    const shape: Record<string, z.ZodType> = {};
    for (const [key, field] of Object.entries(schema.shape as Record<string, z.ZodType>)) shape[key] = strictly(field);
    return z.strictObject(shape);
  }
  if (schema instanceof z.ZodArray) return z.array(strictly(schema.element as z.ZodType));
  if (schema instanceof z.ZodOptional) return strictly(schema.unwrap() as z.ZodType).optional();
  if (schema instanceof z.ZodNullable) return strictly(schema.unwrap() as z.ZodType).nullable();
  if (schema instanceof z.ZodDiscriminatedUnion) {
    const options = (schema.options as z.ZodType[]).map(strictly) as [z.ZodObject, ...z.ZodObject[]];
    return z.discriminatedUnion(schema._zod.def.discriminator, options);
  }
  if (schema instanceof z.ZodUnion) {
    return z.union((schema.options as z.ZodType[]).map(strictly) as [z.ZodType, z.ZodType, ...z.ZodType[]]);
  }
  if (schema instanceof z.ZodRecord) {
    return z.record(schema.keyType as z.ZodString, strictly(schema.valueType as z.ZodType));
  }
  if (schema instanceof z.ZodPipe) return z.pipe(schema.in as z.ZodType, strictly(schema.out as z.ZodType));
  return schema;
}

const strictCache = new Map<z.ZodType, z.ZodType>();
function strictOf(schema: z.ZodType): z.ZodType {
  let s = strictCache.get(schema);
  if (s === undefined) {
    s = strictly(schema);
    strictCache.set(schema, s);
  }
  return s;
}

const ENDPOINTS = (Object.entries(API) as [string, Endpoint][]).map(([id, e]) => ({
  id,
  endpoint: e,
  pattern: new RegExp(`^${e.path.replace(/:[A-Za-z_]+/g, "[^/]+")}$`),
}));

/** The topology page and its assets: HTML, script and icon, not API answers. */
const PAGE_PATHS = /^\/(ui(\/.*)?|favicon\.ico)?$/;

/** Which endpoint answered `method path`; undefined when none serves it. */
export function endpointOf(method: string, path: string): { id: string; endpoint: Endpoint } | undefined {
  const m = method.toLowerCase() === "head" ? "get" : method.toLowerCase();
  return ENDPOINTS.find((e) => e.endpoint.method === m && e.pattern.test(path));
}

/** Every (endpoint, status) the checker has seen, for the coverage report of a test file. */
export const seen = new Set<string>();

/** Why an answer does not conform to the table, or null when it does. */
export function answerProblem(
  method: string,
  url: string,
  status: number,
  contentType: string | null,
  text: string,
): string | null {
  const path = new URL(url).pathname;
  if (PAGE_PATHS.test(path)) return null;
  const found = endpointOf(method, path);
  const answers: Readonly<Record<number, Answer>> = found?.endpoint.answers ?? UNROUTED_ANSWERS;
  const where = `${method} ${path} → ${status}`;
  const answer = answers[status];
  if (answer === undefined) {
    return `${where}: status not declared for ${found ? found.id : "an unrouted request"} in src/edge/api.ts`;
  }
  seen.add(`${found?.id ?? "unrouted"} ${status}`);
  if (answer.schema === undefined || method.toUpperCase() === "HEAD") {
    return text === "" ? null : `${where}: declared without a body, but the body is ${text.slice(0, 120)}`;
  }
  if (!/^application\/json\b/.test(contentType ?? "")) return `${where}: content-type ${contentType}, not JSON`;
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return `${where}: the body is not JSON: ${text.slice(0, 120)}`;
  }
  for (const schema of [answer.schema, strictOf(answer.schema)]) {
    const r = schema.safeParse(body);
    if (!r.success) {
      const issues = r.error.issues.map((i) => `${i.path.join(".") || "(body)"}: ${i.message}`).join("; ");
      return `${where}: the body does not match ${found?.id ?? "the error body"}: ${issues}`;
    }
  }
  return null;
}
