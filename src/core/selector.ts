// Selector matching (docs/contract/records.md §2.1) and the "same host" test
// that gates unix:// addresses (docs/contract/records.md §2.2).
import type { HopwayRecord, Selector } from "./schema.ts";

function hostOf(record: HopwayRecord): { hostname?: string | undefined; pid?: number | undefined } | undefined {
  return record.type === "group" ? undefined : record.host;
}

function metadataOf(record: HopwayRecord) {
  return record.type === "group" ? undefined : record.metadata;
}

/**
 * Whether `selector` matches `record`: every field the selector gives is equal
 * in the record; labels are a subset match with literal values ("any" is an
 * ordinary value). An omitted or empty selector matches every record.
 */
export function matchesSelector(selector: Selector | undefined, record: HopwayRecord): boolean {
  if (selector === undefined) return true;
  if (selector.name !== undefined && selector.name !== record.name) return false;
  const sh = selector.host;
  if (sh !== undefined) {
    const host = hostOf(record);
    if (sh.hostname !== undefined && sh.hostname !== host?.hostname) return false;
    if (sh.pid !== undefined && sh.pid !== host?.pid) return false;
  }
  const sm = selector.metadata;
  if (sm !== undefined) {
    const md = metadataOf(record);
    if (sm.namespace_name !== undefined && sm.namespace_name !== md?.namespace_name) return false;
    if (sm.api_version !== undefined && sm.api_version !== md?.api_version) return false;
    if (sm.kind !== undefined && sm.kind !== md?.kind) return false;
    if (sm.group !== undefined && sm.group !== md?.group) return false;
    if (sm.labels !== undefined) {
      const labels = md?.labels;
      for (const key of Object.keys(sm.labels)) {
        // Own-property check: a label key such as "constructor" must not hit Object.prototype.
        if (labels === undefined || !Object.hasOwn(labels, key) || labels[key] !== sm.labels[key]) return false;
      }
    }
  }
  return true;
}

/**
 * The realm's shared namespaces (docs/contract/records.md §2.3). null: every namespace is shared,
 * the rule before the setting and what a topology file resolves with. Else the namespaces whose
 * records a selector that names no namespace reaches from every other namespace.
 */
export type SharedNamespaces = ReadonlySet<string> | null;

/** Where a selector is written: an `advertise_relay` (whom the record trusts as its relays) or a gateway's `match` (who may dial it). */
export type SelectorUse = "relay" | "dial";

/**
 * Whether a selector written in a record of namespace `owner` may match `candidate` at all
 * (docs/contract/records.md §2.3). A selector that names a namespace chose it and reaches it. One
 * that names none, or an omitted one, reaches its own record's namespace, records without a
 * namespace (only the admin writes those) and the shared namespaces: any tenant can write a record
 * that matches it, so it must not make a tenant's node another namespace's relay, nor let it dial a
 * tenant of another namespace, unless the admin shares the tenant's namespace. A gateway of a
 * shared namespace's record, or of one without a namespace, serves every namespace: that is what
 * sharing it means, and a node that dials it becomes nobody's relay by doing so.
 */
export function selectorReaches(
  use: SelectorUse,
  selector: Selector | undefined,
  owner: string | undefined,
  candidate: HopwayRecord,
  shared: SharedNamespaces,
): boolean {
  if (shared === null || selector?.metadata?.namespace_name !== undefined) return true;
  if (use === "dial" && (owner === undefined || shared.has(owner))) return true;
  const ns = metadataOf(candidate)?.namespace_name;
  return ns === undefined || ns === owner || shared.has(ns);
}

/** `advertise_relay` as a list (it may be one selector or a list of them). */
export function selectorList(value: Selector | readonly Selector[] | undefined): readonly Selector[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value as Selector];
}

/**
 * Same host = same `metadata.namespace_name` and `host.hostname`. A record that
 * does not state its hostname is on no known host, so it shares none.
 */
export function sameHost(a: HopwayRecord, b: HopwayRecord): boolean {
  const ha = hostOf(a)?.hostname;
  if (ha === undefined || ha !== hostOf(b)?.hostname) return false;
  return metadataOf(a)?.namespace_name === metadataOf(b)?.namespace_name;
}
