// A small client for a running Hopway edge, shared by the `import`, `route` and
// `nodes` commands. It owns the three things every remote command needs to get
// right the same way: where the edge is (flags, then environment), how a
// request is authenticated, and how an edge error becomes a stable code and an
// exit status that scripts can rely on.
import { type ParseArgsOptionsConfig, parseArgs } from "node:util";
import type { z } from "zod";
import { EdgeError } from "../core/errors.ts";
import { NAME_PATTERN } from "../core/schema.ts";
import {
  ErrorBodySchema,
  type ImportAnswer,
  ImportAnswerSchema,
  type NodesAnswer,
  NodesAnswerSchema,
  type RouteAnswer,
  RouteAnswerSchema,
} from "../core/wire.ts";

export { EdgeError };

/** Exit statuses of the remote commands: scripts branch on these. */
export const EXIT_OK = 0;
/** The edge refused, the network failed, or there is no route. */
export const EXIT_EDGE = 1;
/** The command line or the input file is wrong: fixing it is the user's job. */
export const EXIT_USAGE = 2;

/** Where a command writes and what it reads from its environment; tests pass their own. */
export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: Readonly<Record<string, string | undefined>>;
  /** Whether stdout is a terminal (colour, wide tables); false in tests and pipes. */
  isTTY?: boolean;
}

export const processIo = (): CliIo => ({
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
  isTTY: process.stdout.isTTY === true,
});

/** A problem the user must fix in the command line or input; exits 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** Input the edge rejected as invalid is the user's to fix (exit 2); everything else is exit 1. */
export function exitCodeOf(error: EdgeError): number {
  return error.code === "invalid_input" ||
    error.code === "invalid_json" ||
    error.code === "invalid_yaml" ||
    error.code === "body_too_large"
    ? EXIT_USAGE
    : EXIT_EDGE;
}

export interface EdgeTarget {
  url: string;
  realm: string;
  token: string | undefined;
}

// Realm names travel in URL paths; holding them to the edge's rule (a record
// name of at most 63 characters) keeps a typo from becoming a request elsewhere.
const REALM_MAX = 63;

/** Flags win over the environment: an operator overriding one call must not be surprised by a stale export. */
export function resolveTarget(
  flags: { edge?: string | undefined; realm?: string | undefined; token?: string | undefined },
  env: CliIo["env"],
): EdgeTarget {
  const url = flags.edge ?? env.HOPWAY_EDGE_URL;
  const realm = flags.realm ?? env.HOPWAY_REALM;
  const token = flags.token ?? env.HOPWAY_TOKEN;
  if (!url) throw new UsageError("no edge URL: pass --edge URL or set HOPWAY_EDGE_URL");
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`--edge: '${url}' is not a URL (expected e.g. https://hopway.example.workers.dev)`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new UsageError(`--edge: '${url}' must be an http:// or https:// URL`);
  }
  if (!realm) throw new UsageError("no realm: pass --realm NAME or set HOPWAY_REALM");
  if (!NAME_PATTERN.test(realm) || realm.length > REALM_MAX) {
    throw new UsageError(`--realm: '${printable(realm)}' must be lower-case letters, digits, '-' and '.' (at most 63)`);
  }
  return { url: parsed.href.replace(/\/+$/, ""), realm, token: token === "" ? undefined : token };
}

const DEFAULT_TIMEOUT_MS = 15_000;

export class EdgeClient {
  constructor(
    readonly target: EdgeTarget,
    private readonly timeoutMs = DEFAULT_TIMEOUT_MS,
  ) {}

  private realmPath(rest: string): string {
    return `${this.target.url}/v1/realms/${encodeURIComponent(this.target.realm)}${rest}`;
  }

  private async request(method: string, url: string, body?: { text: string; type: string }): Promise<unknown> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (this.target.token) headers.authorization = `Bearer ${this.target.token}`;
    if (body) headers["content-type"] = body.type;
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers,
        ...(body ? { body: body.text } : {}),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (error) {
      if (error instanceof DOMException && error.name === "TimeoutError") {
        throw new EdgeError(undefined, "timeout", `no answer from ${this.target.url} within ${this.timeoutMs} ms`);
      }
      const cause = error instanceof Error && error.cause instanceof Error ? `: ${error.cause.message}` : "";
      throw new EdgeError(undefined, "network", `cannot reach ${this.target.url}${cause}`);
    }
    const text = await response.text();
    let json: unknown;
    try {
      json = text === "" ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (!response.ok) {
      const parsed = ErrorBodySchema.safeParse(json);
      if (parsed.success) {
        const e = parsed.data.error;
        throw new EdgeError(response.status, e.code, e.message, e.path, e.issues);
      }
      throw new EdgeError(
        response.status,
        "bad_response",
        `HTTP ${response.status} from ${url} without a Hopway error body${text ? `: ${text.slice(0, 200)}` : ""}`,
      );
    }
    if (json === undefined) {
      throw new EdgeError(response.status, "bad_response", `HTTP ${response.status} from ${url} is not JSON`);
    }
    return json;
  }

  private check<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
    const parsed = schema.safeParse(value);
    if (!parsed.success) {
      const first = parsed.error.issues[0];
      const where = first && first.path.length > 0 ? ` at ${first.path.join(".")}` : "";
      throw new EdgeError(undefined, "bad_response", `the edge's ${what} is not what this CLI understands${where}`);
    }
    return parsed.data;
  }

  /** Imports a topology file's text; `format` tells the edge how to parse it. */
  async importTopology(text: string, format: "yaml" | "json"): Promise<ImportAnswer> {
    const type = format === "json" ? "application/json" : "application/yaml";
    const answer = await this.request("POST", this.realmPath("/import"), { text, type });
    return this.check(ImportAnswerSchema, answer, "import answer");
  }

  async route(from: string, to: string): Promise<RouteAnswer> {
    const query = new URLSearchParams({ from, to });
    const answer = await this.request("GET", this.realmPath(`/routes?${query}`));
    return this.check(RouteAnswerSchema, answer, "route");
  }

  /** Lists records; `query` carries the selector as the edge's query parameters. */
  async nodes(query: URLSearchParams): Promise<NodesAnswer> {
    const qs = query.size > 0 ? `?${query}` : "";
    return this.check(NodesAnswerSchema, await this.request("GET", this.realmPath(`/nodes${qs}`)), "nodes list");
  }
}

/** Reports an error the way every remote command does and returns its exit status. */
export function reportError(error: unknown, io: CliIo): number {
  if (error instanceof UsageError) {
    io.stderr(`hopway: ${error.message}\n`);
    return EXIT_USAGE;
  }
  if (error instanceof EdgeError) {
    const status = error.status !== undefined ? ` (HTTP ${error.status})` : "";
    const issues = error.issues ?? [];
    if (issues.length > 0) {
      // An import names every problem: one line each, so the user fixes them all in one pass.
      const n = issues.length;
      io.stderr(`hopway: ${error.code}${status}: ${n} problem${n === 1 ? "" : "s"}\n`);
      for (const d of issues) io.stderr(`  ${printable(d.path || "(top level)")}: ${printable(d.message)}\n`);
    } else {
      const at = error.path ? ` at ${printable(error.path)}` : "";
      io.stderr(`hopway: ${error.code}${status}${at}: ${printable(error.message)}\n`);
    }
    return exitCodeOf(error);
  }
  io.stderr(`hopway: internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  return EXIT_EDGE;
}

/** Left-aligned columns sized to their widest cell; the operator reads these, scripts use --json. */
export function formatTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return `${[line(header), ...rows.map(line)].join("\n")}\n`;
}

/** Terminal control characters in record fields must not reach the operator's terminal. */
export function printable(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping them is the point
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, "?");
}

/**
 * parseArgs in strict mode for one command: an unknown or malformed flag becomes
 * a UsageError (exit 2) of one line that names the flag and points at --help.
 * Node's own text for these errors runs to several sentences about positionals,
 * which buries the one word the user mistyped.
 */
export function parseCommandLine<O extends ParseArgsOptionsConfig>(
  command: string,
  argv: readonly string[],
  options: O,
  allowPositionals: boolean,
) {
  try {
    return parseArgs({ args: [...argv], options, allowPositionals, strict: true });
  } catch (error) {
    throw new UsageError(`${flagProblem(error)} (hopway ${command} --help lists the flags)`);
  }
}

/** One short sentence for a parseArgs error, naming the flag or argument it is about. */
export function flagProblem(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown } | null)?.code;
  const quoted = /'([^']*)'/.exec(message)?.[1];
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && quoted !== undefined) return `unknown flag ${printable(quoted)}`;
  if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL" && quoted !== undefined) {
    return `unexpected argument '${printable(quoted)}'`;
  }
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && quoted !== undefined) {
    const flag = quoted.split(" ")[0] ?? quoted;
    return message.includes("argument missing")
      ? `${printable(flag)} needs a value`
      : `${printable(flag)} does not take a value`;
  }
  return printable(message.split(". ")[0] ?? message);
}

/** The common flags of the remote commands, for node:util parseArgs. */
export const TARGET_OPTIONS = {
  edge: { type: "string" },
  realm: { type: "string" },
  token: { type: "string" },
  json: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
} as const;

export const TARGET_HELP = `  --edge URL      the edge (or HOPWAY_EDGE_URL)
  --realm NAME    the realm (or HOPWAY_REALM)
  --token TOKEN   a bearer token (or HOPWAY_TOKEN); a reader token reads; import needs the admin token
                  or an agent token of the records' namespaces
  --json          machine-readable output
`;
