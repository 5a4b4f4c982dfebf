// Per-isolate cache of realms. The RealmObject stores records; each Worker
// isolate keeps a copy of the realm at some version, catches up by delta from
// the object's changelog, and computes routes itself. So a version change
// costs the single Durable Object one small delta read per isolate instead of
// 1,000 route-table computations, and repeated lookups at one version compute
// nothing: the built realm, route tables and single routes are memoised on
// the immutable view of that version.

import { sharedNamespaces } from "../core/address-policy.ts";
import {
  buildRealm,
  type HopwayRecord,
  linkPeers,
  type Realm,
  type Route,
  type RouteTable,
  resolveRoute,
  routeTable,
  tableRelays,
} from "../core/index.ts";
import { unwrap } from "./http.ts";
import type { Caller, ChangesWithTrust, RecordPageWithTrust, Result } from "./types.ts";

/** The RPC subset of RealmObject this cache uses (kept narrow so tests can reason about it). */
export interface RealmRpc {
  changes(caller: Caller, epoch: string | null, since: number | null): Promise<Result<{ changes: ChangesWithTrust }>>;
  waitForChange(
    caller: Caller,
    epoch: string | null,
    since: number,
    ms: number,
  ): Promise<Result<{ changes: ChangesWithTrust }>>;
  page(caller: Caller, after: string | null, limit: number): Promise<Result<{ page: RecordPageWithTrust }>>;
}

const PAGE = 2_000;
const MAX_REALMS = 32;
/** Encoded route tables kept per view, by size: a table at 10,000 records is ~5 MB, and an isolate has 128 MB. */
const MAX_TABLE_BYTES_PER_VIEW = 24 * 1024 * 1024;
const MAX_ROUTES_PER_VIEW = 65_536;

const encoder = new TextEncoder();

/** What the cache saved; only tests read these (the Worker exposes them nowhere). */
export const cacheStatsForTest = { builds: 0, tables: 0, tableHits: 0, routes: 0, routeHits: 0, resets: 0, deltas: 0 };

/** An immutable snapshot of one realm at one version, with lazily computed, memoised derivations. */
export class RealmView {
  private built: Realm | undefined;
  private sorted: HopwayRecord[] | undefined;
  private readonly tables = new Map<string, Uint8Array<ArrayBuffer>>();
  private tableBytes = 0;
  private readonly routes = new Map<string, Route>();

  constructor(
    readonly epoch: string,
    readonly version: number,
    readonly records: ReadonlyMap<string, HopwayRecord>,
    /** The relay CA certificates at this version (docs/identity.md); a change is a new version. */
    readonly trustBundle: readonly string[] = [],
    /** The shared namespaces at this version (docs/contract/records.md §2.3); a change is a new version. */
    readonly shared: readonly string[] | null = null,
  ) {}

  /** Strong validator of everything derived from this view. */
  get etag(): string {
    return `"${this.epoch}.${this.version}"`;
  }

  get realm(): Realm {
    if (this.built === undefined) {
      this.built = buildRealm([...this.records.values()], {}, sharedNamespaces(this.shared));
      cacheStatsForTest.builds++;
    }
    return this.built;
  }

  list(): HopwayRecord[] {
    this.sorted ??= [...this.records.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return this.sorted;
  }

  /** The route table as UTF-8 JSON, serialised and encoded once per node per version (bounded by bytes). */
  /**
   * Whether GET /route-tables/{node} says the same at `later` as here, apart from the version it
   * carries: a change elsewhere in the realm (another tenant's records) leaves it alone.
   */
  sameRouteTable(later: RealmView, node: string): boolean {
    if (later.epoch !== this.epoch || !this.records.has(node) || !later.records.has(node)) return false;
    const a = this.routeTableBody(node);
    const b = later.routeTableBody(node);
    // The body starts {"node":…,"version":N, (below); what follows is compared byte for byte.
    const head = (v: number) => encoder.encode(`{"node":${JSON.stringify(node)},"version":${v},`).byteLength;
    const from = head(this.version);
    const to = head(later.version);
    if (a.byteLength - from !== b.byteLength - to) return false;
    for (let i = 0; i < a.byteLength - from; i++) if (a[from + i] !== b[to + i]) return false;
    return true;
  }

  routeTableBody(node: string): Uint8Array<ArrayBuffer> {
    const hit = this.tables.get(node);
    if (hit !== undefined) {
      cacheStatsForTest.tableHits++;
      // Re-insert: eviction drops the least recently used first.
      this.tables.delete(node);
      this.tables.set(node, hit);
      return hit;
    }
    // The body of GET /route-tables/{node} (src/edge/api.ts), rendered once per version and node.
    const routes = routeTable(this.realm, node);
    const table: RouteTable = {
      node,
      version: this.version,
      routes,
      trust_bundle: [...this.trustBundle],
      relays: tableRelays(this.realm, node, routes),
      peers: linkPeers(this.realm, node),
    };
    const text = JSON.stringify(table);
    const body = encoder.encode(text) as Uint8Array<ArrayBuffer>;
    cacheStatsForTest.tables++;
    if (body.byteLength <= MAX_TABLE_BYTES_PER_VIEW) {
      while (this.tableBytes + body.byteLength > MAX_TABLE_BYTES_PER_VIEW && this.tables.size > 0) {
        const [oldest, bytes] = this.tables.entries().next().value as [string, Uint8Array<ArrayBuffer>];
        this.tables.delete(oldest);
        this.tableBytes -= bytes.byteLength;
      }
      this.tables.set(node, body);
      this.tableBytes += body.byteLength;
    }
    return body;
  }

  route(from: string, to: string): Route {
    const key = `${from}\u0000${to}`;
    const hit = this.routes.get(key);
    if (hit !== undefined) {
      cacheStatsForTest.routeHits++;
      return hit;
    }
    const route = resolveRoute(this.realm, from, to);
    cacheStatsForTest.routes++;
    if (this.routes.size >= MAX_ROUTES_PER_VIEW) this.routes.delete(this.routes.keys().next().value as string);
    this.routes.set(key, route);
    return route;
  }
}

const views = new Map<string, RealmView>();

/**
 * Stores `view` unless this isolate already holds the same or a newer version,
 * and returns the view to use: concurrent requests that reach one version
 * share one view, so the realm is built and each table computed once.
 */
function remember(realm: string, view: RealmView): RealmView {
  const prev = views.get(realm);
  if (prev !== undefined && prev.epoch === view.epoch) {
    if (prev.version === view.version) return prev;
    // Requests may finish out of order: never go back.
    if (prev.version > view.version) return view;
  }
  views.delete(realm);
  views.set(realm, view);
  if (views.size > MAX_REALMS) views.delete(views.keys().next().value as string);
  return view;
}

/** The stored view when it already is at the version `changes` leads to (nothing to apply). */
function known(realm: string, changes: ChangesWithTrust): RealmView | undefined {
  const prev = views.get(realm);
  return prev !== undefined && prev.epoch === changes.epoch && prev.version === changes.version ? prev : undefined;
}

async function apply(
  rpc: RealmRpc,
  caller: Caller,
  base: RealmView | undefined,
  changes: ChangesWithTrust,
): Promise<RealmView> {
  for (let round = 0; ; round++) {
    if (changes.kind === "current" && base !== undefined) return base;
    if (changes.kind === "delta" && base !== undefined) {
      const next = new Map(base.records);
      for (const c of changes.changes) {
        if (c.record === null) next.delete(c.name);
        else next.set(c.name, c.record);
      }
      cacheStatsForTest.deltas++;
      return new RealmView(changes.epoch, changes.version, next, changes.trust_bundle, changes.shared_namespaces);
    }
    // Reset (or nothing to apply a delta to): page through the records, then
    // catch up on whatever changed while paging.
    cacheStatsForTest.resets++;
    const all = new Map<string, HopwayRecord>();
    let after: string | null = null;
    let first: RecordPageWithTrust | undefined;
    do {
      const { page }: { page: RecordPageWithTrust } = unwrap(await rpc.page(caller, after, PAGE));
      first ??= page;
      for (const r of page.records) all.set(r.name, r);
      after = page.next;
    } while (after !== null);
    base = new RealmView(first.epoch, first.version, all, first.trust_bundle, first.shared_namespaces);
    if (round > 3) return base;
    changes = unwrap(await rpc.changes(caller, base.epoch, base.version)).changes;
  }
}

/** This isolate's latest view of the realm, without asking the Durable Object. */
export function peekView(realm: string): RealmView | undefined {
  return views.get(realm);
}

/** The realm as of now (one cheap RPC to learn what changed). */
export async function currentView(rpc: RealmRpc, caller: Caller, realm: string): Promise<RealmView> {
  const cached = views.get(realm);
  const { changes } = unwrap(await rpc.changes(caller, cached?.epoch ?? null, cached?.version ?? null));
  return known(realm, changes) ?? remember(realm, await apply(rpc, caller, cached, changes));
}

/** Holds until the realm moves past `view` or `ms` pass; returns the newer view, or `view` itself on timeout. */
export async function nextView(
  rpc: RealmRpc,
  caller: Caller,
  realm: string,
  view: RealmView,
  ms: number,
): Promise<RealmView> {
  const { changes } = unwrap(await rpc.waitForChange(caller, view.epoch, view.version, ms));
  if (changes.kind === "current") return view;
  return known(realm, changes) ?? remember(realm, await apply(rpc, caller, view, changes));
}

/** Forgets every cached realm, as a fresh isolate would: tests use it to take the reset path. */
export function clearRealmCacheForTest(): void {
  views.clear();
}
