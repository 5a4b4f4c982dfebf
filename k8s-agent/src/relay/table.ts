// The relay's view of the realm: the route table the edge computed for this
// relay's own record. It is the whole allow-list: a destination not in it, or
// a port that is not one of that node's gateway ports, is never dialed.
import { type Hop, parseAddress } from "@hopway/core/schema";
import type { RouteTable } from "@hopway/core/wire";

export interface Dialable {
  /** `ipv4://...` etc. as in the record, for logs. */
  address: string;
  host: string;
  port: number;
  /** Set for unix sockets. */
  path: string;
}

export type Lookup =
  | { ok: true; next: Hop; nextAddresses: readonly Dialable[]; direct: boolean; hops: readonly Hop[] }
  | { ok: false; reason: "unknown_node" | "forbidden"; detail: string };

function dialable(address: string): Dialable | undefined {
  const p = parseAddress(address);
  if (typeof p === "string") return undefined;
  return { address, host: p.host, port: p.port, path: p.path };
}

function addressesOf(hop: Hop): Dialable[] {
  const out: Dialable[] = [];
  for (const a of [hop.address, ...hop.alternatives]) {
    if (a === null) continue;
    const d = dialable(a);
    if (d) out.push(d);
  }
  return out;
}

/** `host:port` (or the unix path) an address dials, so aliases of one listener compare equal. */
function endpointKey(d: Dialable): string {
  return d.path ? `unix:${d.path}` : `${d.host.toLowerCase()}:${d.port}`;
}

/** Ports per target node whose lookup decision is kept (a node has a few gateway ports). */
const MAX_CACHED_PORTS = 64;

export class RoutingTable {
  private byTarget = new Map<string, RouteTable["routes"][number]>();
  private names = new Set<string>();
  /** Who may open links to this relay (the table's `peers`); undefined: the table did not say. */
  private linkFrom: ReadonlySet<string> | "any" | undefined;
  /** The namespace of each link peer of an unshared namespace (the table's `peers.tenants`). */
  private tenantOf = new Map<string, string>();
  private current: RouteTable | undefined;
  /**
   * Nodes this table routes THROUGH (an intermediate hop of some route) and the endpoints
   * they are dialed on: relay listeners. A tunnel never ends at one, or a client could
   * nest tunnels (a raw tunnel to a relay, a CONNECT inside it, and so on) and pass any
   * number of relays, each of which sees a fresh request with no Hopway-Hops.
   */
  private relayNodes = new Set<string>();
  private relayEndpoints = new Set<string>();
  private readonly listeners = new Set<() => void>();
  private viaRelays = false;
  /**
   * Decisions of `lookup` for the current table, by target node and then port: every
   * connection to the same target asks the same question, and the answer only changes with
   * the table. Only nodes the table routes to are kept, at most MAX_CACHED_PORTS ports each,
   * so clients naming other nodes or ports cannot grow it.
   */
  private decided = new Map<string, Map<number, Lookup>>();

  constructor(private readonly self: string) {}

  get version(): number | undefined {
    return this.current?.version;
  }
  get table(): RouteTable | undefined {
    return this.current;
  }

  /** Replaces the table. Callers (the edge client) guarantee versions only move forward. */
  set(table: RouteTable): void {
    if (table.node !== this.self) throw new Error(`route table is for '${table.node}', this relay is '${this.self}'`);
    const byTarget = new Map<string, RouteTable["routes"][number]>();
    const relayNodes = new Set<string>();
    const relayEndpoints = new Set<string>();
    // Which intermediates are relays, and whose addresses mark aliases, is the table's to say: a
    // tenant can make another namespace's application an intermediate (core/relays.ts). A table
    // without the list (an edge of an earlier release) counts every intermediate, by both.
    const marks = table.relays === undefined ? undefined : new Map(table.relays.map((m) => [m.node, m.aliases]));
    for (const r of table.routes) {
      // A group expands to one route per member; members are addressed by their own names.
      if (r.from === this.self && !byTarget.has(r.to)) byTarget.set(r.to, r);
      const hops = r.hops ?? [];
      for (const h of hops.slice(0, -1)) {
        const aliases = marks === undefined ? true : marks.get(h.node);
        if (aliases === undefined) continue;
        relayNodes.add(h.node);
        if (aliases) for (const d of addressesOf(h)) relayEndpoints.add(endpointKey(d));
      }
    }
    const names = new Set<string>();
    for (const r of table.routes) {
      names.add(r.from);
      names.add(r.to);
      for (const h of r.hops ?? []) names.add(h.node);
    }
    this.byTarget = byTarget;
    this.viaRelays = [...byTarget.values()].some((r) => (r.hops?.length ?? 0) > 1);
    this.relayNodes = relayNodes;
    this.relayEndpoints = relayEndpoints;
    this.names = names;
    this.linkFrom = table.peers === undefined ? undefined : table.peers.any ? "any" : new Set(table.peers.nodes);
    const tenantOf = new Map<string, string>();
    for (const t of table.peers?.tenants ?? []) for (const n of t.nodes) tenantOf.set(n, t.namespace);
    this.tenantOf = tenantOf;
    this.current = table;
    // Decisions about the old table are void: a removed route is refused from the next connection on.
    this.decided = new Map();
    for (const l of this.listeners) l();
  }

  /** Whether `name` is a node of the current table (a route's end or hop): links are only kept to these. */
  has(name: string): boolean {
    return name !== this.self && this.names.has(name);
  }

  /**
   * Whether relay `name` may open links to this one: a node the table lists whose dial this relay's
   * gateways accept (the table's `peers`). A table without `peers` (an earlier edge) takes any node
   * it lists.
   */
  mayLink(name: string): boolean {
    if (!this.has(name)) return false;
    const from = this.linkFrom;
    return from === undefined || from === "any" || from.has(name);
  }

  /**
   * The tenant whose share of the tunnel pool links and streams from relay `name` count against:
   * its namespace when the table lists it under `peers.tenants` (an unshared namespace other than
   * this relay's), else undefined (the admin's, a shared namespace's, this relay's own namespace's,
   * or a table that does not say).
   */
  tenant(name: string): string | undefined {
    return this.tenantOf.get(name);
  }

  /** Whether some route leaves this relay through another relay: then it needs links (a certificate). */
  get needsLinks(): boolean {
    return this.viaRelays;
  }

  /** Called after every `set`; returns an unsubscribe function. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Decides whether `node:port` may be reached from here and through which next hop. The
   * answer is shared between calls until the table changes: callers must not modify it.
   */
  lookup(node: string, port: number): Lookup {
    let ports = this.decided.get(node);
    const known = ports?.get(port);
    if (known !== undefined) return known;
    const found = this.decide(node, port);
    if (this.byTarget.has(node)) {
      if (ports === undefined) {
        ports = new Map();
        this.decided.set(node, ports);
      }
      if (ports.size < MAX_CACHED_PORTS) ports.set(port, found);
    }
    return found;
  }

  private decide(node: string, port: number): Lookup {
    if (node === this.self) return { ok: false, reason: "forbidden", detail: `'${node}' is this relay` };
    const route = this.byTarget.get(node);
    if (!route) return { ok: false, reason: "unknown_node", detail: `no node '${node}' in this relay's route table` };
    const hops = route.hops;
    if (!hops || hops.length === 0) {
      return {
        ok: false,
        reason: "forbidden",
        detail: `no route to '${node}'${route.reason ? ` (${route.reason})` : ""}`,
      };
    }
    const last = hops[hops.length - 1] as Hop;
    if (last.address === null) {
      return { ok: false, reason: "forbidden", detail: `'${node}' is a client; clients are never dialed` };
    }
    const targetAddrs = addressesOf(last);
    // Only the ports of the target's gateway addresses: the relay is never an open proxy.
    const allowed = port === 0 ? targetAddrs : targetAddrs.filter((a) => a.port === port);
    if (allowed.length === 0) {
      return { ok: false, reason: "forbidden", detail: `port ${port} is not a gateway port of '${node}'` };
    }
    const next = hops[0] as Hop;
    if (this.relayNodes.has(node) || allowed.some((a) => this.relayEndpoints.has(endpointKey(a)))) {
      return {
        ok: false,
        reason: "forbidden",
        detail: `'${node}' is a relay listener; a tunnel ends at an application, never at a relay`,
      };
    }
    if (hops.length === 1) return { ok: true, next, nextAddresses: allowed, direct: true, hops };
    if (next.address === null) return { ok: false, reason: "forbidden", detail: `next hop '${next.node}' is a client` };
    return { ok: true, next, nextAddresses: addressesOf(next), direct: false, hops };
  }
}
