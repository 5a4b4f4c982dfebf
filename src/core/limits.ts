// How many records a realm, and each namespace in it, may hold
// (docs/contract/edge-api.md §14). Every Worker isolate holds its realm's
// records and every agent pulls route tables built from them, so one tenant
// registering records without bound would cost every other tenant of the realm.
//
// Part of the pure core: zod only, no `cloudflare:*`, `hono` or `node:*`.
import { z } from "zod";
import { MAX_RECORDS } from "./parse.ts";
import { TextFieldSchema } from "./schema.ts";

/** Records a namespace may hold unless the admin says otherwise. */
export const DEFAULT_RECORDS_PER_NAMESPACE = 10_000;
/** Records a realm may hold unless the admin says otherwise: the largest import, and twice the realm the edge is measured at (docs/edge.md). */
export const DEFAULT_RECORDS_PER_REALM = MAX_RECORDS;
/** How long a name stays with its namespace after its record went away, unless the admin says otherwise. */
export const DEFAULT_NAME_HOLD_SECONDS = 900;
const MAX_NAME_HOLD_SECONDS = 7 * 86_400;

const CountSchema = z.number().int().min(0).max(MAX_RECORDS);

/** What the admin sets (PUT /limits); an omitted field is its default. */
export const RealmLimitsSchema = z.strictObject({
  /** Records in the whole realm, namespaced or not. */
  records_per_realm: CountSchema.optional(),
  /** Records in each namespace not listed in `namespaces`. */
  records_per_namespace: CountSchema.optional(),
  /** Per-namespace overrides of `records_per_namespace`. */
  namespaces: z
    .record(TextFieldSchema, CountSchema)
    .refine((r) => Object.keys(r).length <= 1000, "at most 1000 namespaces")
    .optional(),
  /** Seconds a namespace keeps a name after its record went away (0: not at all). */
  name_hold_seconds: z.number().int().min(0).max(MAX_NAME_HOLD_SECONDS).optional(),
});
export type RealmLimits = z.infer<typeof RealmLimitsSchema>;

/** GET/PUT /limits answer: the limits in force, defaults filled in, and what each namespace holds now. */
export const RealmLimitsViewSchema = z.object({
  records_per_realm: CountSchema,
  records_per_namespace: CountSchema,
  namespaces: z.record(z.string(), CountSchema),
  name_hold_seconds: z.number().int().min(0).max(MAX_NAME_HOLD_SECONDS),
  usage: z.object({
    records: z.number().int().nonnegative(),
    /** Records per namespace, namespaces holding none left out. A group counts in the namespace it names. */
    namespaces: z.record(z.string(), z.number().int().nonnegative()),
  }),
});
export type RealmLimitsView = z.infer<typeof RealmLimitsViewSchema>;

/** The limit of a namespace the admin did not list. */
export function recordsPerNamespace(limits: RealmLimits): number {
  return limits.records_per_namespace ?? DEFAULT_RECORDS_PER_NAMESPACE;
}

export function recordsAllowedIn(limits: RealmLimits, namespace: string): number {
  return limits.namespaces?.[namespace] ?? recordsPerNamespace(limits);
}

export function nameHoldSeconds(limits: RealmLimits): number {
  return limits.name_hold_seconds ?? DEFAULT_NAME_HOLD_SECONDS;
}

export function recordsAllowedInRealm(limits: RealmLimits): number {
  return limits.records_per_realm ?? DEFAULT_RECORDS_PER_REALM;
}

/**
 * One record a write stores: its namespace after the write (`to`; null for
 * none) and before it (`from`; undefined when the name is new). A group's
 * namespace is the one it names.
 */
export interface RecordPlacement {
  to: string | null;
  from: string | null | undefined;
  /** Where the record is in the request, for the error's path: "" for a single PUT, "[3]." in an import. */
  at: string;
}

export interface LimitRefusal {
  /** The namespace over its limit; null for the realm's limit. */
  namespace: string | null;
  limit: number;
  holds: number;
  adds: number;
  at: string;
}

/**
 * Whether storing `placements` (distinct names) takes the realm or a namespace
 * over its limit. Only growth is refused: a write that keeps or lowers a count
 * passes even where the count is already over a limit the admin lowered, so
 * renewals, replacements and moves out are never blocked. `holds` gives the
 * current count of the realm (null) or a namespace.
 */
export function limitRefusal(
  limits: RealmLimits,
  placements: readonly RecordPlacement[],
  holds: (namespace: string | null) => number,
): LimitRefusal | null {
  const delta = new Map<string, number>();
  const firstAt = new Map<string, string>();
  let realmAdds = 0;
  let realmAt = "";
  for (const p of placements) {
    if (p.from === undefined) {
      if (realmAdds++ === 0) realmAt = p.at;
    }
    if (p.from === p.to) continue;
    if (p.to !== null) {
      delta.set(p.to, (delta.get(p.to) ?? 0) + 1);
      if (!firstAt.has(p.to)) firstAt.set(p.to, p.at);
    }
    if (p.from !== undefined && p.from !== null) delta.set(p.from, (delta.get(p.from) ?? 0) - 1);
  }
  if (realmAdds > 0) {
    const limit = recordsAllowedInRealm(limits);
    const now = holds(null);
    if (now + realmAdds > limit) return { namespace: null, limit, holds: now, adds: realmAdds, at: realmAt };
  }
  for (const [namespace, adds] of delta) {
    if (adds <= 0) continue;
    const limit = recordsAllowedIn(limits, namespace);
    const now = holds(namespace);
    if (now + adds > limit) return { namespace, limit, holds: now, adds, at: firstAt.get(namespace) ?? "" };
  }
  return null;
}
