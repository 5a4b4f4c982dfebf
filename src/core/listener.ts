// Listeners (docs/listeners.md): a local address an agent binds whose every
// accepted connection is carried to one target through the mesh, exactly as a
// CONNECT to that target would be. The same shape comes from an agent's config
// file and from the realm's declarations at the edge, so both are defined here.
import { z } from "zod";
import { type HopwayRecord, MetadataSchema, NAME_PATTERN, NameSchema, SelectorSchema } from "./schema.ts";
import { matchesSelector } from "./selector.ts";

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export interface ListenAddress {
  /** IPv4 dotted quad or bare IPv6 (no brackets). */
  host: string;
  port: number;
}

/** `a.b.c.d:port` or `[v6]:port` (port 0: any free port); a reason string when it is not. */
export function parseListenAddress(text: string): ListenAddress | string {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(text);
  if (!m) return "must be an IPv4 address and port (0.0.0.0:6379) or [IPv6]:port";
  const port = Number(m[3]);
  if (port > 65535) return "port must be 0-65535";
  if (m[2] !== undefined && !IPV4.test(m[2])) return `'${m[2]}' is not an IPv4 address`;
  if (m[1] !== undefined && !m[1].includes(":")) return `'${m[1]}' is not an IPv6 address`;
  return { host: (m[1] ?? m[2]) as string, port };
}

export interface ListenerTarget {
  /** As a CONNECT would name it: `redis-eu:6379`, or `redis-eu` for the node's own gateway port. */
  authority: string;
  node: string;
  /** 0 = the target's own gateway port. */
  port: number;
}

/** `<record-name>[:port]`: a node, or a group with a key; never a host or an address. */
export function parseListenerTarget(text: string): ListenerTarget | string {
  const m = /^([^:\s]+)(?::(\d{1,5}))?$/.exec(text);
  if (!m) return "must be <record-name>:<port> (or <record-name> for its own gateway port)";
  const node = m[1] as string;
  // A dotted quad is a valid DNS-1123 name, but whoever writes one means an address, which a
  // listener never dials: say so now rather than refuse every connection later.
  if (node.length > 253 || !NAME_PATTERN.test(node) || IPV4.test(node)) {
    return "must name a record (DNS-1123 name), not a host or address";
  }
  const port = m[2] === undefined ? 0 : Number(m[2]);
  if (port > 65535) return "port must be 0-65535";
  return { authority: text, node, port };
}

const ListenAddressSchema = z.string().superRefine((v, ctx) => {
  const r = parseListenAddress(v);
  if (typeof r === "string") ctx.addIssue({ code: "custom", message: r });
});
const TargetSchema = z.string().superRefine((v, ctx) => {
  const r = parseListenerTarget(v);
  if (typeof r === "string") ctx.addIssue({ code: "custom", message: r });
});

/**
 * For a group target, which member owns the connection (docs/stateful.md): a fixed key, or the
 * connecting client's address, so each client sticks to one member as long as membership holds.
 */
export const ListenerKeySchema = z.union([
  z.strictObject({ value: z.string().min(1).max(1024) }),
  z.strictObject({ from: z.literal("client_address") }),
]);
export type ListenerKey = z.infer<typeof ListenerKeySchema>;

/** One listener as an agent runs it. */
export const ListenerSchema = z.strictObject({
  /** Names the listener in logs and declarations; defaults to the listen address. */
  name: NameSchema.optional(),
  listen: ListenAddressSchema,
  target: TargetSchema,
  key: ListenerKeySchema.optional(),
});
export type Listener = z.infer<typeof ListenerSchema>;

/** A listener declared at the edge for the agents whose relay record the selector matches. */
export const ListenerDeclarationSchema = z.strictObject({
  /**
   * The namespace that owns the declaration. It applies only to relays of that namespace;
   * an agent token may declare only in its own namespaces. Omitted (admin only): any relay.
   */
  namespace: MetadataSchema.shape.namespace_name.unwrap().optional(),
  /** Which relays run it (matched against their records); empty = every relay in scope. */
  relays: SelectorSchema.default({}),
  listen: ListenAddressSchema,
  target: TargetSchema,
  key: ListenerKeySchema.optional(),
});
export type ListenerDeclaration = z.infer<typeof ListenerDeclarationSchema>;

/** A declaration as the edge stores and serves it. */
export const NamedListenerDeclarationSchema = ListenerDeclarationSchema.extend({ name: NameSchema });
export type NamedListenerDeclaration = z.infer<typeof NamedListenerDeclarationSchema>;

/** GET /listeners: every declaration of the realm, at a version that moves with each change. */
export const ListenersAnswerSchema = z.strictObject({
  version: z.number().int().nonnegative(),
  listeners: z.array(NamedListenerDeclarationSchema),
});
export type ListenersAnswer = z.infer<typeof ListenersAnswerSchema>;

/**
 * The declared listeners a relay runs: those of its own namespace (or of none) whose
 * selector matches its record. The namespace test keeps a tenant's declaration on its
 * own relays whatever its selector says. The admin's (no namespace) come first, then by
 * name: the agent keeps the first of two that want one listen address, so a tenant's
 * declaration never takes an address the admin declared.
 */
export function listenersFor(
  relay: HopwayRecord | undefined,
  declarations: readonly NamedListenerDeclaration[],
): Listener[] {
  if (relay === undefined || relay.type !== "node") return [];
  const ns = relay.metadata?.namespace_name;
  const out: Listener[] = [];
  for (const d of declarations) {
    if (d.namespace !== undefined && d.namespace !== ns) continue;
    if (!matchesSelector(d.relays, relay)) continue;
    out.push({ name: d.name, listen: d.listen, target: d.target, ...(d.key !== undefined ? { key: d.key } : {}) });
  }
  const admin = new Set(declarations.filter((d) => d.namespace === undefined).map((d) => d.name));
  const rank = (l: Listener) => (admin.has(l.name as string) ? 0 : 1);
  return out.sort((a, b) => rank(a) - rank(b) || (a.name as string).localeCompare(b.name as string));
}
