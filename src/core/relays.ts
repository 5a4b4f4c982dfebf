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
import { egressRelays, type Realm } from "./realm.ts";
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
