// Key ownership for stateful groups: which member of a group owns a key, and,
// while state moves, which member had it before. Pure: the edge, the agent's
// local API, its relay (key-affine CONNECT) and any application that embeds
// the core compute identical answers from the same membership.
//
// The rule (docs/contract/routing.md §5.2; how to use it: docs/stateful.md):
// - A member is *up* when its record exists; *draining* when the coordinator
//   asks its pod to move state away (its ordinal is in the workload's
//   `scaling.draining`); it *holds state* when its pod reported
//   `holds_state: true`. No report yet counts as holding nothing: a pod's
//   first report rides on its agent's first heartbeat, seconds after its
//   records appear, and in that window a new pod must not be named as the
//   place to fetch from. (A pod never drains without a report either.)
// - owner(k)    = the highest rendezvous weight rendezvousWeight(k, m) over the
//   members that are up and not draining ("active").
// - previous(k) = the same over the members that hold state (draining ones
//   included), when that is not the owner; otherwise null.
//
// Why this `previous`: a member that joins starts empty and reports
// holds_state=false until it has pulled what it now owns, so for exactly the
// keys that moved to it, previous = the owner over the old membership; a
// draining member keeps holds_state=true until it has handed everything over,
// so for exactly its keys, previous = the drained member. Once those pods
// report the end of their migration (holds_state true for the joiner, false
// for the drained one) every previous is null again: the answer settles with
// no history kept anywhere. Ties (equal 53-bit weights) go to the smaller name,
// as in the route resolver.
import { z } from "zod";
import { combineWeight, nameHash, relayHalf } from "./hash.ts";
import { NAME_PATTERN, NameSchema } from "./schema.ts";

/** Longest key accepted anywhere (UTF-16 code units). */
export const MAX_KEY_LENGTH = 1024;
/** Most keys in one batch look-up. */
export const MAX_KEYS_PER_LOOKUP = 10_000;

export const KeySchema = z.string().min(1).max(MAX_KEY_LENGTH);

export const GroupMemberSchema = z.strictObject({
  name: NameSchema,
  /** The coordinator asks this member's pod to move its state away: it owns no keys. */
  draining: z.boolean(),
  /** What the member's pod last reported; null = no report yet (treated as holding nothing). */
  holds_state: z.boolean().nullable(),
});
export type GroupMember = z.infer<typeof GroupMemberSchema>;

/** The members of one group at one moment: what every ownership answer is computed from. */
export const MembershipSchema = z.strictObject({
  group: NameSchema,
  /** Realm version the member list was read at. */
  version: z.number().int().nonnegative(),
  /** Hash of the member list (names, draining, holds_state): equal epochs give equal answers. */
  epoch: z.string(),
  members: z.array(GroupMemberSchema).max(10_000),
});
export type Membership = z.infer<typeof MembershipSchema>;

export const OwnershipSchema = z.object({
  key: z.string(),
  /** null when no member is active (all draining, or none up). */
  owner: NameSchema.nullable(),
  /** The member that may still hold the key's state during a move; null when settled. */
  previous: NameSchema.nullable(),
});
export type Ownership = z.infer<typeof OwnershipSchema>;

export const OwnersAnswerSchema = z.object({
  group: NameSchema,
  version: z.number().int().nonnegative(),
  epoch: z.string(),
  members: z.array(GroupMemberSchema),
  owners: z.array(OwnershipSchema),
});
export type OwnersAnswer = z.infer<typeof OwnersAnswerSchema>;

/** POST body of the batch look-ups (edge and agent). */
export const OwnersRequestSchema = z.strictObject({
  group: NameSchema,
  keys: z.array(KeySchema).min(1).max(MAX_KEYS_PER_LOOKUP),
});

/** Members in canonical order (by name), duplicates merged conservatively. */
export function canonicalMembers(members: readonly GroupMember[]): GroupMember[] {
  const byName = new Map<string, GroupMember>();
  for (const m of members) {
    const prev = byName.get(m.name);
    byName.set(
      m.name,
      prev === undefined
        ? { name: m.name, draining: m.draining, holds_state: m.holds_state }
        : {
            name: m.name,
            draining: prev.draining || m.draining,
            holds_state:
              prev.holds_state === false && m.holds_state === false ? false : (prev.holds_state ?? m.holds_state),
          },
    );
  }
  return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** A short, platform-independent fingerprint of a member list (two 32-bit hashes, hex). */
export function membershipEpoch(members: readonly GroupMember[]): string {
  const text = canonicalMembers(members)
    .map((m) => `${m.name}:${m.draining ? "d" : "a"}${m.holds_state === null ? "?" : m.holds_state ? "s" : "e"}`)
    .join(",");
  const [a, b] = nameHash(text);
  return a.toString(16).padStart(8, "0") + b.toString(16).padStart(8, "0");
}

/**
 * A membership prepared for many look-ups: member hash halves are computed once,
 * so a key costs one string hash plus one combine per member.
 */
export class OwnershipIndex {
  readonly members: readonly GroupMember[];
  readonly epoch: string;
  private readonly names: string[];
  private readonly halves: Array<[number, number]>;
  private readonly active: boolean[];
  private readonly holder: boolean[];

  constructor(members: readonly GroupMember[]) {
    this.members = canonicalMembers(members);
    this.epoch = membershipEpoch(this.members);
    this.names = this.members.map((m) => m.name);
    this.halves = this.members.map((m) => relayHalf(nameHash(m.name)));
    this.active = this.members.map((m) => !m.draining);
    this.holder = this.members.map((m) => m.holds_state === true);
  }

  /** Whether some member owns keys (at least one is up and not draining). */
  get hasOwner(): boolean {
    return this.active.includes(true);
  }

  lookup(key: string): Ownership {
    const chooser = nameHash(key);
    let owner = -1;
    let ownerW = -1;
    let prev = -1;
    let prevW = -1;
    // Names are sorted, so on equal weights the first seen is the smaller name.
    for (let i = 0; i < this.names.length; i++) {
      const w = combineWeight(chooser, this.halves[i]!);
      if (this.active[i] && w > ownerW) {
        owner = i;
        ownerW = w;
      }
      if (this.holder[i] && w > prevW) {
        prev = i;
        prevW = w;
      }
    }
    return {
      key,
      owner: owner < 0 ? null : this.names[owner]!,
      previous: prev < 0 || prev === owner ? null : this.names[prev]!,
    };
  }
}

/** owner/previous of one key; for many keys build an OwnershipIndex once. */
export function ownerOf(members: readonly GroupMember[], key: string): Ownership {
  return new OwnershipIndex(members).lookup(key);
}

// ---- Keys in a CONNECT authority ------------------------------------------------
//
// `CONNECT <key-label>.key.<group>:<port>`: one DNS label for the key, so the
// authority stays a valid host name for curl, ncat and every proxy library.
// - A key that is itself a DNS label (lower-case letters, digits, inner '-',
//   at most 63 characters) and has no "--" is written as is: `user42.key.kv:7000`.
// - Anything else is `x--` + base32hex (RFC 4648 §7, lower case, no padding) of
//   its UTF-8 bytes, at most 63 characters in all, so keys up to 37 bytes:
//   `User/42` → `x--alpmashf6gp0`.
// - Longer keys: `CONNECT <group>:<port>` with the header
//   `Hopway-Key: <key, percent-encoded as by encodeURIComponent>`.

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const B32 = "0123456789abcdefghijklmnopqrstuv";
const ENCODED_PREFIX = "x--";

function base32hex(bytes: Uint8Array): string {
  let out = "";
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += B32[(acc >>> bits) & 31];
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out += B32[(acc << (5 - bits)) & 31];
  return out;
}

function unbase32hex(text: string): Uint8Array | undefined {
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const ch of text) {
    const v = B32.indexOf(ch);
    if (v < 0) return undefined;
    acc = (acc << 5) | v;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((acc >>> bits) & 255);
    }
    acc &= (1 << bits) - 1;
  }
  // Leftover bits must be zero padding of less than a byte: one spelling per key.
  if (bits >= 5 || acc !== 0) return undefined;
  return Uint8Array.from(out);
}

/** The DNS label for a key, or undefined when the key is too long for one (use the Hopway-Key header). */
export function encodeKeyLabel(key: string): string | undefined {
  if (key.length === 0) return undefined;
  if (LABEL.test(key) && !key.includes("--")) return key;
  const label = ENCODED_PREFIX + base32hex(new TextEncoder().encode(key));
  return label.length <= 63 ? label : undefined;
}

/** The key a label stands for, or undefined when it is not a valid key label. */
export function decodeKeyLabel(label: string): string | undefined {
  if (!LABEL.test(label)) return undefined;
  if (!label.startsWith(ENCODED_PREFIX)) return label.includes("--") ? undefined : label;
  const bytes = unbase32hex(label.slice(ENCODED_PREFIX.length));
  if (bytes === undefined || bytes.length === 0) return undefined;
  try {
    const key = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
    // Only the canonical spelling: a key that has a literal label must use it.
    return encodeKeyLabel(key) === label ? key : undefined;
  } catch {
    return undefined;
  }
}

/** `<key-label>.key.<group>` → {key, group}; undefined when the host is not in that form. */
export function parseKeyHost(host: string): { key: string; group: string } | { error: string } | undefined {
  const first = host.indexOf(".");
  if (first < 0 || !host.startsWith(".key.", first)) return undefined;
  const group = host.slice(first + 5);
  if (group.length === 0 || group.length > 253 || !NAME_PATTERN.test(group)) {
    return { error: `'${group}' is not a group name` };
  }
  const key = decodeKeyLabel(host.slice(0, first));
  if (key === undefined) {
    return { error: "the key label is neither a plain DNS label without '--' nor x-- followed by canonical base32hex" };
  }
  return { key, group };
}

/** The authority host for a key of a group (undefined: key too long, use the Hopway-Key header). */
export function keyHost(group: string, key: string): string | undefined {
  const label = encodeKeyLabel(key);
  return label === undefined ? undefined : `${label}.key.${group}`;
}

/** The `Hopway-Key` header value → key; undefined when it is not a valid percent-encoded key. */
export function decodeKeyHeader(value: string): string | undefined {
  let key: string;
  try {
    key = decodeURIComponent(value.trim());
  } catch {
    return undefined;
  }
  return key.length > 0 && key.length <= MAX_KEY_LENGTH ? key : undefined;
}
