// The relay's wire protocol: an HTTP/1.1 CONNECT request head in, a status line
// out. Only what a proxy tunnel needs is parsed; anything else is refused.
import { NAME_PATTERN } from "@hopway/core/schema";

/** A request head larger than this is refused with 431 (docs/contract/relay-protocol.md §1.1 fixes 16 KiB). */
export const MAX_HEAD_BYTES = 16 * 1024;

/** Why a tunnel was not opened (docs/contract/relay-protocol.md §1.4). A closed set: these are metric label values. */
export const FAILURE_REASONS = [
  "bad_request",
  "method_not_allowed",
  "auth",
  "forbidden",
  "unknown_node",
  "header_timeout",
  "headers_too_large",
  "next_hop_failed",
  "over_capacity",
  "namespace_limit",
  "namespace_rate",
  "connect_timeout",
  "loop",
  "no_route_table",
] as const;
export type FailureReason = (typeof FAILURE_REASONS)[number];

export const STATUS_FOR: Record<FailureReason, number> = {
  bad_request: 400,
  method_not_allowed: 405,
  auth: 407,
  forbidden: 403,
  unknown_node: 404,
  header_timeout: 408,
  headers_too_large: 431,
  next_hop_failed: 502,
  over_capacity: 503,
  namespace_limit: 503,
  namespace_rate: 503,
  no_route_table: 503,
  connect_timeout: 504,
  loop: 508,
};

const PHRASES: Record<number, string> = {
  200: "Connection established",
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  407: "Proxy Authentication Required",
  408: "Request Timeout",
  431: "Request Header Fields Too Large",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  508: "Loop Detected",
};

const REFUSAL_STATUSES: ReadonlySet<number> = new Set(Object.values(STATUS_FOR));

/** Whether `status` is one a relay refuses a tunnel with (the table above); a next hop's answer with any other is not passed on. */
export function isRefusalStatus(status: number): boolean {
  return REFUSAL_STATUSES.has(status);
}

export function reasonForStatus(status: number): FailureReason {
  for (const [reason, code] of Object.entries(STATUS_FOR)) if (code === status) return reason as FailureReason;
  return "next_hop_failed";
}

export interface ConnectRequest {
  /** The authority as the client wrote it (`app1:8080`), forwarded unchanged to the next hop. */
  authority: string;
  node: string;
  /** 0 = the target's own gateway port. */
  port: number;
  /** Lower-cased names; repeated fields joined with ", ". */
  headers: ReadonlyMap<string, string>;
}

export type HeadProblem = { reason: FailureReason; detail: string };

/** Index just past the blank line that ends a head, or -1. */
export function findHeadEnd(buf: Buffer): number {
  const i = buf.indexOf("\r\n\r\n", 0, "latin1");
  return i < 0 ? -1 : i + 4;
}

// RFC 9110 token characters for header names.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function parseHeaders(lines: string[]): Map<string, string> | string {
  const headers = new Map<string, string>();
  for (const line of lines) {
    if (line === "") continue;
    const colon = line.indexOf(":");
    if (colon <= 0) return `malformed header line '${line.slice(0, 40)}'`;
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) return `invalid header name '${name.slice(0, 40)}'`;
    // Field values may not carry control characters (header injection, request smuggling).
    const value = line.slice(colon + 1).trim();
    // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point.
    if (/[\0-\x08\x0a-\x1f\x7f]/.test(value)) return `invalid characters in header '${name}'`;
    const key = name.toLowerCase();
    const prev = headers.get(key);
    headers.set(key, prev === undefined ? value : `${prev}, ${value}`);
  }
  return headers;
}

/** Parses a CONNECT request head (without the final blank line's bytes after it). */
export function parseConnectHead(head: Buffer): ConnectRequest | HeadProblem {
  const text = head.toString("latin1");
  const lines = text.split("\r\n");
  const requestLine = lines[0] ?? "";
  const m = /^([A-Z]+) (\S+) HTTP\/1\.[01]$/.exec(requestLine);
  if (!m) return { reason: "bad_request", detail: "malformed request line" };
  if (m[1] !== "CONNECT") {
    return { reason: "method_not_allowed", detail: "only CONNECT is supported (use curl -p / a tunnelling proxy)" };
  }
  const target = parseAuthority(m[2] as string);
  if ("reason" in target) return target;
  const headers = parseHeaders(lines.slice(1));
  if (typeof headers === "string") return { reason: "bad_request", detail: headers };
  return { ...target, headers };
}

/** A CONNECT target, `<node-name>[:<port>]`, from a request line or a link stream's `:authority`. */
export function parseAuthority(authority: string): Omit<ConnectRequest, "headers"> | HeadProblem {
  const am = /^([^:\s]+)(?::(\d{1,5}))?$/.exec(authority);
  if (!am) return { reason: "bad_request", detail: "CONNECT target must be <node-name>:<port>" };
  const node = am[1] as string;
  if (node.length > 253 || !NAME_PATTERN.test(node)) {
    return { reason: "bad_request", detail: "CONNECT target must name a node (DNS-1123 name), not a host or address" };
  }
  const port = am[2] === undefined ? 0 : Number(am[2]);
  if (port > 65535) return { reason: "bad_request", detail: "port must be 0-65535" };
  return { authority, node, port };
}

export interface ResponseHead {
  status: number;
  headers: Map<string, string>;
}

export function parseResponseHead(head: Buffer): ResponseHead | string {
  const lines = head.toString("latin1").split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0] ?? "");
  if (!m) return "malformed status line from next hop";
  const headers = parseHeaders(lines.slice(1));
  if (typeof headers === "string") return headers;
  return { status: Number(m[1]), headers };
}

/**
 * A header value (or a refusal's body line) as it may go into an HTTP/1.1 head: printable ASCII
 * only, anything else a space, at most 512 characters. Heads are written byte per character
 * (latin1), so any other character would be cut to a byte of its own: U+010D and U+010A would
 * become CR and LF, and a next relay could add header lines to an application's answer.
 */
export function sanitize(value: string): string {
  return value.replace(/[^\x20-\x7e]/g, " ").slice(0, 512);
}

/** An error response: status line, a machine-readable reason header and a one-line body, then close. */
export function errorResponse(
  status: number,
  reason: string,
  detail: string,
  extra: Record<string, string> = {},
): Buffer {
  const body = `${sanitize(detail)}\n`;
  let head = `HTTP/1.1 ${status} ${PHRASES[status] ?? "Error"}\r\nHopway-Error: ${reason}\r\n`;
  for (const [k, v] of Object.entries(extra)) head += `${k}: ${sanitize(v)}\r\n`;
  // The length of the body as written (latin1, one byte per character; `sanitize` left only ASCII).
  head += `Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body, "latin1")}\r\nConnection: close\r\n\r\n`;
  return Buffer.from(head + body, "latin1");
}

export function establishedResponse(path: string): Buffer {
  return Buffer.from(`HTTP/1.1 200 Connection established\r\nHopway-Path: ${sanitize(path)}\r\n\r\n`, "latin1");
}
