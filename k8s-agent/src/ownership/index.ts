// Key-affine routing on the agent: the relay's CONNECT target resolution and
// the local API's look-ups, both answered from the MembershipFollower's copy
// of the group memberships (so they keep working while the edge is down).
// The CONNECT forms: docs/contract/relay-protocol.md §1.6.

import { describeIssues, type FieldProblem } from "@hopway/core/errors";
import {
  decodeKeyHeader,
  KeySchema,
  MAX_KEYS_PER_LOOKUP,
  OwnersRequestSchema,
  parseKeyHost,
} from "@hopway/core/ownership";
import { NameSchema } from "@hopway/core/schema";
import type { ConnectRequest, FailureReason } from "../relay/protocol.ts";
import type { MembershipFollower } from "./follower.ts";

export { type GroupView, MembershipFollower } from "./follower.ts";

/** What the relay does with a CONNECT: unchanged (undefined), retargeted, or refused. */
export type TargetResolution =
  | undefined
  | { node: string; authority: string }
  | { reason: FailureReason; detail: string };

/**
 * Key-affine CONNECT targets:
 *   CONNECT <key-label>.key.<group>:<port>               (key in the authority)
 *   CONNECT <group>:<port>  + Hopway-Key: <percent-encoded key>
 * resolve to the key's owner; the request then continues as `CONNECT <owner>:<port>`,
 * so the route table still decides whether and how the owner may be reached.
 */
export function keyTargetResolver(follower: MembershipFollower): (req: ConnectRequest) => Promise<TargetResolution> {
  return async (req) => {
    const header = req.headers.get("hopway-key");
    let key: string;
    let group: string;
    if (header !== undefined) {
      const k = decodeKeyHeader(header);
      if (k === undefined)
        return { reason: "bad_request", detail: "Hopway-Key must be a percent-encoded key of 1-1024 characters" };
      if (parseKeyHost(req.node) !== undefined) {
        return { reason: "bad_request", detail: "give the key either in the authority or in Hopway-Key, not both" };
      }
      key = k;
      group = req.node;
    } else {
      const parsed = parseKeyHost(req.node);
      if (parsed === undefined) return undefined;
      if ("error" in parsed) return { reason: "bad_request", detail: parsed.error };
      key = parsed.key;
      group = parsed.group;
    }
    const found = await follower.lookup(group);
    if (!found.ok) {
      if (found.status === 404) return { reason: "unknown_node", detail: `no group '${group}'` };
      if (found.status === 400) return { reason: "forbidden", detail: found.message };
      if (found.code === "over_capacity") return { reason: "over_capacity", detail: found.message };
      return { reason: "no_route_table", detail: found.message };
    }
    const { owner } = found.view.index.lookup(key);
    if (owner === null) return { reason: "over_capacity", detail: `group '${group}' has no active member` };
    return { node: owner, authority: req.port === 0 ? owner : `${owner}:${req.port}` };
  };
}

export interface LocalAnswer {
  status: number;
  body: unknown;
}

function problem(status: number, code: string, message: string, path?: string): LocalAnswer {
  return { status, body: { error: { code, message, ...(path !== undefined ? { path } : {}) } } };
}

/**
 * `/v1/local/owners`: GET ?group=G&key=K[&key=…] (up to 256 keys) or POST
 * {group, keys}; `/v1/local/owners?group=G` without keys answers the membership.
 */
export async function localOwners(
  follower: MembershipFollower,
  query: URLSearchParams,
  body: unknown,
): Promise<LocalAnswer> {
  let group: string;
  let keys: string[];
  if (body !== undefined) {
    const r = OwnersRequestSchema.safeParse(body);
    if (!r.success) {
      const problems = describeIssues(r.error);
      return problem(
        400,
        "invalid_input",
        problems.map((p) => `${p.path || "body"}: ${p.message}`).join("; "),
        problems[0]?.path,
      );
    }
    group = r.data.group;
    keys = r.data.keys;
  } else {
    const problems: FieldProblem[] = [];
    for (const name of new Set(query.keys())) {
      if (name !== "group" && name !== "key") problems.push({ path: name, message: "unknown query parameter" });
    }
    const groups = query.getAll("group");
    keys = query.getAll("key");
    if (groups.length !== 1) problems.push({ path: "group", message: "give exactly one group" });
    if (keys.length > 256)
      problems.push({ path: "key", message: `at most 256 keys here; POST takes ${MAX_KEYS_PER_LOOKUP}` });
    const g = NameSchema.safeParse(groups[0]);
    if (groups.length === 1 && !g.success)
      problems.push({ path: "group", message: g.error.issues[0]?.message ?? "invalid" });
    for (const [i, k] of keys.entries()) {
      const kr = KeySchema.safeParse(k);
      if (!kr.success) problems.push({ path: `key[${i}]`, message: kr.error.issues[0]?.message ?? "invalid" });
    }
    if (problems.length > 0) {
      return problem(
        400,
        "invalid_input",
        problems.map((p) => `${p.path}: ${p.message}`).join("; "),
        problems[0]?.path,
      );
    }
    group = groups[0] as string;
  }
  const found = await follower.lookup(group);
  if (!found.ok) return problem(found.status, found.code, found.message, "group");
  const { membership, index, confirmedAt, source } = found.view;
  return {
    status: 200,
    body: {
      ...membership,
      source,
      confirmed_at: confirmedAt > 0 ? new Date(confirmedAt).toISOString() : null,
      owners: keys.map((k) => index.lookup(k)),
    },
  };
}
