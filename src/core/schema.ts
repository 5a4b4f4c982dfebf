// The wire format of Hopway, defined once. The edge, the agent and the CLI all
// validate with these schemas and infer their types from them; nothing else
// describes a record, a selector or a route.
//
// This module is part of the pure core: it must not import `cloudflare:*`,
// `hono` or `node:*`, so that workerd and Node.js run the same code.
import { z } from "zod";

/** Kubernetes object names: DNS-1123 subdomain, at most 253 characters. */
export const NAME_PATTERN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
export const NameSchema = z
  .string()
  .min(1)
  .max(253)
  .regex(NAME_PATTERN, "must be a DNS-1123 subdomain (lower-case letters, digits, '-' and '.')");

// Label syntax as Kubernetes validates it: an optional DNS-subdomain prefix and
// a name of at most 63 characters; values are at most 63 characters, may be empty.
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
export const LabelKeySchema = z
  .string()
  .max(317)
  .refine((key) => {
    const slash = key.lastIndexOf("/");
    const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
    const name = slash >= 0 ? key.slice(slash + 1) : key;
    if (name.length === 0 || name.length > 63 || !LABEL_NAME.test(name)) return false;
    return prefix === undefined || (prefix.length <= 253 && NAME_PATTERN.test(prefix));
  }, "must be a Kubernetes label key ([prefix/]name, name at most 63 characters)");
export const LabelValueSchema = z
  .string()
  .max(63)
  .refine((v) => v === "" || LABEL_NAME.test(v), "must be a Kubernetes label value");
/** Labels on one record or selector: a bound, so a declaration or selector stays small (Kubernetes objects carry far fewer). */
export const MAX_LABELS = 64;

// zod builds the parsed record by assignment, so an own `__proto__` key (which
// JSON.parse and YAML both produce) would vanish without a word; refuse it.
export const LabelsSchema = z.preprocess(
  (value, ctx) => {
    if (value !== null && typeof value === "object" && Object.hasOwn(value, "__proto__")) {
      ctx.addIssue({ code: "custom", path: ["__proto__"], message: "'__proto__' is not a label key", input: value });
    }
    return value;
  },
  z
    .record(LabelKeySchema, LabelValueSchema)
    .refine((labels) => Object.keys(labels).length <= MAX_LABELS, `at most ${MAX_LABELS} labels`),
);

/**
 * A map from namespace names to settings (the address policy's rules, the record limits): at most
 * 1,000, and no `__proto__` key, which parsing by assignment would drop (as for labels).
 */
export function namespaceMapSchema<T extends z.ZodType>(value: T) {
  return z.preprocess(
    (input, ctx) => {
      if (input !== null && typeof input === "object" && Object.hasOwn(input, "__proto__")) {
        ctx.addIssue({ code: "custom", path: ["__proto__"], message: "'__proto__' is not a namespace here", input });
      }
      return input;
    },
    z.record(TextFieldSchema, value).refine((r) => Object.keys(r).length <= 1000, "at most 1000 namespaces"),
  );
}

/**
 * `map[key] = value` as an own property even for `__proto__`, which assignment would take as the
 * prototype. (A null-prototype map would do too, but does not cross a Durable Object's RPC.)
 */
export function setOwn<V>(map: Record<string, V>, key: string, value: V): void {
  Object.defineProperty(map, key, { value, enumerable: true, writable: true, configurable: true });
}

/** `map[key]` only when the map itself has the key: a namespace called `constructor` is not Object's. */
export function ownEntry<V>(map: Readonly<Record<string, V>> | undefined, key: string): V | undefined {
  return map !== undefined && Object.hasOwn(map, key) ? map[key] : undefined;
}

/**
 * Free-text identifiers (namespace, kind, host name, ...): any printable text.
 * Control characters are refused because these strings end up in log lines,
 * metrics labels and headers on the agent, where a NUL or a newline splits a
 * line or forges another one.
 */
export const TextFieldSchema = z
  .string()
  .min(1)
  .max(253)
  .refine(
    (text) => ![...text].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f),
    "must not contain control characters (NUL, newline, tab, ...)",
  );

export const HostSchema = z.strictObject({
  hostname: TextFieldSchema.optional(),
  pid: z.number().int().nonnegative().optional(),
});

export const MetadataSchema = z.strictObject({
  namespace_name: TextFieldSchema.optional(),
  api_version: TextFieldSchema.optional(),
  kind: TextFieldSchema.optional(),
  group: TextFieldSchema.optional(),
  labels: LabelsSchema.optional(),
});

/** A selector matches a peer when every field it gives is equal in the peer (labels: subset). */
export const SelectorSchema = z.strictObject({
  name: NameSchema.optional(),
  host: HostSchema.optional(),
  metadata: MetadataSchema.optional(),
});

export const ADDRESS_SCHEMES = ["ipv4", "ipv6", "dns", "unix"] as const;
export type AddressScheme = (typeof ADDRESS_SCHEMES)[number];

export interface ParsedAddress {
  scheme: AddressScheme;
  /** IPv4 dotted quad, bare IPv6 (no brackets), DNS name, or "" for unix. */
  host: string;
  /** TCP port; 0 for unix. */
  port: number;
  /** Socket path for unix, "" otherwise. */
  path: string;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const IPV6 = /^[0-9A-Fa-f:.]+$/;
const DNS_HOST = /^(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*\.?$/;

/** Parses `scheme://host:port` (or `unix:///path`); returns a reason string when it is not one. */
export function parseAddress(text: string): ParsedAddress | string {
  const m = /^([a-z0-9]+):\/\/(.*)$/.exec(text);
  if (!m) return "must look like scheme://host:port";
  const scheme = m[1] as string;
  const rest = m[2] as string;
  if (!(ADDRESS_SCHEMES as readonly string[]).includes(scheme)) {
    return `unknown scheme '${scheme}' (expected ipv4, ipv6, dns or unix)`;
  }
  if (scheme === "unix") {
    if (!rest.startsWith("/") || rest.length < 2 || rest.length > 107) {
      return "unix address must be an absolute socket path of at most 107 characters";
    }
    return { scheme: "unix", host: "", port: 0, path: rest };
  }
  let host: string;
  let portText: string;
  if (scheme === "ipv6") {
    const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(rest);
    if (!v6) return "ipv6 address must be ipv6://[address]:port";
    host = v6[1] as string;
    portText = v6[2] as string;
    if (!IPV6.test(host) || !host.includes(":")) return `'${host}' is not an IPv6 address`;
  } else {
    const hp = /^([^:/]+):(\d+)$/.exec(rest);
    if (!hp) return `${scheme} address must be ${scheme}://host:port`;
    host = hp[1] as string;
    portText = hp[2] as string;
    if (scheme === "ipv4" && !IPV4.test(host)) return `'${host}' is not an IPv4 address`;
    if (scheme === "dns" && !DNS_HOST.test(host)) return `'${host}' is not a DNS name`;
  }
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return "port must be 1-65535";
  return { scheme: scheme as AddressScheme, host, port, path: "" };
}

export const AddressSchema = z.string().superRefine((text, ctx) => {
  const parsed = parseAddress(text);
  if (typeof parsed === "string") ctx.addIssue({ code: "custom", message: parsed });
});

export const GatewaySchema = z.strictObject({
  priority: z.number().int().min(0).max(1_000_000),
  address: z.union([AddressSchema, z.array(AddressSchema).min(1).max(16)]),
  match: SelectorSchema.optional(),
});

// The record table (docs/edge-api.md#records) gives nodes and clients the same fields.
const EndpointFields = {
  name: NameSchema,
  version: z.number().int().nonnegative().optional(),
  hash_code: z.union([z.string().max(256), z.number().int()]).optional(),
  custom_data: z.string().max(65536).optional(),
  host: HostSchema.optional(),
  metadata: MetadataSchema.optional(),
  advertise_relay: z.union([SelectorSchema, z.array(SelectorSchema).max(64)]).optional(),
  gateway: z.array(GatewaySchema).max(64).optional(),
};

export const NodeRecordSchema = z.strictObject({
  ...EndpointFields,
  type: z.literal("node"),
});

/**
 * A client never dials and is never dialed: it is attached to the relay its
 * advertise_relay names. It may carry gateways like a node (one record shape
 * for both), but they play no part in routing and no relay dials them.
 */
export const ClientRecordSchema = z.strictObject({
  ...EndpointFields,
  type: z.literal("client"),
});

/**
 * A group's metadata: only the namespace its members must be in. Given, a
 * listed member counts only while its record is in that namespace, so a
 * tenant of another namespace cannot join the group by registering a listed
 * name that is free (docs/contract/records.md §1.4).
 */
export const GroupMetadataSchema = z.strictObject({
  namespace_name: TextFieldSchema,
});

export const GroupRecordSchema = z
  .strictObject({
    name: NameSchema,
    type: z.literal("group"),
    version: z.number().int().nonnegative().optional(),
    custom_data: z.string().max(65536).optional(),
    metadata: GroupMetadataSchema.optional(),
    /**
     * Without metadata.namespace_name, members of every namespace count. The
     * edge refuses to write such a group unless this says so explicitly.
     */
    any_namespace: z.boolean().optional(),
    node_list: z.array(z.strictObject({ node_name: NameSchema })).max(10_000),
  })
  .superRefine((group, ctx) => {
    if (group.any_namespace === true && group.metadata !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["any_namespace"],
        message: "a group with metadata.namespace_name counts only members of that namespace; drop any_namespace",
        input: group.any_namespace,
      });
    }
  });

/** Any record. `type` defaults to `node` on input; parsed records always carry it. */
export const RecordSchema = z.preprocess(
  (value) =>
    value !== null && typeof value === "object" && !Array.isArray(value) && !("type" in value)
      ? { ...value, type: "node" }
      : value,
  z.discriminatedUnion("type", [NodeRecordSchema, ClientRecordSchema, GroupRecordSchema]),
);

export type Selector = z.infer<typeof SelectorSchema>;
export type Gateway = z.infer<typeof GatewaySchema>;
export type NodeRecord = z.infer<typeof NodeRecordSchema>;
export type ClientRecord = z.infer<typeof ClientRecordSchema>;
export type GroupRecord = z.infer<typeof GroupRecordSchema>;
export type HopwayRecord = z.infer<typeof RecordSchema>;
/** Input form: `type` may be omitted. */
export type HopwayRecordInput = z.input<typeof RecordSchema>;

// ---- Routes -----------------------------------------------------------------

export const HopSchema = z.object({
  node: NameSchema,
  /** The address chosen; null for the hop to or from a client (the client's own connection). */
  address: z.string().nullable(),
  /** Priority of the gateway used; 0 for a client hop. */
  priority: z.number().int(),
  /** Addresses to try, in order, if `address` fails: the gateway's fallbacks. */
  alternatives: z.array(z.string()),
});

export const NO_ROUTE_REASONS = [
  "no_matching_gateway",
  "no_relay_chain",
  "hop_limit",
  "client_not_attached",
  "group_endpoint",
  "same_node",
  "relay_limit",
  "table_limit",
] as const;
export const NoRouteReasonSchema = z.enum(NO_ROUTE_REASONS);
export type NoRouteReason = z.infer<typeof NoRouteReasonSchema>;

export const RouteSchema = z.object({
  from: NameSchema,
  to: NameSchema,
  hops: z.array(HopSchema).nullable(),
  reason: NoRouteReasonSchema.optional(),
  /** Human-readable explanation when there is no route. */
  detail: z.string().optional(),
});

export type Hop = z.infer<typeof HopSchema>;
export type Route = z.infer<typeof RouteSchema>;

/** Maximum hops in a route (docs/contract/routing.md §3.4). */
export const MAX_HOPS = 8;

// ---- Autoscaling reports (docs/contract/autoscaling.md §3.1) -----------------

/** What a pod's agent reports in its heartbeat: the two scaling signals of one StatefulSet pod. */
export const ScalingReportSchema = z.strictObject({
  /** The workload (StatefulSet) the pod belongs to. */
  workload: NameSchema,
  /** The pod's StatefulSet ordinal. */
  ordinal: z.number().int().min(0).max(100_000),
  /** Load factor: 1.0 = at capacity. */
  load: z.number().min(0).max(1_000),
  /** Whether the pod still holds state that must move before it may go. */
  holds_state: z.boolean(),
  /** How much state it holds (keys, sessions): feeds the pod deletion cost. */
  state_items: z.number().int().nonnegative().optional(),
  /**
   * The HPA's settings as the pod's agent is configured (load target,
   * minReplicas, maxReplicas), so that the coordinator drains only pods the
   * HPA will actually remove. Optional: without them the defaults apply.
   */
  target_load: z.number().positive().max(10).optional(),
  min_replicas: z.number().int().min(1).max(100_000).optional(),
  max_replicas: z.number().int().min(1).max(100_000).optional(),
});
export type ScalingReport = z.infer<typeof ScalingReportSchema>;

// ---- Relay link status (docs/links.md) ---------------------------------------

/** One of a relay's links to a neighbour relay, as the relay sees it when it heartbeats. */
export const LinkStateSchema = z.strictObject({
  /** The neighbour relay's record name (its certified identity). */
  peer: NameSchema,
  /** At least one link to the peer is connected and authenticated. */
  up: z.boolean(),
  /** Tunnels (streams) open over the links to that peer. */
  streams: z.number().int().nonnegative().max(10_000_000),
});
export type LinkState = z.infer<typeof LinkStateSchema>;
/** Bounded: a relay reports its neighbours, and a relay has few. */
export const LinkReportSchema = z.array(LinkStateSchema).max(256);
