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
  "unknown_realm",
  "unauthorized", // no or unknown token (401)
  "forbidden", // a token without the right (403)
  "namespace_forbidden", // agent token writing outside its namespaces (403)
  "not_found",
  "conflict",
  "gateway_forbidden", // a gateway address outside the realm's address policy (403)
  "method_not_allowed", // an HTTP method no endpoint takes (405)
  "not_configured", // a secret the request needs is not set on the Worker (503)
  "no_route",
  "internal",
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export interface ErrorBody {
  error: { code: ErrorCode; message: string; path?: string };
}

export class HopwayError extends Error {
  readonly code: ErrorCode;
  readonly path: string | undefined;
  readonly status: number;
  constructor(code: ErrorCode, message: string, options: { path?: string; status?: number } = {}) {
    super(message);
    this.name = "HopwayError";
    this.code = code;
    this.path = options.path;
    this.status = options.status ?? 400;
  }
  toJSON(): ErrorBody {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(this.path !== undefined ? { path: this.path } : {}),
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

/** Every problem zod found, each named by its path, so a user fixes them all in one pass. */
export function describeIssues(error: z.ZodError, prefix: ReadonlyArray<PropertyKey> = []): FieldProblem[] {
  return error.issues.map((issue) => ({
    path: formatPath([...prefix, ...issue.path]),
    message: issue.message,
  }));
}
