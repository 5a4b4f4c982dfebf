// Stable error codes. Operators and scripts match on `code`, never on `message`,
// so a code once shipped is never renamed (docs/contract/edge-api.md §1.3).
// Part of the pure core.
import type { z } from "zod";

export const ERROR_CODES = [
  "invalid_input", // a field failed validation (path names it)
  "invalid_json", // the body is not JSON at all
  "invalid_yaml", // the topology is not acceptable YAML: a syntax error, or a tag it never needs (!!js/function)
  "body_too_large",
  "unknown_node",
  "unknown_realm", // the admin has not created this realm (404)
  "unauthorized", // no or unknown token (401)
  "forbidden", // a token without the right (403)
  "namespace_forbidden", // agent token writing outside its namespaces (403)
  "not_found",
  "conflict", // a concurrent change, or a state that refuses the request (409)
  "name_certified", // a node record would take a name another namespace holds unexpired relay certificates for (409)
  "gateway_forbidden", // a gateway address outside the realm's address policy (403)
  "quota_exceeded", // the write would take a namespace or the realm past its record limit (403)
  "name_forbidden", // a record name outside the names the realm's policy gives its namespace (403)
  "name_held", // another namespace's record of this name went away moments ago; it keeps the name a while (409)
  "name_in_use", // another agent instance holds the record's live lease: two agents register one name (409)
  "method_not_allowed", // an HTTP method no endpoint takes (405)
  "rate_limited", // the token is past its write or change budget; Retry-After says when to try again (429)
  "not_configured", // a secret the request needs is not set on the Worker (503)
  "internal",
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/**
 * What a client of the edge (the CLI) reports on its own: the edge was
 * unreachable, too slow, or answered something that is not one of its
 * documented bodies; or it answered a route with no hops (`no_route`, with the
 * answer's `reason`). The edge itself never sends these as error codes.
 */
export const CLIENT_ERROR_CODES = ["network", "timeout", "bad_response", "no_route"] as const;
export type ClientErrorCode = (typeof CLIENT_ERROR_CODES)[number];

/**
 * A failure with a stable code: thrown by the core and the edge (which turns
 * it into its `{error: {code, message, path?, issues?}}` answer with `status`)
 * and by the CLI when it reads such an answer, or gets none (`status` undefined).
 */
export class EdgeError extends Error {
  override readonly name = "EdgeError";
  constructor(
    readonly status: number | undefined,
    readonly code: ErrorCode | ClientErrorCode,
    message: string,
    readonly path?: string,
    readonly issues?: ReadonlyArray<FieldProblem>,
    /** Whole seconds the client should wait before trying again: the answer's `Retry-After`. */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
  }

  /** The answer body; only edge codes reach it (the edge never throws a client code). */
  body(): { error: { code: ErrorCode | ClientErrorCode; message: string; path?: string; issues?: FieldProblem[] } } {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(this.path !== undefined ? { path: this.path } : {}),
        ...(this.issues !== undefined ? { issues: [...this.issues] } : {}),
      },
    };
  }
}
/** `["relaysvr1", "discovery", "gateway", 2, "priority"]` → `relaysvr1.discovery.gateway[2].priority`. */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else {
      const key = String(part);
      out += /^[A-Za-z_$][\w$-]*$/.test(key) ? (out ? `.${key}` : key) : `[${JSON.stringify(key)}]`;
    }
  }
  return out;
}

export interface FieldProblem {
  path: string;
  message: string;
}

/**
 * Every problem zod found, each named by its path, so a user fixes them all in
 * one pass. A field the schema does not know is named by its own path (zod
 * names the object that holds it), one problem per field.
 */
export function describeIssues(error: z.ZodError, prefix: ReadonlyArray<PropertyKey> = []): FieldProblem[] {
  return error.issues.flatMap((issue) =>
    issue.code === "unrecognized_keys"
      ? issue.keys.map((key) => ({
          path: formatPath([...prefix, ...issue.path, key]),
          message: `'${key}' is not a field here`,
        }))
      : [{ path: formatPath([...prefix, ...issue.path]), message: issue.message }],
  );
}
