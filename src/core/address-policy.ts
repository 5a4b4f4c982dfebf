// Gateway address policy: which addresses a record may publish as gateways.
// A gateway address is what relays dial on behalf of whoever can route to the
// record, so an agent token that could register `ipv4://127.0.0.1:9090` would
// make another tenant's relay dial its own loopback. The edge checks every
// gateway address of a non-admin write against the realm's policy
// (docs/contract/edge-api.md §7; why: docs/security/edge.md). Part of the pure core: the agent may apply the
// same rule to what it is about to dial.
import { z } from "zod";
import { formatPath } from "./errors.ts";
import { type HopwayRecord, namespaceMapSchema, ownEntry, parseAddress, TextFieldSchema } from "./schema.ts";
import type { SharedNamespaces } from "./selector.ts";

// ---- addresses as bytes ----------------------------------------------------------

/** IPv4 dotted quad → 4 bytes; undefined when it is not one. */
function ipv4Bytes(text: string): number[] | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const out: number[] = [];
  for (const p of parts) {
    // No leading zeros: a resolver (inet_aton) reads "010" as octal 8, so such a name would be
    // checked as one address and dialled as another. Refused as numeric instead.
    if (!/^(0|[1-9]\d{0,2})$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    out.push(n);
  }
  return out;
}

/** IPv6 text (with `::`, an embedded IPv4 tail, no zone) → 16 bytes; undefined when it is not one. */
function ipv6Bytes(text: string): number[] | undefined {
  let hex = text;
  const lastColon = text.lastIndexOf(":");
  if (lastColon < 0) return undefined;
  if (text.slice(lastColon + 1).includes(".")) {
    // a:b::1.2.3.4 → a:b::102:304, so one grammar remains.
    const v4 = ipv4Bytes(text.slice(lastColon + 1));
    if (v4 === undefined) return undefined;
    const [p, q, r, s] = v4 as [number, number, number, number];
    hex = `${text.slice(0, lastColon + 1)}${((p << 8) | q).toString(16)}:${((r << 8) | s).toString(16)}`;
  }
  const halves = hex.split("::");
  if (halves.length > 2) return undefined;
  const split = (s: string) => (s === "" ? [] : s.split(":"));
  const left = split(halves[0]!);
  const right = halves.length === 2 ? split(halves[1]!) : [];
  let groups = left;
  if (halves.length === 2) {
    const fill = 8 - left.length - right.length;
    if (fill < 1) return undefined;
    groups = [...left, ...Array.from({ length: fill }, () => "0"), ...right];
  }
  if (groups.length !== 8) return undefined;
  const out: number[] = [];
  for (const g of groups) {
    if (!/^[0-9A-Fa-f]{1,4}$/.test(g)) return undefined;
    const n = Number.parseInt(g, 16);
    out.push(n >> 8, n & 0xff);
  }
  return out;
}

/** An IP as bytes; IPv4-mapped and IPv4-compatible IPv6 addresses count as the IPv4 they carry. */
function ipBytes(text: string): number[] | undefined {
  const v4 = ipv4Bytes(text);
  if (v4 !== undefined) return v4;
  const v6 = ipv6Bytes(text);
  if (v6 === undefined) return undefined;
  const zeros10 = v6.slice(0, 10).every((b) => b === 0);
  if (zeros10 && v6[10] === 0xff && v6[11] === 0xff) return v6.slice(12);
  // ::a.b.c.d (deprecated IPv4-compatible) except :: and ::1 themselves.
  if (zeros10 && v6[10] === 0 && v6[11] === 0 && v6.slice(12, 15).some((b) => b !== 0)) return v6.slice(12);
  return v6;
}

interface Cidr {
  bytes: number[];
  bits: number;
}

function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf("/");
  if (slash < 0) return "must be address/prefix-length, e.g. 10.0.0.0/8 or fd00::/8";
  const bytes = ipBytes(text.slice(0, slash));
  if (bytes === undefined) return `'${text.slice(0, slash)}' is not an IP address`;
  const bitsText = text.slice(slash + 1);
  const bits = Number(bitsText);
  // An IPv4-mapped CIDR (::ffff:10.0.0.0/104) is written in IPv6 bits; keep it in IPv4 terms.
  const isMapped = bytes.length === 4 && text.slice(0, slash).includes(":");
  const max = bytes.length * 8 + (isMapped ? 96 : 0);
  if (!/^\d{1,3}$/.test(bitsText) || bits > max) return `prefix length must be 0-${max}`;
  return { bytes, bits: isMapped ? Math.max(0, bits - 96) : bits };
}

function inCidr(ip: number[], cidr: Cidr): boolean {
  if (ip.length !== cidr.bytes.length) return false;
  let bits = cidr.bits;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((ip[i]! & mask) !== (cidr.bytes[i]! & mask)) return false;
  }
  return true;
}

const cidr = (text: string) => parseCidr(text) as Cidr;

/** Classes of addresses, refused for tenants unless the policy allows them. */
const LOOPBACK = [cidr("127.0.0.0/8"), cidr("::1/128")];
const LINK_LOCAL = [cidr("169.254.0.0/16"), cidr("fe80::/10")];
/** Never a relay's target, whatever the policy says: unspecified, "this network", broadcast, multicast. */
const NEVER = [cidr("0.0.0.0/8"), cidr("::/128"), cidr("255.255.255.255/32"), cidr("224.0.0.0/4"), cidr("ff00::/8")];

/**
 * The class of an IP address that the default policy refuses (loopback, link-local, or one that
 * is never dialled: unspecified, broadcast, multicast), or undefined for any other address or a
 * text that is not an IP. The relay asks it of what a DNS name resolved to: the edge checks a
 * name by its text only, and a name can resolve to anything.
 */
export function refusedAddressClass(ip: string): AddressClass | undefined {
  const bytes = ipBytes(ip);
  return bytes === undefined ? undefined : classOf(bytes);
}

type AddressClass = "loopback" | "link_local" | "never";

function classOf(bytes: number[]): AddressClass | undefined {
  if (NEVER.some((c) => inCidr(bytes, c))) return "never";
  if (LOOPBACK.some((c) => inCidr(bytes, c))) return "loopback";
  if (LINK_LOCAL.some((c) => inCidr(bytes, c))) return "link_local";
  return undefined;
}

/** Host names that resolve to this machine by convention (RFC 6761 and common /etc/hosts entries). */
function isLoopbackName(name: string): boolean {
  return (
    name === "localhost" ||
    name.endsWith(".localhost") ||
    name === "localhost.localdomain" ||
    name === "ip6-localhost" ||
    name === "ip6-loopback"
  );
}

/**
 * A name whose last label is a number is no DNS name: resolvers read `127.1`,
 * `2130706433` and `0x7f.1` as IPv4 addresses (inet_aton), so it is refused
 * rather than guessed at. Real top-level domains are never numeric.
 */
function isNumericName(name: string): boolean {
  const last = name.split(".").pop() ?? "";
  return /^(0x[0-9a-f]*|\d+)$/i.test(last);
}

// ---- the policy ----------------------------------------------------------------

const CidrSchema = z
  .string()
  .max(64)
  .superRefine((text, ctx) => {
    const r = parseCidr(text);
    if (typeof r === "string") ctx.addIssue({ code: "custom", message: r });
  });

const DNS_PATTERN = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DnsPatternSchema = z
  .string()
  .max(253)
  .regex(DNS_PATTERN, "must be a lower-case DNS name, or '*.' and a DNS name (matches every name below it)");

/** A record name, or a prefix of names followed by `*` (`payments-*`; `*` alone: every name). */
const NamePatternSchema = z
  .string()
  .max(254)
  .regex(
    /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?|[a-z0-9][-a-z0-9.]*\*|\*)$/,
    "must be a record name, or a name prefix followed by '*' (payments-*), or '*'",
  );

export const AddressRulesSchema = z.strictObject({
  /** IP ranges gateway addresses may be in; omitted = any IP outside the refused classes; [] = no IP. */
  cidrs: z.array(CidrSchema).max(256).optional(),
  /** DNS names (`relay.example.com`) or suffixes (`*.svc.cluster.local`); omitted = any name; [] = none. */
  dns: z.array(DnsPatternSchema).max(256).optional(),
  /** 127.0.0.0/8, ::1, `localhost` and `*.localhost`. */
  allow_loopback: z.boolean().optional(),
  /** 169.254.0.0/16 (cloud metadata services live here) and fe80::/10. */
  allow_link_local: z.boolean().optional(),
  /** `unix://` socket paths, which name a file on the relay's own machine. */
  allow_unix: z.boolean().optional(),
  /**
   * Record names the namespace's agent tokens may register: exact names or prefixes (`b-*`);
   * omitted = any name; [] = none. Names are realm-wide, so this keeps one tenant from taking a
   * name another tenant's routes lead to while that tenant's record is briefly gone.
   */
  names: z.array(NamePatternSchema).max(256).optional(),
});
export type AddressRules = z.infer<typeof AddressRulesSchema>;

/** Most namespaces one realm may share (docs/contract/records.md §2.3). */
export const MAX_SHARED_NAMESPACES = 1024;

/** The realm's shared namespaces on the wire: null (or omitted in the policy) = every namespace. */
export const SharedNamespacesSchema = z.array(TextFieldSchema).max(MAX_SHARED_NAMESPACES);

export const AddressPolicySchema = z.strictObject({
  /** Rules for namespaces not listed below. Omitted = the built-in default. */
  default: AddressRulesSchema.optional(),
  /** Rules per namespace (metadata.namespace_name); they replace the default for that namespace. */
  namespaces: namespaceMapSchema(AddressRulesSchema).optional(),
  /**
   * The namespaces whose records a selector that names no namespace reaches from every namespace
   * (docs/contract/records.md §2.3). Omitted = every namespace, as before the setting; [] = none.
   */
  shared_namespaces: SharedNamespacesSchema.optional(),
});
export type AddressPolicy = z.infer<typeof AddressPolicySchema>;

/** PUT /policy/shared-namespaces: only the setting, the rest of the policy kept; null = every namespace. */
export const SharedNamespacesBodySchema = z.strictObject({
  shared_namespaces: SharedNamespacesSchema.nullable(),
});

/** The policy's shared namespaces as the resolver takes them (null: every namespace). */
export function sharedNamespaces(list: readonly string[] | null | undefined): SharedNamespaces {
  return list === null || list === undefined ? null : new Set(list);
}

/** The setting in one canonical form (sorted, no duplicates), so equal settings compare equal. */
export function canonicalShared(list: readonly string[] | null | undefined): string[] | null {
  return list === null || list === undefined ? null : [...new Set(list)].sort();
}

/** Any IP or name, except the classes a tenant must never point a relay at. */
export const DEFAULT_ADDRESS_RULES: AddressRules = {};

export function rulesFor(policy: AddressPolicy, namespace: string | null): AddressRules {
  return (
    (namespace !== null ? ownEntry(policy.namespaces, namespace) : undefined) ?? policy.default ?? DEFAULT_ADDRESS_RULES
  );
}

function dnsMatches(pattern: string, name: string): boolean {
  return pattern.startsWith("*.") ? name.endsWith(pattern.slice(1)) : name === pattern;
}

/** Why `address` is refused under `rules`, or null when it is allowed. */
export function addressRefusal(address: string, rules: AddressRules): string | null {
  const parsed = parseAddress(address);
  if (typeof parsed === "string") return parsed;
  if (parsed.scheme === "unix") {
    return rules.allow_unix === true ? null : "unix:// addresses are not allowed for this namespace (allow_unix)";
  }
  let ip: number[] | undefined;
  let name: string | undefined;
  if (parsed.scheme === "dns") {
    name = parsed.host.toLowerCase().replace(/\.$/, "");
    // A DNS name that is an address literal is checked as that address.
    ip = ipBytes(name);
    if (ip === undefined && isNumericName(name)) return `'${parsed.host}' reads as a numeric address, not a DNS name`;
  } else {
    ip = ipBytes(parsed.host);
    if (ip === undefined) return `'${parsed.host}' is not an IP address`;
  }
  if (ip !== undefined) {
    const refused = classOf(ip);
    if (refused === "never") return `'${parsed.host}' is an unspecified, broadcast or multicast address`;
    if (refused === "loopback" && rules.allow_loopback !== true) {
      return `'${parsed.host}' is a loopback address (allow_loopback)`;
    }
    if (refused === "link_local" && rules.allow_link_local !== true) {
      return `'${parsed.host}' is a link-local address (allow_link_local)`;
    }
    if (rules.cidrs !== undefined && !rules.cidrs.some((c) => inCidr(ip, cidr(c)))) {
      return `'${parsed.host}' is outside the address ranges allowed for this namespace`;
    }
    return null;
  }
  const host = name as string;
  if (isLoopbackName(host) && rules.allow_loopback !== true)
    return `'${parsed.host}' names this machine (allow_loopback)`;
  if (rules.dns !== undefined && !rules.dns.some((p) => dnsMatches(p, host))) {
    return `'${parsed.host}' is not among the DNS names allowed for this namespace`;
  }
  return null;
}

export interface AddressProblem {
  /** e.g. `gateway[0].address` or `gateway[1].address[2]`, after `prefix`. */
  path: string;
  message: string;
}

/** The first gateway address of `record` the policy refuses, or null. */
function nameMatches(pattern: string, name: string): boolean {
  return pattern.endsWith("*") ? name.startsWith(pattern.slice(0, -1)) : name === pattern;
}

/** Why a record of this name is refused under the rules of its namespace, or null when it is allowed. */
export function recordNameProblem(record: HopwayRecord, policy: AddressPolicy): string | null {
  const namespace = record.metadata?.namespace_name ?? null;
  // Unlike the address rules, a namespace's rules without `names` take the default's: a namespace
  // given rules for its addresses alone must not thereby escape the realm's names.
  const patterns = rulesFor(policy, namespace).names ?? policy.default?.names;
  if (patterns === undefined || patterns.some((p) => nameMatches(p, record.name))) return null;
  const scope = namespace === null ? "records without a namespace" : `namespace '${namespace}'`;
  return patterns.length === 0
    ? `the realm's policy gives ${scope} no record names to register`
    : `'${record.name}' is not among the names ${scope} may register (${patterns.join(", ")})`;
}

export function recordAddressProblem(
  record: HopwayRecord,
  policy: AddressPolicy,
  prefix: ReadonlyArray<PropertyKey> = [],
): AddressProblem | null {
  if (record.type !== "node" || record.gateway === undefined) return null;
  const rules = rulesFor(policy, record.metadata?.namespace_name ?? null);
  for (const [g, gateway] of record.gateway.entries()) {
    const list = Array.isArray(gateway.address) ? gateway.address : [gateway.address];
    for (const [a, address] of list.entries()) {
      const why = addressRefusal(address, rules);
      if (why !== null) {
        const at = Array.isArray(gateway.address)
          ? [...prefix, "gateway", g, "address", a]
          : [...prefix, "gateway", g, "address"];
        return { path: formatPath(at), message: `${address}: ${why}` };
      }
    }
  }
  return null;
}
