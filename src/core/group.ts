// Who counts as a member of a group (docs/contract/records.md §1.4), decided
// once for the edge's membership and owner look-ups and the resolver's routes
// to a group. The reference resolver (reference.ts) writes the same rule out
// on its own, so the conformance suite checks one against the other.
import type { GroupRecord, HopwayRecord } from "./schema.ts";

/** The namespace a record is in (a group's too): `metadata.namespace_name`, or null. */
export function recordNamespace(record: HopwayRecord): string | null {
  return record.metadata?.namespace_name ?? null;
}

/**
 * Whether `member`, the record found under one of the group's `node_list`
 * names, counts: it exists, is not a group, and is in the group's namespace
 * when the group gives one. A group without a namespace (written before groups
 * had one, or with `any_namespace: true`) counts a member of any namespace.
 */
export function countsAsMember(group: GroupRecord, member: HopwayRecord | undefined): boolean {
  if (member === undefined || member.type === "group") return false;
  const ns = group.metadata?.namespace_name;
  return ns === undefined || member.metadata?.namespace_name === ns;
}
