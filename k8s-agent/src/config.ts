// The agent's configuration: one YAML file (`--config FILE`), `${VAR}`
// references expanded from the environment, then a fixed set of environment
// variables applied on top, then validated as a whole by zod so every problem
// is reported with its field path.
//
// Environment overrides (env wins over the file):
//   HOPWAY_EDGE_URL        edge.url
//   HOPWAY_REALM           edge.realm
//   HOPWAY_TOKEN           edge.token
//   HOPWAY_TOKEN_FILE      edge.token_file (a mounted Secret)
//   HOPWAY_EDGE_SYNC       edge.sync (route-table | records)
//   HOPWAY_NODE            node (the record that is "this relay")
//   HOPWAY_TLS_SOURCE      relay.tls.source (edge | files; docs/identity.md)
//   HOPWAY_TLS_DIR         relay.tls.dir (files: tls.crt, tls.key, ca.crt)
//   HOPWAY_RELAY_LISTEN    relay.listen (comma-separated)
//   HOPWAY_CLIENT_CIDRS    relay.client_cidrs (comma-separated)
//   HOPWAY_ADMIN_LISTEN    admin.listen
//   HOPWAY_LOCAL_API_TOKEN      admin.local_api_token (bearer token for the local API's writes)
//   HOPWAY_LOCAL_API_TOKEN_FILE admin.local_api_token_file (a mounted Secret)
//   HOPWAY_DATA_DIR        data_dir
//   HOPWAY_MAX_CONNECTIONS relay.limits.max_connections
//   HOPWAY_MAX_CONNECTIONS_PER_SOURCE relay.limits.max_connections_per_source
//   HOPWAY_MAX_CONNECTIONS_PER_NAMESPACE relay.limits.max_connections_per_namespace
//   HOPWAY_MAX_LINKS_PER_NAMESPACE relay.limits.max_links_per_namespace
//   HOPWAY_NAMESPACE_STREAMS_PER_SECOND relay.limits.namespace_streams_per_second
//   HOPWAY_LINK_HANDSHAKES_PER_SOURCE_PER_SECOND relay.limits.link_handshakes_per_source_per_second
//   HOPWAY_MAX_BUFFERED_BYTES relay.limits.max_buffered_bytes
//   HOPWAY_MAX_HANDSHAKES  relay.limits.max_handshakes
//   HOPWAY_LINK_PROTOCOL   relay.links.protocol (mux | h2)
//   HOPWAY_NATIVE_SPLICE   relay.native_splice (true | false, 1 | 0)
//   HOPWAY_DRAIN_SECONDS   shutdown.drain_seconds
//   HOPWAY_LOG_LEVEL       log_level
//   POD_NAME, POD_NAMESPACE  pod.name, pod.namespace (Downward API); the ordinal is POD_NAME's -N suffix
//   POD_UID                pod.uid (Downward API metadata.uid): the instance id of this agent's leases
import { readFileSync } from "node:fs";
import { isIPv4, isIPv6 } from "node:net";
import { describeIssues, type FieldProblem } from "@hopway/core/errors";
import { ListenerSchema } from "@hopway/core/listener";
import { NameSchema, RecordSchema } from "@hopway/core/schema";
import { InstanceIdSchema } from "@hopway/core/wire";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { ScalingConfigSchema } from "./scaling/config.ts";

/** `host:port`, `[v6]:port` or `unix:/path`. */
const ListenSchema = z.string().superRefine((v, ctx) => {
  if (v.startsWith("unix:")) {
    if (!v.slice(5).startsWith("/"))
      ctx.addIssue({ code: "custom", message: "unix listen address must be unix:/absolute/path" });
    return;
  }
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(v);
  const port = Number(m?.[3]);
  if (!m || port > 65535) {
    ctx.addIssue({ code: "custom", message: "must be host:port, [ipv6]:port or unix:/path" });
    return;
  }
  if (m[1] !== undefined && !isIPv6(m[1]))
    ctx.addIssue({ code: "custom", message: `'${m[1]}' is not an IPv6 address` });
});

const CidrSchema = z.string().refine((v) => {
  const [addr, bits] = v.split("/");
  if (addr === undefined || !(isIPv4(addr) || isIPv6(addr))) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return Number.isInteger(n) && n >= 0 && n <= (isIPv4(addr) ? 32 : 128);
}, "must be a CIDR such as 10.0.0.0/8 or ::1/128");

/** What replaced the realm-wide hop key; a config that still sets it is refused with this. */
const HOP_KEY_REMOVED =
  "removed: relays authenticate each other with mTLS links now; configure relay.tls instead (docs/links.md)";

/** A link receive window: at least HTTP/2's initial 65,535, at most what a WINDOW increment can carry. */
const WindowBytesSchema = z
  .number()
  .int()
  .min(65_535)
  .max(2 ** 31 - 1);

/** Relay links (docs/links.md): defaults sized for a 100 ms × 1 Gbit/s path. */
const LinksSchema = z
  .strictObject({
    /** Framing this relay asks for when it dials: hopway-mux/1 (falls back to h2) or h2 only. */
    protocol: z.enum(["mux", "h2"]).default("mux"),
    connection_window_bytes: WindowBytesSchema.default(16 * 1024 * 1024),
    stream_window_bytes: WindowBytesSchema.default(2 * 1024 * 1024),
    /**
     * The stream window on links with a tenant's relay (an unshared namespace, docs/links.md): what
     * one of its stalled tunnels may make this relay hold. hopway-mux/1 streams grow from it while
     * their reader keeps up.
     */
    tenant_stream_window_bytes: WindowBytesSchema.default(256 * 1024),
    /**
     * hopway-mux/1: how far one stream's receive window may grow while its reader keeps up, and how
     * much all of them may grow together (docs/links.md, "Flow control and memory"). 0, or a maximum
     * at or below stream_window_bytes, keeps windows at stream_window_bytes.
     */
    max_stream_window_bytes: WindowBytesSchema.default(16 * 1024 * 1024),
    window_growth_budget_bytes: z
      .number()
      .int()
      .min(0)
      .max(2 ** 40)
      .default(256 * 1024 * 1024),
    max_concurrent_streams: z.number().int().min(1).max(100_000).default(1000),
    /** Links with one neighbour, each way: dialled at most, accepted at most (docs/links.md). */
    max_links_per_peer: z.number().int().min(1).max(1000).default(16),
    max_session_memory_mb: z.number().int().min(1).max(4096).default(64),
    ping_interval_ms: z.number().int().min(100).max(3_600_000).default(15_000),
    ping_timeout_ms: z.number().int().min(100).max(600_000).default(10_000),
    idle_timeout_ms: z.number().int().min(0).max(86_400_000).default(300_000),
    handshake_timeout_ms: z.number().int().min(50).max(120_000).default(5_000),
    redial_initial_ms: z.number().int().min(1).max(60_000).default(200),
    redial_max_ms: z.number().int().min(1).max(600_000).default(15_000),
  })
  .prefault({});

const LimitsSchema = z
  .strictObject({
    /** Authenticated connections: verified relay hops and clients (by client_cidrs or token). */
    max_connections: z.coerce.number().int().min(1).max(1_000_000).default(10_000),
    /** Per client address (handshakes and client tunnels; verified relay hops exempt); 0 = off. */
    max_connections_per_source: z.coerce.number().int().min(0).max(1_000_000).default(1_024),
    /**
     * Of max_connections, what the relays of one tenant (an unshared namespace, docs/relay.md) may
     * hold together with their links and the tunnels on them; 0 = off. Unset: a quarter of
     * max_connections.
     */
    max_connections_per_namespace: z.coerce.number().int().min(0).max(1_000_000).optional(),
    /**
     * Of that share, how many links a tenant's relays may hold: a link costs the relay about
     * 100 KB of memory, a stream on it a few. 0 = off.
     */
    max_links_per_namespace: z.coerce.number().int().min(0).max(1_000_000).default(128),
    /**
     * How fast the relays of one tenant may open tunnels (link streams) here, per second; 0 = off.
     * Fractions are allowed (0.5: one every 2 s).
     */
    namespace_streams_per_second: z.coerce.number().min(0).max(1_000_000).default(1_000),
    /** How many of them at once after a quiet spell (the bucket's depth). */
    namespace_stream_burst: z.coerce.number().int().min(1).max(1_000_000).default(2_000),
    /**
     * TLS handshakes (relay links) one source address may start per second; past it the
     * connection is closed before the handshake. 0 = off. Fractions are allowed.
     */
    link_handshakes_per_source_per_second: z.coerce.number().min(0).max(1_000_000).default(20),
    /** How many of them at once after a quiet spell. */
    link_handshake_burst_per_source: z.coerce.number().int().min(1).max(1_000_000).default(100),
    /**
     * Handshakes from sources outside client_cidrs before their credentials are checked: a
     * pool of their own, so unauthenticated peers never take authenticated capacity. When
     * full, the oldest handshake is dropped.
     */
    max_handshakes: z.coerce.number().int().min(1).max(1_000_000).default(256),
    /** Unauthenticated handshakes one address may hold; past it 503 at once. 0 = off. */
    max_handshakes_per_source: z.coerce.number().int().min(0).max(1_000_000).default(64),
    /**
     * Time from accept an unauthenticated peer gets for its first byte and its CONNECT head (408
     * after) or a link's TLS handshake; at most header_timeout_ms.
     */
    handshake_timeout_ms: z.number().int().min(50).max(120_000).default(3_000),
    connect_timeout_ms: z.number().int().min(50).max(120_000).default(5_000),
    path_timeout_ms: z.number().int().min(50).max(300_000).default(15_000),
    header_timeout_ms: z.number().int().min(50).max(120_000).default(10_000),
    idle_timeout_ms: z.number().int().min(0).max(86_400_000).default(900_000),
    buffer_bytes: z
      .number()
      .int()
      .min(4096)
      .max(64 * 1024 * 1024)
      .default(256 * 1024),
    /**
     * What every tunnel and link may hold in memory together (received and not yet sent on);
     * above it the largest holders are reset, a tenant's tunnels counted together
     * (docs/security/relay.md, "What tunnels hold together is bounded"). 0 = off.
     */
    max_buffered_bytes: z.coerce
      .number()
      .int()
      .min(0)
      .max(64 * 1024 * 1024 * 1024)
      .default(64 * 1024 * 1024),
  })
  .prefault({});

/**
 * Where the relay's link identity comes from (docs/identity.md). "edge": a key
 * kept in data_dir and certificates the realm's edge issues. "files": an
 * external PKI (cert-manager) writes tls.crt, tls.key and ca.crt into `dir`.
 */
const RelayTlsSchema = z
  .strictObject({
    source: z.enum(["edge", "files"]).default("edge"),
    dir: z.string().min(1).optional(),
    /** files: how often the directory is read for a renewed certificate. */
    poll_seconds: z.number().min(0.1).max(300).default(5),
  })
  .prefault({})
  .superRefine((t, ctx) => {
    if (t.source === "files" && t.dir === undefined) {
      ctx.addIssue({ code: "custom", path: ["dir"], message: "relay.tls.dir is required when source is files" });
    }
  });

export const AgentConfigSchema = z
  .strictObject({
    edge: z.strictObject({
      url: z.url({ protocol: /^https?$/ }),
      realm: NameSchema,
      token: z.string().min(1).optional(),
      token_file: z.string().min(1).optional(),
      /** Lease of the registered records; renewed about every third of it. */
      lease_seconds: z.number().int().min(5).max(86_400).default(30),
      /** Long-poll length for the route table (the edge caps it at 60). */
      wait_seconds: z.number().int().min(1).max(60).default(30),
      /**
       * How the route table is followed. "route-table": download this relay's whole table
       * (simple; each change costs every agent a full table, ~5 MB at 10,000 records).
       * "records": replicate the realm's records by delta and compute the table locally
       * with the same core (a change costs a few records; for realms past a few thousand).
       */
      sync: z.enum(["route-table", "records"]).default("route-table"),
      /**
       * Replace records of the same name that exist at the edge without a lease (imported, or
       * written by an admin). Off: the agent refuses them, as it deletes what it registers on shutdown.
       */
      takeover: z.boolean().default(false),
    }),
    /** The record that is "this relay": whose route table the relay follows. Default: pod.name. */
    node: NameSchema.optional(),
    /** Records this agent registers with leases: its relay record, the applications in its pod. */
    records: z.array(RecordSchema).max(64).default([]),
    relay: z
      .strictObject({
        listen: z.array(ListenSchema).min(1).max(16).default(["0.0.0.0:1234"]),
        /** Kept only to refuse old configs with a message saying what replaced them. */
        hop_key: z.unknown().optional(),
        hop_key_file: z.unknown().optional(),
        max_clock_skew_seconds: z.unknown().optional(),
        client_cidrs: z.array(CidrSchema).max(256).default(["127.0.0.0/8", "::1/128"]),
        client_tokens: z.array(z.string().min(16)).max(64).default([]),
        /** This relay's link identity (docs/identity.md); without one it carries no relay-to-relay hops. */
        tls: RelayTlsSchema,
        links: LinksSchema,
        limits: LimitsSchema,
        /**
         * Move the bytes of socket-to-socket tunnels (listeners, and CONNECTs to a target this
         * relay dials itself) on the native splice's thread where the image has it (docs/relay.md,
         * "Native splice"). False keeps them on the JavaScript path.
         */
        native_splice: z.boolean().default(true),
        /**
         * Whether a gateway's DNS name may resolve to a loopback address (docs/security/relay.md,
         * "A gateway name never leads the relay to metadata or loopback services"). Off, a name
         * any namespace published cannot take the relay to a service on
         * the pod's loopback; names resolving to link-local (cloud metadata) or undialable
         * addresses are refused either way.
         */
        dial_names_to_loopback: z.boolean().default(false),
      })
      .prefault({}),
    /**
     * Local addresses whose connections are carried to one target each, for clients that do not
     * speak CONNECT (docs/listeners.md). The realm can declare more at the edge.
     */
    listeners: z
      .array(ListenerSchema)
      .max(64)
      .default([])
      .superRefine((list, ctx) => {
        const seen = new Set<string>();
        list.forEach((l, i) => {
          if (seen.has(l.listen))
            ctx.addIssue({ code: "custom", path: [i, "listen"], message: "listen address given twice" });
          seen.add(l.listen);
        });
      }),
    admin: z
      .strictObject({
        listen: ListenSchema.default("0.0.0.0:9090"),
        /**
         * Bearer token the local API's writes (`PUT /v1/local/report`) require. A loopback
         * source alone is not enough: anything that makes the pod open a loopback connection
         * (a tunnel, a redirect) would otherwise speak for the application. Without a token
         * the writes are refused.
         */
        local_api_token: z.string().min(16, "local API token must be at least 16 characters").optional(),
        local_api_token_file: z.string().min(1).optional(),
      })
      .prefault({}),
    /**
     * Key-affine CONNECTs and /v1/local/owners for groups this agent does not hold cost one
     * edge request each; these bound that (k8s-agent/src/ownership/edge-limiter.ts).
     */
    ownership: z
      .strictObject({
        /** First fetches of a group per second towards the edge; past it 503 over_capacity at once. */
        edge_rate_per_second: z.number().positive().max(10_000).default(10),
        edge_burst: z.number().int().min(1).max(100_000).default(20),
        /** How long "no such group" is remembered; a group created meanwhile is seen after at most this. */
        negative_ttl_ms: z.number().int().min(0).max(3_600_000).default(10_000),
        /** How long an edge failure for a group is remembered. */
        error_ttl_ms: z.number().int().min(0).max(600_000).default(1_000),
      })
      .prefault({}),
    data_dir: z.string().min(1).default("/var/lib/hopway"),
    shutdown: z
      .strictObject({
        /** Time open tunnels get to finish after SIGTERM; keep it below terminationGracePeriodSeconds. */
        drain_seconds: z.coerce.number().min(0).max(3600).default(25),
      })
      .prefault({}),
    pod: z
      .strictObject({
        name: z.string().optional(),
        namespace: z.string().optional(),
        ordinal: z.number().int().min(0).optional(),
        /**
         * Which agent holds this agent's leases at the edge (`Hopway-Instance`, docs/agent.md):
         * the pod's UID, so that a restarted container takes its own leases back at once. Without
         * it, each process makes one.
         */
        uid: InstanceIdSchema.optional(),
      })
      .prefault({}),
    log_level: z.enum(["debug", "info", "warn", "error"]).default("info"),
    scaling: ScalingConfigSchema,
  })
  .superRefine((c, ctx) => {
    if (c.edge.token === undefined && c.edge.token_file === undefined) {
      ctx.addIssue({ code: "custom", path: ["edge", "token"], message: "edge.token or edge.token_file is required" });
    }
    if (c.node === undefined && !c.pod.name) {
      ctx.addIssue({ code: "custom", path: ["node"], message: "node is required (or POD_NAME to default it)" });
    }
  });

export type AgentConfigInput = z.input<typeof AgentConfigSchema>;
export type ParsedAgentConfig = z.infer<typeof AgentConfigSchema>;

/** The validated configuration with secrets read and defaults resolved. */
export interface AgentConfig extends ParsedAgentConfig {
  node: string;
  edgeToken: string;
  /** Bearer token for the local API's writes; undefined = writes refused. */
  localApiToken: string | undefined;
}

export class ConfigError extends Error {
  constructor(readonly problems: FieldProblem[]) {
    super(problems.map((p) => `${p.path || "(config)"}: ${p.message}`).join("\n"));
    this.name = "ConfigError";
  }
}

type Env = Readonly<Record<string, string | undefined>>;

/** Replaces `${NAME}` in every string of the document; a missing variable is an error naming the field. */
function expandEnv(value: unknown, env: Env, path: PropertyKey[], problems: FieldProblem[]): unknown {
  if (typeof value === "string") {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name: string) => {
      const v = env[name];
      if (v === undefined) {
        problems.push({ path: formatPathLocal(path), message: `environment variable ${name} is not set` });
        return "";
      }
      return v;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => expandEnv(v, env, [...path, i], problems));
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = expandEnv(v, env, [...path, k], problems);
    return out;
  }
  return value;
}

function formatPathLocal(path: PropertyKey[]): string {
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join("");
}

function setIn(obj: Record<string, unknown>, path: string[], value: unknown): void {
  let cur = obj;
  for (const key of path.slice(0, -1)) {
    const next = cur[key];
    if (next === null || typeof next !== "object" || Array.isArray(next)) cur[key] = {};
    cur = cur[key] as Record<string, unknown>;
  }
  cur[path[path.length - 1] as string] = value;
}

const list = (v: string) =>
  v
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");

/** A yes/no variable; anything else is passed on for the schema to refuse, naming the field. */
function flag(v: string): unknown {
  const s = v.trim().toLowerCase();
  if (s === "1" || s === "true") return true;
  if (s === "0" || s === "false") return false;
  return v;
}

/** Environment variable → config path (and how to read the value). Documented at the top of this file. */
export const ENV_OVERRIDES: ReadonlyArray<[string, string[], (v: string) => unknown]> = [
  ["HOPWAY_EDGE_URL", ["edge", "url"], String],
  ["HOPWAY_REALM", ["edge", "realm"], String],
  ["HOPWAY_TOKEN", ["edge", "token"], String],
  ["HOPWAY_TOKEN_FILE", ["edge", "token_file"], String],
  ["HOPWAY_EDGE_SYNC", ["edge", "sync"], String],
  ["HOPWAY_NODE", ["node"], String],
  // A directory alone means files (cert-manager's layout); HOPWAY_TLS_SOURCE, applied after, wins.
  ["HOPWAY_TLS_DIR", ["relay", "tls", "source"], () => "files"],
  ["HOPWAY_TLS_DIR", ["relay", "tls", "dir"], String],
  ["HOPWAY_TLS_SOURCE", ["relay", "tls", "source"], String],
  ["HOPWAY_RELAY_LISTEN", ["relay", "listen"], list],
  ["HOPWAY_CLIENT_CIDRS", ["relay", "client_cidrs"], list],
  ["HOPWAY_ADMIN_LISTEN", ["admin", "listen"], String],
  ["HOPWAY_LOCAL_API_TOKEN", ["admin", "local_api_token"], String],
  ["HOPWAY_LOCAL_API_TOKEN_FILE", ["admin", "local_api_token_file"], String],
  ["HOPWAY_DATA_DIR", ["data_dir"], String],
  ["HOPWAY_MAX_CONNECTIONS", ["relay", "limits", "max_connections"], String],
  ["HOPWAY_MAX_CONNECTIONS_PER_SOURCE", ["relay", "limits", "max_connections_per_source"], String],
  ["HOPWAY_MAX_CONNECTIONS_PER_NAMESPACE", ["relay", "limits", "max_connections_per_namespace"], String],
  ["HOPWAY_MAX_LINKS_PER_NAMESPACE", ["relay", "limits", "max_links_per_namespace"], String],
  ["HOPWAY_NAMESPACE_STREAMS_PER_SECOND", ["relay", "limits", "namespace_streams_per_second"], String],
  [
    "HOPWAY_LINK_HANDSHAKES_PER_SOURCE_PER_SECOND",
    ["relay", "limits", "link_handshakes_per_source_per_second"],
    String,
  ],
  ["HOPWAY_MAX_BUFFERED_BYTES", ["relay", "limits", "max_buffered_bytes"], String],
  ["HOPWAY_MAX_HANDSHAKES", ["relay", "limits", "max_handshakes"], String],
  ["HOPWAY_LINK_PROTOCOL", ["relay", "links", "protocol"], String],
  ["HOPWAY_NATIVE_SPLICE", ["relay", "native_splice"], flag],
  ["HOPWAY_DRAIN_SECONDS", ["shutdown", "drain_seconds"], String],
  ["HOPWAY_LOG_LEVEL", ["log_level"], String],
  ["POD_NAME", ["pod", "name"], String],
  ["POD_NAMESPACE", ["pod", "namespace"], String],
  ["POD_UID", ["pod", "uid"], String],
];

function readSecret(file: string, field: string, problems: FieldProblem[]): string | undefined {
  try {
    return readFileSync(file, "utf8").trim();
  } catch (err) {
    problems.push({
      path: field,
      message: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    });
    return undefined;
  }
}

/** Builds the configuration from a YAML text and an environment. Throws ConfigError listing every problem. */
export function parseConfig(yamlText: string, env: Env): AgentConfig {
  const problems: FieldProblem[] = [];
  let doc: unknown;
  try {
    doc = parseYaml(yamlText) ?? {};
  } catch (err) {
    throw new ConfigError([{ path: "", message: `not valid YAML: ${(err as Error).message}` }]);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    throw new ConfigError([{ path: "", message: "the config file must be a YAML mapping" }]);
  }
  const raw = expandEnv(doc, env, [], problems) as Record<string, unknown>;
  // Removed settings are named whatever else is wrong in the file (the schema's own checks stop
  // at its first level of errors).
  const relay = raw.relay;
  if (relay !== null && typeof relay === "object" && !Array.isArray(relay)) {
    for (const field of ["hop_key", "hop_key_file", "max_clock_skew_seconds"]) {
      if (Object.hasOwn(relay, field)) problems.push({ path: `relay.${field}`, message: HOP_KEY_REMOVED });
    }
  }
  for (const name of ["HOPWAY_HOP_KEY", "HOPWAY_HOP_KEY_FILE"]) {
    if (env[name] !== undefined && env[name] !== "") problems.push({ path: name, message: HOP_KEY_REMOVED });
  }
  for (const [name, path, read] of ENV_OVERRIDES) {
    const v = env[name];
    if (v !== undefined && v !== "") setIn(raw, path, read(v));
  }
  const parsed = AgentConfigSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError([...problems, ...describeIssues(parsed.error)]);
  const c = parsed.data;
  const edgeToken =
    c.edge.token ?? (c.edge.token_file ? readSecret(c.edge.token_file, "edge.token_file", problems) : undefined);
  let localApiToken = c.admin.local_api_token;
  if (localApiToken === undefined && c.admin.local_api_token_file) {
    localApiToken = readSecret(c.admin.local_api_token_file, "admin.local_api_token_file", problems);
    if (localApiToken !== undefined && localApiToken.length < 16) {
      problems.push({ path: "admin.local_api_token_file", message: "local API token must be at least 16 characters" });
    }
  }
  const podName = c.pod.name || undefined;
  const ordinalMatch = podName ? /-(\d+)$/.exec(podName) : null;
  const ordinal = c.pod.ordinal ?? (ordinalMatch ? Number(ordinalMatch[1]) : undefined);
  const node = c.node ?? podName;
  if (node !== undefined && c.node === undefined && !NameSchema.safeParse(node).success) {
    problems.push({ path: "pod.name", message: "POD_NAME is not a valid node name" });
  }
  if (problems.length > 0 || edgeToken === undefined || node === undefined) throw new ConfigError(problems);
  return {
    ...c,
    node,
    pod: { ...c.pod, ...(ordinal !== undefined ? { ordinal } : {}) },
    edgeToken,
    localApiToken,
  };
}

export function loadConfig(file: string, env: Env = process.env): AgentConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError([
      { path: "", message: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` },
    ]);
  }
  return parseConfig(text, env);
}
