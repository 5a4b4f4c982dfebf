// Which nodes of a route table the relay must treat as relays (docs/contract/edge-api.md §5.2).
//
// A relay refuses a tunnel whose final target is a relay, so that tunnels cannot be nested past
// the hop limit. Every intermediate hop of a route is a relay in the resolver's eyes, but which
// nodes become intermediates is partly in other namespaces' hands: a record's advertise_relay may
// name any node, so a tenant that names another namespace's application as the relay of one of
// its own records makes that application an intermediate of the route to it. Taken at face
// value, every relay would then refuse tunnels to the application. So an intermediate counts as
// a relay only when someone other than an arbitrary tenant vouches for it: the relay's own
// upstream chain, the admin (a record without a namespace), or the namespace of a target it
// relays for, which may only vouch for its own nodes. Sharing the relay's namespace vouches for
// nothing: the victim's application usually does.
import { canDial, egressRelays, type Realm, sharedNamespacesOf } from "./realm.ts";
import type { Route } from "./schema.ts";

/** A node the relay treats as a relay; `aliases`: its addresses also mark other records that share them. */
export interface RelayMark {
  node: string;
  aliases: boolean;
}

/**
 * The relays among the intermediates of `routes` (the route table of `self`), in first-seen order.
 *
 * By name: an intermediate X counts when X is in self's egress closure, has no namespace, or is an
 * intermediate of a route to a target of X's own namespace. By address (`aliases`), only the
 * first two: a namespace vouching for its own node cannot make the
 * addresses that node lists (possibly copied from another namespace's application) refuse
 * tunnels to the application that really has them.
 */
export function tableRelays(realm: Realm, self: string, routes: readonly Route[]): RelayMark[] {
  const upstream = new Set(egressRelays(realm, self));
  const marks = new Map<string, RelayMark>();
  for (const r of routes) {
    const hops = r.hops;
    if (hops === null || hops.length < 2) continue;
    const targetNs = realm.get(r.to)?.metadata?.namespace_name;
    for (let i = 0; i < hops.length - 1; i++) {
      const node = hops[i]?.node;
      if (node === undefined) continue;
      const known = marks.get(node);
      if (known?.aliases === true) continue;
      const ns = realm.get(node)?.metadata?.namespace_name;
      const strong = upstream.has(node) || ns === undefined;
      if (strong) marks.set(node, { node, aliases: true });
      else if (known === undefined && targetNs !== undefined && ns === targetNs)
        marks.set(node, { node, aliases: false });
    }
  }
  return [...marks.values()];
}

/** The nodes that may open links to a relay; `any`: every node of the realm may, and `nodes` is empty. */
export interface LinkPeers {
  any: boolean;
  nodes: string[];
  /**
   * Under shared namespaces, the peers among them that belong to an unshared namespace other than
   * the relay's own, by namespace (namespaces and their nodes in record order). Left out when there
   * are none, and so always without shared namespaces.
   */
  tenants?: TenantPeers[];
}

/** The link peers of one unshared namespace: one tenant, as the relay counts its share of the tunnel pool. */
export interface TenantPeers {
  namespace: string;
  nodes: string[];
}

/**
 * Who may open a relay link to `self`: the nodes whose dial its gateways accept
 * (docs/contract/routing.md §1.1), the only ones any route has as the hop before it. A relay that
 * took links from every certified relay of the realm let a tenant's relay, certified for its own
 * node, use it to reach what it may dial, past the `match` that keeps that tenant out.
 *
 * `tenants` groups the peers of unshared namespaces: a relay bounds what each such namespace holds
 * of its tunnel pool (docs/contract/edge-api.md §5.2), since a tenant that may dial a shared relay
 * could otherwise fill it with the links and streams of nodes it registered itself. Namespace-less
 * records (the admin's), shared namespaces (the operator's relays, which carry every tenant's
 * tunnels) and the relay's own namespace are not counted.
 */
export function linkPeers(realm: Realm, self: string): LinkPeers {
  const nodes: string[] = [];
  const shared = sharedNamespacesOf(realm);
  const ownNs = realm.get(self)?.metadata?.namespace_name;
  const tenants = new Map<string, string[]>();
  let others = 0;
  for (const r of realm.records) {
    if (r.type !== "node" || r.name === self) continue;
    others++;
    if (!canDial(realm, r.name, self)) continue;
    nodes.push(r.name);
    const ns = r.metadata?.namespace_name;
    if (shared === null || ns === undefined || ns === ownNs || shared.has(ns)) continue;
    const list = tenants.get(ns);
    if (list === undefined) tenants.set(ns, [r.name]);
    else list.push(r.name);
  }
  const out: LinkPeers = nodes.length === others ? { any: true, nodes: [] } : { any: false, nodes };
  if (tenants.size > 0) out.tenants = [...tenants].map(([namespace, names]) => ({ namespace, nodes: names }));
  return out;
}
