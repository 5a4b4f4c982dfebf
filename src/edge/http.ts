// HTTP plumbing of the edge: bounded body reading, JSON decoding, and the one
// error shape `{error: {code, message, path?, issues?}}` every failure uses.
import type { z } from "zod";
import { BodyTooLarge, readBounded } from "../core/bounded-body.ts";
import { describeIssues, EdgeError, type FieldProblem } from "../core/errors.ts";
import type { Failure } from "./types.ts";

export { EdgeError };

/** Most bodies: one record (custom_data alone may be 64 KiB) or a small command. */
export const MAX_BODY_BYTES = 256 * 1024;
/**
 * One import request. Parsing and validating happen in one Worker isolate
 * (128 MB): a 22 MiB, 50,000-record import restarted the isolate locally,
 * 11 MiB (25,000 records) imports in one go. Larger realms import in several
 * requests, each atomic.
 */
export const MAX_IMPORT_BYTES = 12 * 1024 * 1024;

export function fromFailure(f: Failure): EdgeError {
  return new EdgeError(
    f.error.status,
    f.error.code,
    f.error.message,
    f.error.path,
    undefined,
    f.error.retry_after_seconds,
  );
}

/** The success branch of an RPC result, or the failure thrown as its HTTP error. */
export function unwrap<R extends { ok: true } | Failure>(r: R): Extract<R, { ok: true }> {
  if (r.ok === false) throw fromFailure(r as Failure);
  return r as Extract<R, { ok: true }>;
}

/** Every problem in one 400, the first one's path as `path`, all of them in `issues`. */
export function invalid(problems: FieldProblem[]): EdgeError {
  const first = problems[0];
  const message = problems.map((p) => (p.path ? `${p.path}: ${p.message}` : p.message)).join("; ");
  return new EdgeError(400, "invalid_input", message || "invalid input", first?.path || undefined, problems);
}

export function zodInvalid(error: z.ZodError, prefix: ReadonlyArray<PropertyKey> = []): EdgeError {
  return invalid(describeIssues(error, prefix));
}

/** Reads at most `limit` bytes; a larger body is refused before it is buffered whole. */
export async function readBody(req: Request, limit: number): Promise<string> {
  let bytes: Uint8Array;
  try {
    bytes = await readBounded(req.body, req.headers.get("content-length"), limit);
  } catch (err) {
    throw err instanceof BodyTooLarge ? tooLarge(limit) : err;
  }
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    throw new EdgeError(400, "invalid_json", "the body is not valid UTF-8");
  }
}

function tooLarge(limit: number): EdgeError {
  const hint = limit === MAX_IMPORT_BYTES ? "; split the import into several requests (each is atomic)" : "";
  return new EdgeError(413, "body_too_large", `the body exceeds ${limit} bytes${hint}`);
}

export async function readJson(req: Request, limit = MAX_BODY_BYTES): Promise<unknown> {
  const text = await readBody(req, limit);
  if (text.trim() === "") throw new EdgeError(400, "invalid_json", "the body is empty; expected a JSON object");
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new EdgeError(
      400,
      "invalid_json",
      `the body is not JSON: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}

/** Validates `value` against `schema` or throws a 400 naming every bad field. */
export function validate<S extends z.ZodType>(
  schema: S,
  value: unknown,
  prefix: ReadonlyArray<PropertyKey> = [],
): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw zodInvalid(r.error, prefix);
  return r.data;
}

/**
 * The realm's admin-only writes (the address policy, the record limits, the CA) refuse other tokens
 * alike, before their body is read (docs/contract/edge-api.md §1.3).
 */
export function requireAdmin(caller: { kind: string }): void {
  if (caller.kind !== "admin") {
    throw new EdgeError(
      403,
      "forbidden",
      "only the admin token may do this (tokens, the address policy, record limits, the CA)",
    );
  }
}
