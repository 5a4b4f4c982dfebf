// Records-sync mode against an in-memory edge that speaks the real wire shapes of
// GET /changes and GET /nodes (paging, "epoch.version" ETags, changelog floor, epochs),
// with an injected fetch and clock so every ordering is deterministic.
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type HopwayRecord, type Route, referenceResolver } from "@hopway/core";
import { generateTopology, prng } from "@hopway/core/testing/generate";
import { type ChangesAnswer, type RouteTable, RouteTableSchema } from "@hopway/core/wire";
import { describe, expect, it } from "vitest";
import { RealmView } from "../../../../src/edge/realm-cache.ts";
import { IMPOSTOR_RELAY, topologyRecords } from "../../../../test/support/topologies.ts";
import { parseConfig } from "../../../src/config.ts";
import { EdgeClient } from "../../../src/edge/client.ts";
import { computeTable, parseEtag, SNAPSHOT_FILE } from "../../../src/edge/records-sync.ts";
import { FakeClock } from "./fake-clock.ts";

/** The edge's record store, modelled on durable-objects/records.ts (changelog with a floor, epochs). */
class FakeEdge {
  epoch = "a1";
  version = 1;
  records = new Map<string, HopwayRecord>();
  private log: Array<{ version: number; name: string }> = [];
  floor = 0;
  requests: string[] = [];
  bytes = 0;
  /** Called after each /nodes page is served (to change the realm mid-reload). */
  afterPage: ((n: number) => void) | undefined;
  /** Replaces the answer of the next requests (faults). */
  faults: Array<() => Response> = [];
  /** Sent with every /changes answer when set, as the edge sends its relay trust bundle. */
  trustBundle: string[] | undefined;
  /** The realm's shared namespaces, sent with /changes and /nodes when set (an older edge sends none). */
  shared: string[] | null | undefined;
  private waiters: Array<() => void> = [];
  down = false;

  constructor(records: HopwayRecord[]) {
    for (const r of records) this.records.set(r.name, r);
  }
  put(r: HopwayRecord) {
    this.records.set(r.name, r);
    this.log.push({ version: ++this.version, name: r.name });
    this.wake();
  }
  del(name: string) {
    this.records.delete(name);
    this.log.push({ version: ++this.version, name });
    this.wake();
  }
  /** The admin changes the shared namespaces: a realm version with no record in it, as the edge does. */
  setShared(list: string[] | null) {
    this.shared = list;
    this.version++;
    this.wake();
  }
  /** The edge's storage recreated: a new epoch, versions start over. */
  recreate(records: HopwayRecord[]) {
    this.epoch = "b2";
    this.version = 2;
    this.log = [];
    this.floor = 0;
    this.records = new Map(records.map((r) => [r.name, r]));
    this.wake();
  }
  private wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
  changes(epoch: string | null, since: number | null): ChangesAnswer {
    const base = { epoch: this.epoch, version: this.version };
    if (epoch !== this.epoch || since === null || since > this.version) return { kind: "reset", ...base };
    if (since === this.version) return { kind: "current", ...base };
    if (since < this.floor) return { kind: "reset", ...base };
    const names = [...new Set(this.log.filter((l) => l.version > since).map((l) => l.name))];
    return { kind: "delta", ...base, changes: names.map((name) => ({ name, record: this.records.get(name) ?? null })) };
  }
  private json(body: unknown, etag?: string): Response {
    const text = JSON.stringify(body);
    this.bytes += Buffer.byteLength(text);
    return new Response(text, {
      status: 200,
      headers: { "content-type": "application/json", ...(etag ? { etag } : {}) },
    });
  }
  pagesServed = 0;
  fetch: typeof fetch = async (input, init) => {
    const url = new URL(String(input));
    this.requests.push(url.pathname.replace("/v1/realms/r", "") + url.search);
    if (this.down) throw new TypeError("fetch failed");
    const fault = this.faults.shift();
    if (fault) return fault();
    const q = url.searchParams;
    if (url.pathname.endsWith("/changes")) {
      const since = q.has("since") ? Number(q.get("since")) : null;
      const epoch = q.get("epoch");
      const wait = Number(q.get("wait") ?? 0);
      if (wait > 0 && epoch === this.epoch && since === this.version) {
        await new Promise<void>((resolve, reject) => {
          this.waiters.push(resolve);
          init?.signal?.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")));
        });
      }
      const answer = {
        ...this.changes(epoch, since),
        ...(this.trustBundle !== undefined ? { trust_bundle: this.trustBundle } : {}),
        ...(this.shared !== undefined ? { shared_namespaces: this.shared } : {}),
      };
      return this.json(answer);
    }
    if (url.pathname.endsWith("/nodes")) {
      const limit = Number(q.get("limit"));
      const after = q.get("after") ?? "";
      const sorted = [...this.records.values()]
        .filter((r) => r.name > after)
        .sort((a, b) => (a.name < b.name ? -1 : 1));
      const page = sorted.slice(0, limit);
      const next = sorted.length > limit ? (page[page.length - 1]?.name ?? null) : null;
      const body = {
        version: this.version,
        records: page,
        next,
        ...(this.shared !== undefined ? { shared_namespaces: this.shared } : {}),
      };
      const res = this.json(body, `"${this.epoch}.${this.version}"`);
      this.afterPage?.(++this.pagesServed);
      return res;
    }
    return new Response("no", { status: 404 });
  };
}

const sortRoutes = (routes: Route[]) => [...routes].sort((a, b) => (a.to < b.to ? -1 : a.to > b.to ? 1 : 0));

function setup(
  records: HopwayRecord[],
  node: string,
  extra: Partial<ConstructorParameters<typeof EdgeClient>[0]> = {},
) {
  const edge = new FakeEdge(records);
  const clock = new FakeClock();
  const applied: Array<{ version: number; source: string; table: RouteTable }> = [];
  const c = new EdgeClient({
    url: "http://edge.invalid",
    realm: "r",
    token: "t",
    node,
    records: [],
    leaseSeconds: 30,
    waitSeconds: 10,
    sync: "records",
    syncPageSize: 7,
    onTable: (table, source) => applied.push({ version: table.version, source, table }),
    fetch: edge.fetch,
    clock,
    random: () => 0.5,
    ...extra,
  });
  const sync = c.recordsSync;
  if (!sync) throw new Error("records mode not enabled");
  return { edge, clock, applied, c, sync };
}

const realm = generateTopology({ records: 120, seed: 7 });
type NodeRecord = Exclude<HopwayRecord, { type: "group" }>;
const node = (realm.find((r) => r.type !== "group" && r.metadata?.kind === "relay") as NodeRecord).name;
const apps = realm.filter((r): r is NodeRecord => r.type !== "group" && r.metadata?.kind === "app");
const tick = () => new Promise((r) => setImmediate(r));

describe("records sync", () => {
  it("hands on the trust bundle each /changes answer carries (docs/identity.md)", async () => {
    const bundles: string[][] = [];
    const { edge, sync } = setup(realm, node, { onTrustBundle: (b) => bundles.push(b) });
    await sync.step();
    expect(bundles).toEqual([]); // this edge sends none
    edge.trustBundle = ["CA-1", "CA-2"];
    const [a0] = apps as [NodeRecord];
    edge.del(a0.name);
    await sync.step();
    expect(bundles.at(-1)).toEqual(["CA-1", "CA-2"]);

    // An answer older than the one whose bundle was passed on (a retry that crossed a newer
    // long-poll) carries an older bundle: it must not bring back a retired CA.
    const stale = (version: number, bundle: string[]) => () =>
      new Response(JSON.stringify({ kind: "current", epoch: edge.epoch, version, trust_bundle: bundle }), {
        status: 200,
        headers: { "content-type": "application/json" },
      });
    const passed = bundles.length;
    edge.faults.push(stale(edge.version - 1, ["CA-1"]));
    await sync.fetchChanges(0);
    expect(bundles).toHaveLength(passed);
    // The same version, or a newer one, is passed on.
    edge.trustBundle = ["CA-2"];
    await sync.fetchChanges(0);
    expect(bundles.at(-1)).toEqual(["CA-2"]);
  });

  it("resolves under the realm's shared namespaces, from changes, pages and its own snapshot", async () => {
    // A tenant's node dressed as a regional relay: relaysvr2's advertise_relay names no namespace.
    const records = [...topologyRecords("cross-region.yaml"), IMPOSTOR_RELAY];
    const shared = ["namespace_1", "namespace_2", "namespace_3"];
    const viaImpostor = (t: RouteTable | undefined) =>
      (t?.routes ?? []).filter((r) => r.to !== "aaa-impostor" && r.hops?.some((h) => h.node === "aaa-impostor"));
    const dir = mkdtempSync(join(tmpdir(), "hopway-records-sync-shared-"));
    const { edge, applied, sync, c } = setup(records, "relaysvr2", { dataDir: dir });
    await sync.step();
    expect(viaImpostor(applied.at(-1)?.table).length).toBeGreaterThan(0);

    edge.setShared(shared);
    await sync.step();
    sync.rebuildNow();
    const want = referenceResolver(records, new Set(shared)).routeTable("relaysvr2");
    expect(applied.at(-1)?.version).toBe(edge.version);
    expect(sortRoutes(applied.at(-1)?.table.routes ?? [])).toEqual(sortRoutes(want));
    expect(viaImpostor(applied.at(-1)?.table)).toEqual([]);
    await c.flush();

    // Restarted with the edge down: the snapshot keeps the setting.
    const second = setup(records, "relaysvr2", { dataDir: dir });
    second.edge.down = true;
    await second.c.start();
    expect(second.applied.map((a) => a.source)).toEqual(["disk"]);
    expect(viaImpostor(second.applied[0]?.table)).toEqual([]);
    await second.c.stop(false);

    // A fresh replica of a realm that already shares: its first table is right.
    const third = setup(records, "relaysvr2");
    third.edge.shared = shared;
    await third.sync.step();
    expect(third.applied).toHaveLength(1);
    expect(sortRoutes(third.applied[0]?.table.routes ?? [])).toEqual(sortRoutes(want));
  });

  it("replaces the relay's table at the same version when it learns the setting after the records (an upgraded agent's snapshot)", async () => {
    // A tenant's node dressed as a regional relay: relaysvr2's advertise_relay names no namespace.
    const records = [...topologyRecords("cross-region.yaml"), IMPOSTOR_RELAY];
    const shared = ["namespace_1", "namespace_2", "namespace_3"];
    const want = sortRoutes(referenceResolver(records, new Set(shared)).routeTable("relaysvr2"));
    const viaImpostor = (t: RouteTable | undefined) =>
      (t?.routes ?? []).filter((r) => r.to !== "aaa-impostor" && r.hops?.some((h) => h.node === "aaa-impostor"));
    // The release before the setting saved its snapshot at the version where the admin set it.
    const snapshot = JSON.stringify({ epoch: "a1", version: 5, saved_at: 1, records });

    // Caught up by a quiet long-poll: "current" at the version held, now with the setting.
    const dir = mkdtempSync(join(tmpdir(), "hopway-records-sync-upgrade-"));
    writeFileSync(join(dir, SNAPSHOT_FILE), snapshot);
    const { edge, applied, sync, c, clock } = setup(records, "relaysvr2", { dataDir: dir });
    edge.version = 5;
    edge.shared = shared;
    expect(await sync.loadPersisted()).toBe(true);
    expect(viaImpostor(applied.at(-1)?.table).length).toBeGreaterThan(0);
    // The fake edge holds a long-poll at the current version; the real one answers this at its end.
    const quiet = () => Response.json({ kind: "current", epoch: "a1", version: 5, shared_namespaces: shared });
    edge.faults.push(quiet);
    await sync.step();
    clock.advance(1000);
    await tick();
    expect(applied.map((a) => [a.source, a.version])).toEqual([
      ["disk", 5],
      ["edge", 5],
    ]);
    expect(sortRoutes(applied.at(-1)?.table.routes ?? [])).toEqual(want);
    expect(c.table?.routes.map((r) => r.to).sort()).toEqual(want.map((r) => r.to));
    expect(viaImpostor(c.table)).toEqual([]);
    // A second quiet answer changes nothing, and the snapshot now holds the setting.
    edge.faults.push(quiet);
    await sync.step();
    clock.advance(1000);
    await tick();
    expect(applied).toHaveLength(2);
    await c.flush();
    expect(JSON.parse(readFileSync(join(dir, SNAPSHOT_FILE), "utf8")).shared_namespaces).toEqual(shared);

    // Caught up by a reload at the same version (the edge answered "reset"): the same.
    const dir2 = mkdtempSync(join(tmpdir(), "hopway-records-sync-upgrade-"));
    writeFileSync(join(dir2, SNAPSHOT_FILE), snapshot);
    const second = setup(records, "relaysvr2", { dataDir: dir2 });
    second.edge.version = 5;
    second.edge.shared = shared;
    second.edge.faults.push(() => Response.json({ kind: "reset", epoch: "a1", version: 5, shared_namespaces: shared }));
    expect(await second.sync.loadPersisted()).toBe(true);
    await second.sync.step();
    expect(second.applied.map((a) => [a.source, a.version])).toEqual([
      ["disk", 5],
      ["edge", 5],
    ]);
    expect(viaImpostor(second.c.table)).toEqual([]);
  });

  it("loads the record list in pages and computes the same table as an independent resolver", async () => {
    const { edge, applied, sync, c } = setup(realm, node);
    await sync.step();
    const pages = edge.requests.filter((r) => r.startsWith("/nodes"));
    expect(pages.length).toBe(Math.ceil(realm.length / 7));
    expect(pages[1]).toMatch(/^\/nodes\?limit=7&after=/);
    expect(applied.map((a) => a.version)).toEqual([1]);
    expect(c.version).toBe(1);
    expect(sync.size).toBe(realm.length);
    const want = referenceResolver(realm).routeTable(node);
    expect(sortRoutes(applied[0]?.table.routes ?? [])).toEqual(sortRoutes(want));
    expect(c.reachable).toBe(true);
  });

  it("applies deltas (add, change, delete), coalesces a burst into one rebuild, and stays equal to the resolver", async () => {
    const { edge, clock, applied, sync } = setup(realm, node, { syncDebounceMs: 150 });
    await sync.step();
    const [a0, a1, a2] = apps as [NodeRecord, NodeRecord, NodeRecord];
    const poll = sync.step(); // a long-poll held by the edge
    await tick();
    expect(edge.requests.at(-1)).toBe("/changes?since=1&epoch=a1&wait=10");
    edge.del(a0.name);
    await poll;
    // Two more changes land inside the debounce window.
    edge.put({ ...a1, metadata: { ...a1.metadata, labels: { tier: "moved" } } });
    await sync.step();
    edge.put({ ...a2, name: "zz-new-app" });
    await sync.step();
    expect(applied.length).toBe(1); // nothing rebuilt yet: still inside the window
    const rebuilds = sync.stats.rebuilds;
    clock.advance(150);
    expect(sync.stats.rebuilds).toBe(rebuilds + 1);
    expect(applied.map((a) => a.version)).toEqual([1, 4]);
    const final = [...edge.records.values()];
    expect(sortRoutes(applied[1]?.table.routes ?? [])).toEqual(sortRoutes(referenceResolver(final).routeTable(node)));
    expect(applied[1]?.table.routes.some((r) => r.to === a0.name)).toBe(false);
    expect(applied[1]?.table.routes.some((r) => r.to === "zz-new-app")).toBe(true);
    // A delta is a few records, not the realm.
    const deltaBytes = edge.bytes;
    edge.put({ ...a1, metadata: { ...a1.metadata, labels: { tier: "again" } } });
    await sync.step();
    expect(edge.bytes - deltaBytes).toBeLessThan(2_000);
  });

  it("handles an edge storage epoch change explicitly: reloads and accepts the restarted versions", async () => {
    const { edge, clock, applied, sync, c } = setup(realm, node);
    await sync.step();
    for (const a of apps.slice(0, 5)) edge.put({ ...a, host: { hostname: `h-${a.name}` } });
    await sync.step();
    clock.advance(1000);
    expect(c.version).toBe(6);
    const smaller = realm.filter((r) => r !== apps[0]);
    edge.recreate(smaller); // epoch b2, version 2 (< 6)
    await sync.step(); // reset → reload → catch-up → build
    expect(sync.epoch).toBe("b2");
    expect(applied.map((a) => a.version)).toEqual([1, 6, 2]);
    expect(c.version).toBe(2);
    expect(sortRoutes(applied[2]?.table.routes ?? [])).toEqual(sortRoutes(referenceResolver(smaller).routeTable(node)));
    // Same epoch afterwards: forward only again.
    expect(c.applyTable({ node, version: 1, routes: [] }, undefined, "edge", clock.now())).toBe(false);
  });

  it("reloads when the changelog was pruned past its version, and makes a reload that straddles changes consistent", async () => {
    const { edge, clock, applied, sync } = setup(realm, node);
    await sync.step();
    for (const a of apps.slice(0, 3)) edge.put({ ...a, host: { hostname: `x-${a.name}` } });
    edge.floor = edge.version; // our since (1) is below the floor now
    let mutated = false;
    const start = edge.pagesServed;
    edge.afterPage = (n) => {
      if (n === start + 2 && !mutated) {
        // Mid-reload: delete a record from a page already read, add one before the cursor.
        mutated = true;
        edge.del((apps[3] as NodeRecord).name);
        edge.put({ ...(apps[4] as NodeRecord), name: "aaa-early" });
      }
    };
    await sync.step();
    clock.advance(1000);
    expect(mutated).toBe(true);
    expect(sync.stats.resets).toBe(2);
    expect(applied.at(-1)?.version).toBe(edge.version);
    const final = [...edge.records.values()];
    expect(sync.size).toBe(final.length);
    expect(sortRoutes(applied.at(-1)?.table.routes ?? [])).toEqual(
      sortRoutes(referenceResolver(final).routeTable(node)),
    );
  });

  it("never lets the version go backwards, whatever order answers arrive in", () => {
    const { applied, sync } = setup(realm, node);
    sync.adoptReload({ epoch: "a1", version: 10, records: new Map(realm.map((r) => [r.name, r])), shared: null });
    sync.rebuildNow();
    const rnd = prng(42);
    const answers: ChangesAnswer[] = [];
    for (let v = 11; v <= 40; v++) {
      const app = apps[v % apps.length] as NodeRecord;
      answers.push({ kind: "delta", epoch: "a1", version: v, changes: [{ name: app.name, record: app }] });
      answers.push({ kind: "current", epoch: "a1", version: v - 5 });
    }
    answers.sort(() => rnd() - 0.5);
    let last = 10;
    for (const a of answers) {
      sync.applyChanges(a, 0);
      expect(sync.version).toBeGreaterThanOrEqual(last);
      last = sync.version ?? last;
      if (rnd() < 0.3) sync.rebuildNow();
    }
    sync.rebuildNow();
    const versions = applied.map((x) => x.version);
    expect(versions).toEqual([...versions].sort((x, y) => x - y));
    expect(new Set(versions).size).toBe(versions.length);
    expect(versions.at(-1)).toBe(40);
    // A reload of the same epoch that is older than the replica is refused.
    expect(sync.adoptReload({ epoch: "a1", version: 39, records: new Map(), shared: null })).toBe(false);
    // A delta from an epoch we are not on is never applied: it asks for a reload.
    const other: ChangesAnswer = { kind: "delta", epoch: "b2", version: 99, changes: [] };
    expect(sync.applyChanges(other, 0)).toBe("reset");
    // "current" at a version the replica does not hold is not a confirmation either.
    expect(sync.applyChanges({ kind: "current", epoch: "a1", version: 41 }, 0)).toBe("reset");
    expect(sync.version).toBe(40);
  });

  it("persists the records snapshot atomically and restarts from it with the edge down, then resumes by delta", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hopway-records-sync-"));
    const first = setup(realm, node, { dataDir: dir });
    await first.sync.step();
    first.edge.put({ ...(apps[0] as NodeRecord), host: { hostname: "moved" } });
    await first.sync.step();
    first.clock.advance(1000);
    await first.c.flush();
    expect(readdirSync(dir)).toEqual([SNAPSHOT_FILE]); // no temp file, no route-table.json
    const snap = JSON.parse(readFileSync(join(dir, SNAPSHOT_FILE), "utf8")) as { epoch: string; version: number };
    expect(snap).toMatchObject({ epoch: "a1", version: 2 });

    const second = setup(realm, node, { dataDir: dir });
    second.edge.down = true;
    await second.c.start();
    expect(second.applied.map((a) => [a.version, a.source])).toEqual([[2, "disk"]]);
    expect(second.applied[0]?.table).toEqual(first.applied.at(-1)?.table);
    await tick();
    expect(second.c.reachable).toBe(false);
    // The edge comes back at a later version: the agent resumes from its snapshot, no reload.
    second.edge.down = false;
    second.edge.version = 2;
    for (const r of first.edge.records.values()) second.edge.records.set(r.name, r);
    second.edge.put({ ...(apps[1] as NodeRecord), host: { hostname: "later" } });
    second.clock.advance(60_000); // past the backoff
    for (let i = 0; i < 20 && second.c.version !== 3; i++) {
      await tick();
      second.clock.advance(200);
    }
    expect(second.c.version).toBe(3);
    expect(second.edge.requests.some((r) => r.startsWith("/nodes"))).toBe(false);
    expect(second.edge.requests).toContain("/changes?since=2&epoch=a1&wait=10");
    await second.c.stop(false);
  });

  it("keeps the last good table when the edge answers garbage, errors or a realm without this relay", async () => {
    const { edge, applied, sync, c } = setup(realm, node);
    await sync.step();
    const bad = [
      () => new Response("oops", { status: 500 }),
      () => new Response("{not json", { status: 200 }),
      () => new Response(JSON.stringify({ kind: "delta", epoch: "a1", version: 9, changes: [{ name: "x" }] })),
      () => new Response(JSON.stringify({ kind: "teleport", epoch: "a1", version: 9 })),
    ];
    for (const f of bad) {
      edge.faults.push(f);
      await expect(sync.step()).rejects.toThrow();
    }
    expect(applied.map((a) => a.version)).toEqual([1]);
    expect(c.version).toBe(1);
    // This relay's own record removed: the edge would answer 404 for its table; keep the last one.
    edge.del(node);
    await sync.step();
    sync.rebuildNow();
    expect(applied.map((a) => a.version)).toEqual([1]);
  });

  it("hands on byte-for-byte the routes the edge's /route-tables renders for the same records", async () => {
    const { edge, clock, applied, sync } = setup(realm, node);
    await sync.step();
    // The edge's isolate cache holds its records in arrival order (paged by name, deltas appended):
    // reproduce that order, change a few records, and render the edge's answer with its own code.
    const edgeOrder = new Map([...realm].sort((a, b) => (a.name < b.name ? -1 : 1)).map((r) => [r.name, r]));
    const changed = [
      { ...(apps[5] as NodeRecord), name: "000-first-by-name" },
      { ...(apps[6] as NodeRecord), host: { hostname: "elsewhere" } },
    ];
    for (const r of changed) {
      edge.put(r);
      edgeOrder.set(r.name, r);
    }
    edge.del((apps[7] as NodeRecord).name);
    edgeOrder.delete((apps[7] as NodeRecord).name);
    await sync.step();
    clock.advance(1000);
    const served = RouteTableSchema.parse(
      JSON.parse(new TextDecoder().decode(new RealmView("a1", edge.version, edgeOrder).routeTableBody(node))),
    );
    const mine = applied.at(-1)?.table;
    expect(mine?.version).toBe(served.version);
    expect(mine?.node).toBe(served.node);
    expect(sortRoutes(mine?.routes ?? [])).toEqual(sortRoutes(served.routes));
    expect(mine?.routes.length).toBe(served.routes.length);
  });

  it("computes the same table whatever order the records arrive in", () => {
    const shuffled = [...realm].sort(() => prng(5)() - 0.5).reverse();
    expect(computeTable(shuffled, node, 3)).toEqual(computeTable(realm, node, 3));
    expect(parseEtag('"a1.42"')).toEqual({ epoch: "a1", version: 42 });
    expect(parseEtag('W/"a1.42"')).toEqual({ epoch: "a1", version: 42 });
    expect(parseEtag("nope")).toBeUndefined();
  });

  it("is chosen in the config (edge.sync or HOPWAY_EDGE_SYNC) and defaults to route-table", () => {
    const base = "edge: { url: http://127.0.0.1:1, realm: r, token: t }\nnode: relay-a\n";
    expect(parseConfig(base, {}).edge.sync).toBe("route-table");
    expect(parseConfig(`${base.replace("token: t", "token: t, sync: records")}`, {}).edge.sync).toBe("records");
    expect(parseConfig(base, { HOPWAY_EDGE_SYNC: "records" }).edge.sync).toBe("records");
    expect(() => parseConfig(base, { HOPWAY_EDGE_SYNC: "rsync" })).toThrow(/edge\.sync/);
  });
});
