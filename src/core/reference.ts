// The reference resolver: docs/contract/routing.md §1 to §3 written out as
// plainly as possible, with no indexes and no cleverness. It is the oracle that the fast
// resolver (realm.ts) is tested against and the baseline the benchmark
// compares with. Correct but slow: do not use it to serve routes.
import { chooseGateway, type DialChoice } from "./dial.ts";
import { EdgeError } from "./errors.ts";
import { rendezvousWeight } from "./hash.ts";
import { type Hop, type HopwayRecord, MAX_HOPS, type NoRouteReason, type Route } from "./schema.ts";
import { matchesSelector, type SharedNamespaces, selectorList, selectorReaches } from "./selector.ts";

/** What every resolver offers; the conformance suite runs against this interface. */
export interface RouteResolver {
  resolveRoute(from: string, to: string): Route;
  resolveRoutes(from: string, to: string): Route[];
  routeTable(from: string): Route[];
}

export function noRoute(from: string, to: string, reason: NoRouteReason, detail: string): Route {
  return { from, to, hops: null, reason, detail };
}

/** Higher weight first, then smaller name: the order between otherwise-equal relays (docs/contract/routing.md §3.3). */
export function compareRelayKeys(wa: number, na: string, wb: number, nb: string): number {
  if (wa !== wb) return wa > wb ? -1 : 1;
  return na < nb ? -1 : na > nb ? 1 : 0;
}

/** `shared`: the realm's shared namespaces (docs/contract/records.md §2.3); null, every namespace. */
export function referenceResolver(records: readonly HopwayRecord[], shared: SharedNamespaces = null): RouteResolver {
  const byName = new Map<string, HopwayRecord>();
  for (const r of records) byName.set(r.name, r);

  const get = (name: string): HopwayRecord => {
    const r = byName.get(name);
    if (r === undefined) throw new EdgeError(404, "unknown_node", `no record named '${name}'`);
    return r;
  };

  const adv = (x: HopwayRecord): HopwayRecord[] => {
    if (x.type === "group") return [];
    const sels = selectorList(x.advertise_relay);
    const owner = x.metadata?.namespace_name;
    return records.filter(
      (r) =>
        r.type === "node" &&
        r.name !== x.name &&
        sels.some((s) => matchesSelector(s, r) && selectorReaches("relay", s, owner, r, shared)),
    );
  };

  const closure = (x: HopwayRecord): Set<string> => {
    const out = new Set<string>();
    const queue = [x];
    while (queue.length > 0) {
      for (const r of adv(queue.shift()!)) {
        if (!out.has(r.name)) {
          out.add(r.name);
          queue.push(r);
        }
      }
    }
    return out;
  };

  const attachment = (c: HopwayRecord): HopwayRecord | undefined => {
    let best: HopwayRecord | undefined;
    let bestW = -1;
    for (const r of adv(c)) {
      const w = rendezvousWeight(c.name, r.name);
      if (best === undefined || compareRelayKeys(w, r.name, bestW, best.name) < 0) {
        best = r;
        bestW = w;
      }
    }
    return best;
  };

  const clientHop = (node: string): Hop => ({ node, address: null, priority: 0, alternatives: [] });
  const dialHop = (node: string, c: DialChoice): Hop => ({
    node,
    address: c.address,
    priority: c.priority,
    alternatives: c.alternatives,
  });

  const resolveRoute = (from: string, to: string): Route => {
    const s = get(from);
    const t = get(to);
    if (s.type === "group" || t.type === "group") {
      return noRoute(from, to, "group_endpoint", `'${s.type === "group" ? from : to}' is a group: resolve its members`);
    }
    if (from === to) return noRoute(from, to, "same_node", "source and target are the same record");
    const attS = s.type === "client" ? attachment(s) : undefined;
    if (s.type === "client" && attS === undefined) {
      return noRoute(from, to, "client_not_attached", `client '${from}' names no relay in advertise_relay`);
    }
    const attT = t.type === "client" ? attachment(t) : undefined;
    if (t.type === "client" && attT === undefined) {
      return noRoute(from, to, "client_not_attached", `client '${to}' names no relay in advertise_relay`);
    }
    const egress = closure(s);
    const ingress = closure(t);
    const eligible = new Set([...egress, ...ingress]);
    eligible.delete(from);
    eligible.delete(to);

    // Edges of the dial graph restricted to the eligible intermediates.
    const edges = (u: HopwayRecord): Array<{ to: HopwayRecord; hop: Hop }> => {
      if (u.type === "client") return attS !== undefined && u === s ? [{ to: attS, hop: clientHop(attS.name) }] : [];
      const out: Array<{ to: HopwayRecord; hop: Hop }> = [];
      for (const name of [...eligible, to]) {
        const v = byName.get(name)!;
        if (v.type === "client") {
          if (v === t && attT === u) out.push({ to: v, hop: clientHop(v.name) });
          continue;
        }
        const c = chooseGateway(u, v, shared);
        if (c !== null) out.push({ to: v, hop: dialHop(v.name, c) });
      }
      return out;
    };

    // Level by level: all paths whose every node sits at its first (smallest) depth,
    // which is every shortest path and nothing else.
    interface Path {
      at: HopwayRecord;
      hops: Hop[];
      cost: number;
    }
    const firstDepth = new Map<string, number>([[from, 0]]);
    let frontier: Path[] = [{ at: s, hops: [], cost: 0 }];
    let arrived: Path[] = [];
    let depth = 0;
    while (frontier.length > 0 && arrived.length === 0) {
      depth++;
      const next: Path[] = [];
      for (const p of frontier) {
        for (const e of edges(p.at)) {
          const d = firstDepth.get(e.to.name);
          if (d !== undefined && d !== depth) continue;
          firstDepth.set(e.to.name, depth);
          const q = { at: e.to, hops: [...p.hops, e.hop], cost: p.cost + e.hop.priority };
          if (e.to === t) arrived.push(q);
          else next.push(q);
        }
      }
      frontier = next;
    }
    if (arrived.length === 0) {
      if (t.type === "node") {
        const dialers = [s, ...[...eligible].map((n) => byName.get(n)!)];
        if (!dialers.some((d) => chooseGateway(d, t, shared) !== null)) {
          return noRoute(
            from,
            to,
            "no_matching_gateway",
            `no gateway of '${to}' accepts '${from}' or an eligible relay`,
          );
        }
      }
      return noRoute(from, to, "no_relay_chain", `no chain of eligible relays leads from '${from}' to '${to}'`);
    }
    if (depth > MAX_HOPS) {
      return noRoute(from, to, "hop_limit", `the shortest route has ${depth} hops, more than ${MAX_HOPS}`);
    }
    const minCost = Math.min(...arrived.map((p) => p.cost));
    arrived = arrived.filter((p) => p.cost === minCost);
    const weight = (name: string) => rendezvousWeight(egress.has(name) ? from : to, name);
    arrived.sort((a, b) => {
      for (let i = 0; i < a.hops.length - 1; i++) {
        const na = a.hops[i]!.node;
        const nb = b.hops[i]!.node;
        const c = compareRelayKeys(weight(na), na, weight(nb), nb);
        if (c !== 0) return c;
      }
      return 0;
    });
    return { from, to, hops: arrived[0]!.hops };
  };

  return {
    resolveRoute,
    resolveRoutes(from, to) {
      const t = get(to);
      get(from);
      if (t.type !== "group") return [resolveRoute(from, to)];
      // Members that exist and are not groups (the importer admits only nodes; a
      // live realm may meet a member that deregistered or re-registered as a client),
      // and, when the group names a namespace, are in it: a listed name registered
      // in another namespace is not a member.
      const ns = t.metadata?.namespace_name;
      return t.node_list
        .filter((m) => {
          const member = byName.get(m.node_name);
          if (member === undefined || member.type === "group") return false;
          return ns === undefined || member.metadata?.namespace_name === ns;
        })
        .map((m) => resolveRoute(from, m.node_name));
    },
    routeTable(from) {
      const s = get(from);
      if (s.type === "group") throw new EdgeError(400, "invalid_input", `'${from}' is a group: it has no route table`);
      return records.filter((r) => r.type !== "group" && r.name !== from).map((r) => resolveRoute(from, r.name));
    },
  };
}
