// How many records, and how many bytes of them, a realm and each namespace in
// it may hold (docs/contract/edge-api.md §14). Every Worker isolate holds its
// realm's records and every agent pulls route tables built from them, so one
// tenant registering records without bound, or very large ones, would cost
// every other tenant of the realm.
//
// Part of the pure core: zod only, no `cloudflare:*`, `hono` or `node:*`.
import { z } from "zod";
import { MAX_RECORDS } from "./parse.ts";
import type { Rate } from "./rate.ts";
import { namespaceMapSchema, ownEntry } from "./schema.ts";

/** Records a namespace may hold unless the admin says otherwise. */
export const DEFAULT_RECORDS_PER_NAMESPACE = 10_000;
/**
 * Records a realm may hold unless the admin says otherwise: a little above the realm the edge is
 * measured at (docs/edge.md: 50,000 records, 23 MB of JSON, an isolate heap of ~97 MiB of the
 * 128 MB an isolate has).
 */
export const DEFAULT_RECORDS_PER_REALM = 60_000;
/**
 * Bytes of stored record JSON (UTF-8) a namespace, and a realm, may hold unless
 * the admin says otherwise: room for records of a few hundred bytes, not for records of 250 KB
 * that would fill an isolate long before the record count does.
 */
export const DEFAULT_BYTES_PER_NAMESPACE = 16 * 1024 * 1024;
export const DEFAULT_BYTES_PER_REALM = 32 * 1024 * 1024;
/**
 * The largest record, in UTF-8 bytes of its JSON: what a single PUT's body allows. An import could
 * otherwise carry one of several MB, past what SQLite stores in one value (2 MB on Cloudflare).
 */
export const MAX_RECORD_BYTES = 256 * 1024;

/** UTF-8 bytes of `text`, what SQLite's `length(CAST(json AS BLOB))` counts, without encoding it. */
export function utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** How long a name stays with its namespace after its record went away, unless the admin says otherwise. */
export const DEFAULT_NAME_HOLD_SECONDS = 900;
const MAX_NAME_HOLD_SECONDS = 7 * 86_400;
const MAX_BYTES = 2 ** 40;

const CountSchema = z.number().int().min(0).max(MAX_RECORDS);
const BytesSchema = z.number().int().min(0).max(MAX_BYTES);

/** One namespace's own limits; an omitted field is the realm's per-namespace setting. */
export const NamespaceLimitsSchema = z.strictObject({
  records: CountSchema.optional(),
  bytes: BytesSchema.optional(),
});

/**
 * Writes per second each agent or reader token may make (record and listener writes, heartbeats,
 * certificate requests), and the most at once (§14.1). A lease renews about every third of its
 * life, so at the default lease (30 s) 200 per second covers a token whose agents hold 2,000 leases.
 */
export const DEFAULT_TOKEN_WRITES_PER_SECOND = 200;
export const DEFAULT_TOKEN_WRITE_BURST = 2_000;
/**
 * Changes per second each token may make, and the most at once: writes that move the realm's
 * version (a record created, changed or deleted; an import), each of which every agent following
 * the realm's records wakes for. Registrations of a rollout of a few hundred pods fit the burst.
 */
export const DEFAULT_TOKEN_CHANGES_PER_SECOND = 10;
export const DEFAULT_TOKEN_CHANGE_BURST = 500;
/** Fractions allowed: 0.2 is one every 5 seconds. */
const PerSecondSchema = z.number().min(0).max(100_000);
const BurstSchema = z.number().int().min(1).max(1_000_000);

/** One token's own write budget; an omitted field is the realm's per-token setting. */
export const TokenRateSchema = z.strictObject({
  writes_per_second: PerSecondSchema.optional(),
  write_burst: BurstSchema.optional(),
  changes_per_second: PerSecondSchema.optional(),
  change_burst: BurstSchema.optional(),
});

const TokenRatesSchema = z
  .record(z.string().regex(/^[0-9a-f]{16}$/, "must be a token id (16 hex digits)"), TokenRateSchema)
  .refine((r) => Object.keys(r).length <= 1000, "at most 1000 tokens");

/** What the admin sets (PUT /limits); an omitted field is its default. */
export const RealmLimitsSchema = z.strictObject({
  /** Records in the whole realm, namespaced or not, and their bytes. */
  records_per_realm: CountSchema.optional(),
  bytes_per_realm: BytesSchema.optional(),
  /** Records, and their bytes, in each namespace not listed in `namespaces`. */
  records_per_namespace: CountSchema.optional(),
  bytes_per_namespace: BytesSchema.optional(),
  /** Per-namespace limits, replacing the two above for that namespace. */
  namespaces: namespaceMapSchema(NamespaceLimitsSchema).optional(),
  /** Seconds a namespace keeps a name after its record went away (0: not at all). */
  name_hold_seconds: z.number().int().min(0).max(MAX_NAME_HOLD_SECONDS).optional(),
  /** Each agent or reader token's write budget (0 per second: none). */
  token_writes_per_second: PerSecondSchema.optional(),
  token_write_burst: BurstSchema.optional(),
  /** Each token's change budget: writes that move the realm's version (0 per second: none). */
  token_changes_per_second: PerSecondSchema.optional(),
  token_change_burst: BurstSchema.optional(),
  /** Per token id, the four above for that token. */
  tokens: TokenRatesSchema.optional(),
});
export type RealmLimits = z.infer<typeof RealmLimitsSchema>;

const UsageSchema = z.object({
  records: z.number().int().nonnegative(),
  bytes: z.number().int().nonnegative(),
});
/** Records held, and the bytes of their stored JSON. */
export type Usage = z.infer<typeof UsageSchema>;
const NamespaceUsageSchema = UsageSchema.extend({
  /** Names the namespace holds now without a record (name holds); left out when none. */
  held_names: z.number().int().nonnegative().optional(),
});

/** GET/PUT /limits answer: the limits in force, defaults filled in, and what the realm and each namespace hold now. */
export const RealmLimitsViewSchema = z.object({
  records_per_realm: CountSchema,
  bytes_per_realm: BytesSchema,
  records_per_namespace: CountSchema,
  bytes_per_namespace: BytesSchema,
  namespaces: z.record(z.string(), NamespaceLimitsSchema),
  name_hold_seconds: z.number().int().min(0).max(MAX_NAME_HOLD_SECONDS),
  token_writes_per_second: PerSecondSchema,
  token_write_burst: BurstSchema,
  token_changes_per_second: PerSecondSchema,
  token_change_burst: BurstSchema,
  tokens: z.record(z.string(), TokenRateSchema),
  usage: z.object({
    records: z.number().int().nonnegative(),
    bytes: z.number().int().nonnegative(),
    /** Per namespace, namespaces holding none left out. A group counts in the namespace it names. */
    namespaces: z.record(z.string(), NamespaceUsageSchema),
  }),
});
export type RealmLimitsView = z.infer<typeof RealmLimitsViewSchema>;

/** The limits of a namespace the admin did not list. */
export function perNamespace(limits: RealmLimits): Usage {
  return {
    records: limits.records_per_namespace ?? DEFAULT_RECORDS_PER_NAMESPACE,
    bytes: limits.bytes_per_namespace ?? DEFAULT_BYTES_PER_NAMESPACE,
  };
}

/** What one namespace may hold: its own limits, else the per-namespace ones. */
export function allowedIn(limits: RealmLimits, namespace: string): Usage {
  const own = ownEntry(limits.namespaces, namespace);
  const base = perNamespace(limits);
  return { records: own?.records ?? base.records, bytes: own?.bytes ?? base.bytes };
}

export function allowedInRealm(limits: RealmLimits): Usage {
  return {
    records: limits.records_per_realm ?? DEFAULT_RECORDS_PER_REALM,
    bytes: limits.bytes_per_realm ?? DEFAULT_BYTES_PER_REALM,
  };
}

/** A token's write or change budget: its own entry, else the realm's per-token setting. */
export function tokenRate(limits: RealmLimits, tokenId: string, kind: "write" | "change"): Rate {
  const own = limits.tokens !== undefined && Object.hasOwn(limits.tokens, tokenId) ? limits.tokens[tokenId] : undefined;
  return kind === "write"
    ? {
        perSecond: own?.writes_per_second ?? limits.token_writes_per_second ?? DEFAULT_TOKEN_WRITES_PER_SECOND,
        burst: own?.write_burst ?? limits.token_write_burst ?? DEFAULT_TOKEN_WRITE_BURST,
      }
    : {
        perSecond: own?.changes_per_second ?? limits.token_changes_per_second ?? DEFAULT_TOKEN_CHANGES_PER_SECOND,
        burst: own?.change_burst ?? limits.token_change_burst ?? DEFAULT_TOKEN_CHANGE_BURST,
      };
}

export function nameHoldSeconds(limits: RealmLimits): number {
  return limits.name_hold_seconds ?? DEFAULT_NAME_HOLD_SECONDS;
}

/**
 * One record a write stores: its namespace after the write (`to`; null for
 * none) and before it (`from`; undefined when the name is new), and its size
 * after and before. A group's namespace is the one it names.
 */
export interface RecordPlacement {
  to: string | null;
  from: string | null | undefined;
  bytes: number;
  /** 0 when the name is new. */
  fromBytes: number;
  /** Where the record is in the request, for the error's path: "" for a single PUT, "[3]." in an import. */
  at: string;
}

export interface LimitRefusal {
  /** The namespace over its limit; null for the realm's limit. */
  namespace: string | null;
  what: "records" | "bytes";
  limit: number;
  holds: number;
  adds: number;
  at: string;
}

interface Delta {
  records: number;
  bytes: number;
  /** The first placement that grows this scope. */
  at: string | undefined;
}

function grow(d: Delta, records: number, bytes: number, at: string): void {
  d.records += records;
  d.bytes += bytes;
  if (d.at === undefined && (records > 0 || bytes > 0)) d.at = at;
}

function over(d: Delta, held: Usage, allowed: Usage, namespace: string | null): LimitRefusal | null {
  const at = d.at ?? "";
  if (d.records > 0 && held.records + d.records > allowed.records) {
    return { namespace, what: "records", limit: allowed.records, holds: held.records, adds: d.records, at };
  }
  if (d.bytes > 0 && held.bytes + d.bytes > allowed.bytes) {
    return { namespace, what: "bytes", limit: allowed.bytes, holds: held.bytes, adds: d.bytes, at };
  }
  return null;
}

/**
 * Whether storing `placements` (distinct names) takes a namespace or the realm
 * past a limit. Only growth is refused: a write that keeps or lowers a count
 * passes even where it is already over a limit the admin lowered, so
 * renewals, replacements that do not grow and moves out are never blocked.
 * Namespaces are checked before the realm, so a tenant at its own limit is
 * answered from its own count. `usage` gives what the realm (null) or a
 * namespace holds now.
 */
export function limitRefusal(
  limits: RealmLimits,
  placements: readonly RecordPlacement[],
  usage: (namespace: string | null) => Usage,
): LimitRefusal | null {
  const namespaces = new Map<string, Delta>();
  const scope = (ns: string): Delta => {
    const known = namespaces.get(ns);
    if (known !== undefined) return known;
    const d: Delta = { records: 0, bytes: 0, at: undefined };
    namespaces.set(ns, d);
    return d;
  };
  const realm: Delta = { records: 0, bytes: 0, at: undefined };
  for (const p of placements) {
    grow(realm, p.from === undefined ? 1 : 0, p.bytes - p.fromBytes, p.at);
    if (p.from === p.to) {
      if (p.to !== null) grow(scope(p.to), 0, p.bytes - p.fromBytes, p.at);
      continue;
    }
    if (p.to !== null) grow(scope(p.to), 1, p.bytes, p.at);
    if (p.from !== undefined && p.from !== null) grow(scope(p.from), -1, -p.fromBytes, p.at);
  }
  for (const [namespace, d] of namespaces) {
    const refused = over(d, usage(namespace), allowedIn(limits, namespace), namespace);
    if (refused !== null) return refused;
  }
  return over(realm, usage(null), allowedInRealm(limits), null);
}
