// Key ownership on the edge: the membership of a group (who is up, who drains,
// who still holds state) and owner/previous look-ups for keys of it. The rule
// itself is the core's (src/core/ownership.ts); this module only gathers its
// inputs from the realm: the group record's members that exist (in the group's
// namespace, when it names one: src/core/group.ts), and each
// member's scaling report, its own or, for an application record, the report
// of the agent in the same pod (same host: namespace + hostname), because the
// agent reports for its pod.
import type { Hono } from "hono";
import {
  countsAsMember,
  type FieldProblem,
  type GroupMember,
  KeySchema,
  MAX_KEYS_PER_LOOKUP,
  type Membership,
  NameSchema,
  OwnershipIndex,
  OwnersRequestSchema,
  recordNamespace,
  type ScalingReport,
  sameHost,
} from "../core/index.ts";
import type { WorkloadScaling } from "../core/scaling.ts";
import { API, reply } from "./api.ts";
import { EdgeError, invalid, readJson, validate } from "./http.ts";
import { currentView, type RealmView } from "./realm-cache.ts";
import type { Caller, Result, StoredRecord, WorkloadView } from "./types.ts";

/** The RPC subset of RealmObject that membership needs (narrow, so tests can reason about it). */
export interface MembershipRpc {
  getRecord(caller: Caller, name: string): Promise<Result<{ stored: StoredRecord }>>;
  /** `namespace`: the reporting records' (null: none); the same workload name in two namespaces is two workloads. */
  workload(caller: Caller, workload: string, namespace: string | null): Promise<Result<{ view: WorkloadView }>>;
}

type OwnershipVars = {
  realm: string;
  caller: Caller;
  stub: DurableObjectStub<import("../../durable-objects/realm.ts").RealmObject>;
};
type OwnershipEnv = { Bindings: Env; Variables: OwnershipVars };

/** Look-ups by query string stay small; larger batches use POST. */
const MAX_QUERY_KEYS = 256;

const hostIndexes = new WeakMap<RealmView, Map<string, string[]>>();

/** Node records sharing a host with `name` (the pod's agent for an application record). */
function hostMates(view: RealmView, name: string): string[] {
  let index = hostIndexes.get(view);
  if (index === undefined) {
    index = new Map();
    for (const r of view.records.values()) {
      if (r.type !== "node" || r.host?.hostname === undefined) continue;
      const key = `${r.metadata?.namespace_name ?? ""}\u0000${r.host.hostname}`;
      const list = index.get(key);
      if (list === undefined) index.set(key, [r.name]);
      else list.push(r.name);
    }
    hostIndexes.set(view, index);
  }
  const self = view.records.get(name);
  if (self === undefined || self.type !== "node" || self.host?.hostname === undefined) return [];
  const key = `${self.metadata?.namespace_name ?? ""}\u0000${self.host.hostname}`;
  return (index.get(key) ?? []).filter((n) => n !== name && sameHost(self, view.records.get(n)!));
}

/**
 * The membership of a group at the view's version: members that exist, with
 * draining and holds_state from the scaling reports (see the module comment).
 * Typically two RPCs: one report names the workload, whose view carries every
 * pod's report and the draining ordinals at once.
 */
export async function groupMembership(
  view: RealmView,
  rpc: MembershipRpc,
  caller: Caller,
  group: string,
): Promise<Membership> {
  const record = view.records.get(group);
  if (record === undefined)
    throw new EdgeError(404, "unknown_node", `no group named '${group}' in this realm`, "group");
  if (record.type !== "group") {
    throw new EdgeError(400, "invalid_input", `'${group}' is a ${record.type}, not a group`, "group");
  }
  // Listed nodes that exist and, when the group names a namespace, are in it: a listed name
  // that another namespace's token registered is not a member (docs/stateful.md).
  const names = [...new Set(record.node_list.map((m) => m.node_name))].filter((n) => {
    const member = view.records.get(n);
    return member?.type === "node" && countsAsMember(record, member);
  });
  const reports = new Map<string, ScalingReport>();
  // By namespace and workload: reports are kept per namespace (docs/contract/autoscaling.md §1.3).
  const scalings = new Map<string, WorkloadScaling | null>();
  const asked = new Set<string>();
  // Of a member or its host mate: node records, whose reports are filed under their namespace.
  const namespaceOf = (n: string): string | null => {
    const r = view.records.get(n);
    return r === undefined ? null : recordNamespace(r);
  };
  const scalingKey = (namespace: string | null, workload: string) => `${namespace ?? ""}\u0000${workload}`;

  const learnWorkload = async (namespace: string | null, workload: string) => {
    const key = scalingKey(namespace, workload);
    if (scalings.has(key)) return;
    scalings.set(key, null);
    const r = await rpc.workload(caller, workload, namespace);
    if (!r.ok) return; // 404: no live reports (they expired); members stay "unknown"
    scalings.set(key, r.view.scaling);
    for (const p of r.view.pods) if (!reports.has(p.node)) reports.set(p.node, p.report);
  };
  const reportOf = (n: string) =>
    reports.get(n) ??
    hostMates(view, n)
      .map((m) => reports.get(m))
      .find(Boolean);

  for (const n of names) {
    if (reportOf(n) !== undefined) continue;
    for (const candidate of [n, ...hostMates(view, n)]) {
      if (asked.has(candidate)) continue;
      asked.add(candidate);
      const r = await rpc.getRecord(caller, candidate);
      if (!r.ok) {
        if (r.error.status === 404) continue; // removed meanwhile
        throw new EdgeError(r.error.status, r.error.code, r.error.message);
      }
      const report = r.stored.report;
      if (report === null) continue;
      reports.set(candidate, report);
      await learnWorkload(namespaceOf(candidate), report.workload);
      break;
    }
  }

  const members: GroupMember[] = names.map((name) => {
    const report = reportOf(name);
    if (report === undefined) return { name, draining: false, holds_state: null };
    // A host mate's report is of the same namespace (hostMates keys on it).
    const scaling = scalings.get(scalingKey(namespaceOf(name), report.workload));
    return {
      name,
      draining: scaling?.draining.includes(report.ordinal) ?? false,
      holds_state: report.holds_state,
    };
  });
  const index = new OwnershipIndex(members);
  return { group, version: view.version, epoch: index.epoch, members: [...index.members] };
}

interface Cached {
  index: OwnershipIndex;
  membership: Membership;
}

// Not cached across requests: draining and holds_state change with heartbeats,
// which do not move the realm version, so a version-keyed cache would serve
// stale moves. A look-up costs the view check plus about two cheap reads.
async function indexFor(
  rpc: MembershipRpc & Parameters<typeof currentView>[0],
  caller: Caller,
  realm: string,
  group: string,
): Promise<Cached> {
  const view = await currentView(rpc, caller, realm);
  const membership = await groupMembership(view, rpc, caller, group);
  return { index: new OwnershipIndex(membership.members), membership };
}

function answer(entry: Cached, keys: readonly string[]) {
  return {
    group: entry.membership.group,
    version: entry.membership.version,
    epoch: entry.membership.epoch,
    members: entry.membership.members,
    owners: keys.map((k) => entry.index.lookup(k)),
  };
}

/** Mounts the ownership endpoints on the realm router (after its auth middleware). */
export function mountOwnership(realms: Hono<OwnershipEnv>): void {
  // GET /owners?group=G&key=K[&key=K2…]: a few keys; the reader token is enough.
  realms.get("/owners", async (c) => {
    const problems: FieldProblem[] = [];
    for (const name of Object.keys(c.req.queries())) {
      if (name !== "group" && name !== "key") problems.push({ path: name, message: "unknown query parameter" });
    }
    const groups = c.req.queries("group") ?? [];
    const keys = c.req.queries("key") ?? [];
    if (groups.length !== 1) problems.push({ path: "group", message: "give exactly one group" });
    if (keys.length === 0) problems.push({ path: "key", message: "give at least one key" });
    if (keys.length > MAX_QUERY_KEYS) {
      problems.push({
        path: "key",
        message: `at most ${MAX_QUERY_KEYS} keys here; POST /owners takes ${MAX_KEYS_PER_LOOKUP}`,
      });
    }
    if (problems.length > 0) throw invalid(problems);
    const group = validate(NameSchema, groups[0], ["group"]);
    for (const [i, k] of keys.entries()) validate(KeySchema, k, ["key", i]);
    const entry = await indexFor(c.var.stub, c.var.caller, c.var.realm, group);
    return reply(c, API.ownersQuery, 200, answer(entry, keys), { "Cache-Control": "no-cache" });
  });

  // POST /owners {group, keys: [...]}: the batch form (a draining pod asks about all its keys).
  realms.post("/owners", async (c) => {
    const body = validate(OwnersRequestSchema, await readJson(c.req.raw, 2 * 1024 * 1024));
    const entry = await indexFor(c.var.stub, c.var.caller, c.var.realm, body.group);
    return reply(c, API.ownersBatch, 200, answer(entry, body.keys), { "Cache-Control": "no-cache" });
  });

  // GET /groups/{group}/membership: what agents follow to answer look-ups without the edge.
  realms.get("/groups/:group/membership", async (c) => {
    const group = validate(NameSchema, c.req.param("group"), ["group"]);
    const entry = await indexFor(c.var.stub, c.var.caller, c.var.realm, group);
    const etag = `"${entry.membership.epoch}.${entry.membership.version}"`;
    const headers = { ETag: etag, "Cache-Control": "no-cache" };
    const inm = c.req.header("if-none-match");
    if (inm?.split(",").some((t) => t.trim() === etag || t.trim() === `W/${etag}`)) {
      return c.body(null, 304, headers);
    }
    return reply(c, API.membership, 200, entry.membership, headers);
  });
}
