// Records-sync mode (edge.sync: records): instead of downloading this relay's
// full route table after every change (~5 MB at 10,000 records, ~20 MB at
// 50,000, times every agent), the agent keeps its own replica of the realm's
// records, follows the edge's record changelog (`GET /changes`, a few records
// per change), and computes its route table locally with the same pure core
// the edge uses. The table it hands on has exactly the route-table mode's shape,
// so the relay, metrics and persistence downstream cannot tell the modes apart.
//
// State is (epoch, version, records). Within one epoch the version only moves
// forward; an epoch change (the edge's storage was recreated, versions start
// over) is the one explicit way to accept a lower version, and only after a
// complete reload of the record list.
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  buildRealm,
  canonicalShared,
  linkPeers,
  MAX_RECORDS,
  routeTable,
  SharedNamespacesSchema,
  sharedNamespaces,
  tableRelays,
} from "@hopway/core";
import { type HopwayRecord, RecordSchema } from "@hopway/core/schema";
import {
  type ChangesAnswer,
  ChangesAnswerSchema,
  EpochSchema,
  NodesAnswerSchema,
  type RouteTable,
} from "@hopway/core/wire";
import { z } from "zod";
import type { Logger } from "../log.ts";
import { readText, statusError } from "./body.ts";

export type SyncMode = "route-table" | "records";

export const SNAPSHOT_FILE = "records.json";

/** The replica as this agent saves it in `data_dir` (its own file, not an edge answer). */
const SnapshotSchema = z.object({
  epoch: EpochSchema,
  version: z.number().int().nonnegative(),
  saved_at: z.number(),
  records: z.array(RecordSchema),
  /** Absent in snapshots saved before the setting: every namespace, as those agents computed. */
  shared_namespaces: SharedNamespacesSchema.nullable().optional(),
});

export interface SyncState {
  epoch: string;
  version: number;
  records: Map<string, HopwayRecord>;
  /** The realm's shared namespaces (docs/contract/records.md §2.3); null: every namespace. */
  shared: string[] | null;
}

/** What the records replica needs from the edge client: HTTP, reachability, sleeping, backoff. */
export interface SyncTransport {
  request(path: string, timeoutMs: number): Promise<Response>;
  setReachable(ok: boolean, error?: unknown): void;
  sleep(ms: number): Promise<void>;
  backoff(attempt: number): number;
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  random(): number;
  stopped(): boolean;
}

export interface RecordsSyncOptions {
  node: string;
  waitSeconds: number;
  dataDir?: string | undefined;
  /** Coalesce a burst of changes into one rebuild (default 150 ms). */
  debounceMs?: number;
  /** Records per `GET /nodes` page during a reload (default 5,000; the edge allows up to 100,000). */
  pageSize?: number;
  /**
   * Hands on a computed table. `replace`: take it although its version is not newer than the
   * table in use, because the edge's storage epoch moved (versions started over) or the routes
   * at this version changed (the realm's shared namespaces arrived after the records did).
   */
  onTable(table: RouteTable, source: "edge" | "disk", confirmedAt: number, replace: boolean): void;
  /** The edge confirmed the replica is current (a long-poll that ended with `current`). */
  onConfirmed(at: number): void;
  /** The relay trust bundle each `/changes` answer carries. */
  onTrustBundle?: ((bundle: string[]) => void) | undefined;
  log?: Logger | undefined;
}

function byName(a: HopwayRecord, b: HopwayRecord): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * The route table of `node` over `records`. Records are ordered by name first so the
 * result does not depend on the order deltas arrived in; the edge's answer holds the
 * same routes (order may differ: its cache appends new records).
 */
export function computeTable(
  records: Iterable<HopwayRecord>,
  node: string,
  version: number,
  shared: readonly string[] | null = null,
): RouteTable {
  const realm = buildRealm([...records].sort(byName), {}, sharedNamespaces(shared));
  const routes = routeTable(realm, node);
  return { node, version, routes, relays: tableRelays(realm, node, routes), peers: linkPeers(realm, node) };
}

/** Parses the `"epoch.version"` strong ETag the edge puts on record lists. */
export function parseEtag(etag: string | null): { epoch: string; version: number } | undefined {
  const m = etag === null ? null : /^(?:W\/)?"([0-9a-f]{1,32})\.(\d+)"$/.exec(etag);
  if (!m) return undefined;
  return { epoch: m[1] as string, version: Number(m[2]) };
}

export class RecordsSync {
  private state: SyncState | undefined;
  /** Version of the last table handed on (may lag `state` by the debounce). */
  private builtVersion: number | undefined;
  /** The realm version (and epoch) of the last trust bundle passed on: an older answer's is older. */
  private bundleFrom: { epoch: string; version: number } | undefined;
  private builtEpoch: string | undefined;
  /** Whether the next table handed on must replace the one in use whatever their versions. */
  private replacePending = false;
  private rebuildTimer: unknown;
  private persistChain: Promise<void> = Promise.resolve();
  private persistQueued = false;
  /** Counters for tests and the benchmark. */
  readonly stats = { deltas: 0, resets: 0, pages: 0, rebuilds: 0, ignored: 0, bytes: 0, persisted: 0 };

  constructor(
    private readonly o: RecordsSyncOptions,
    private readonly t: SyncTransport,
  ) {}

  get epoch(): string | undefined {
    return this.state?.epoch;
  }
  get version(): number | undefined {
    return this.state?.version;
  }
  get size(): number {
    return this.state?.records.size ?? 0;
  }

  // ---- applying answers -------------------------------------------------------------------

  /**
   * Applies one `/changes` answer to the replica. Returns what happened; `reset` asks the
   * caller to reload the record list. Stale answers (an older version of this epoch, or a
   * delta for an epoch the replica is not on) are ignored, never applied.
   */
  applyChanges(answer: ChangesAnswer, at: number): "applied" | "current" | "ignored" | "reset" {
    const s = this.state;
    if (answer.kind === "reset") return "reset";
    if (s === undefined || answer.epoch !== s.epoch) {
      // A delta is relative to a base we do not hold (or hold in another epoch): reload.
      this.stats.ignored++;
      return "reset";
    }
    if (answer.version < s.version) {
      this.stats.ignored++;
      this.o.log?.warn("stale changes answer ignored", { version: answer.version, holding: s.version });
      return "ignored";
    }
    // "current" at a version we do not hold means we missed something: reload rather than pretend.
    if (answer.kind === "current" && answer.version > s.version) return "reset";
    // Shared namespaces change only with the version, so an answer at the replica's version
    // carries the replica's setting, except right after a reload: pages may not carry it.
    const shared = answer.shared_namespaces === undefined ? s.shared : canonicalShared(answer.shared_namespaces);
    if (answer.kind === "current" || answer.version === s.version) {
      // A replica loaded from a snapshot an earlier release saved (without the setting) learns
      // it here, at the version it holds: the routes change although the version does not.
      if (this.sharedMoved(s, shared)) this.scheduleRebuild();
      this.o.onConfirmed(at);
      return "current";
    }
    for (const c of answer.changes) {
      if (c.record === null) s.records.delete(c.name);
      else if (c.record.name === c.name) s.records.set(c.name, c.record);
    }
    s.shared = shared;
    s.version = answer.version;
    this.stats.deltas++;
    this.scheduleRebuild();
    return "applied";
  }

  /**
   * Replaces the replica with a freshly paged record list. Same epoch: only forward.
   * Another epoch: accepted (the edge's storage was recreated), flagged for the table.
   */
  adoptReload(next: SyncState): boolean {
    const s = this.state;
    if (s !== undefined && s.epoch === next.epoch && next.version < s.version) {
      this.stats.ignored++;
      this.o.log?.warn("reloaded record list is older than the replica; kept the replica", {
        version: next.version,
        holding: s.version,
      });
      return false;
    }
    if (s !== undefined && s.epoch !== next.epoch) {
      this.o.log?.warn("edge storage epoch changed; replacing the record replica", {
        from: s.epoch,
        to: next.epoch,
        version: next.version,
      });
      this.replacePending = true;
    } else if (s !== undefined && next.version === s.version) {
      this.sharedMoved(s, next.shared);
    }
    this.state = next;
    this.stats.resets++;
    return true;
  }

  /** Takes a new shared-namespaces setting at the replica's version; true if it differs. */
  private sharedMoved(s: SyncState, shared: string[] | null): boolean {
    if (JSON.stringify(shared) === JSON.stringify(s.shared)) return false;
    s.shared = shared;
    this.builtVersion = undefined;
    this.replacePending = true;
    return true;
  }

  private scheduleRebuild(): void {
    if (this.rebuildTimer !== undefined) return;
    // Trailing: the first change starts the window, later ones ride along, so a burst costs
    // one rebuild and a lone change waits at most debounceMs.
    this.rebuildTimer = this.t.setTimeout(() => {
      this.rebuildTimer = undefined;
      this.rebuildNow();
    }, this.o.debounceMs ?? 150);
  }

  /** Builds and hands on the table for the replica's current version (no-op if already built). */
  rebuildNow(source: "edge" | "disk" = "edge", confirmedAt = this.t.now()): RouteTable | undefined {
    if (this.rebuildTimer !== undefined) {
      this.t.clearTimeout(this.rebuildTimer);
      this.rebuildTimer = undefined;
    }
    const s = this.state;
    if (s === undefined) return undefined;
    if (s.version === this.builtVersion && s.epoch === this.builtEpoch) return undefined;
    if (!s.records.has(this.o.node)) {
      // The edge answers 404 for such a route table; keep the last table until the record exists.
      this.o.log?.warn("this relay's record is not in the realm yet; keeping the current table", {
        node: this.o.node,
        version: s.version,
      });
      return undefined;
    }
    const table = computeTable(s.records.values(), this.o.node, s.version, s.shared);
    this.stats.rebuilds++;
    this.builtVersion = s.version;
    this.builtEpoch = s.epoch;
    const replace = this.replacePending;
    this.replacePending = false;
    this.o.onTable(table, source, confirmedAt, replace);
    if (source === "edge") this.persist();
    return table;
  }

  // ---- persistence ------------------------------------------------------------------------

  private persist(): void {
    const dir = this.o.dataDir;
    if (!dir || this.persistQueued) return;
    // At most one write in flight and one queued: a burst of versions writes the latest once,
    // and the serial chain means an older snapshot can never land after a newer one.
    this.persistQueued = true;
    this.persistChain = this.persistChain.then(async () => {
      this.persistQueued = false;
      const s = this.state;
      if (s === undefined) return;
      const body = JSON.stringify({
        epoch: s.epoch,
        version: s.version,
        saved_at: this.t.now(),
        records: [...s.records.values()],
        shared_namespaces: s.shared,
      });
      try {
        await mkdir(dir, { recursive: true });
        const file = join(dir, SNAPSHOT_FILE);
        const tmp = `${file}.${process.pid}.${Math.floor(this.t.random() * 1e9)}.tmp`;
        await writeFile(tmp, body, { mode: 0o600 });
        await rename(tmp, file);
        this.stats.persisted++;
      } catch (err) {
        this.o.log?.warn("could not persist the records snapshot", { error: String(err) });
      }
    });
  }

  flush(): Promise<void> {
    return this.persistChain;
  }

  /** Starts from the persisted snapshot; true when it produced a table. */
  async loadPersisted(): Promise<boolean> {
    const dir = this.o.dataDir;
    if (!dir) return false;
    let text: string;
    try {
      text = await readFile(join(dir, SNAPSHOT_FILE), "utf8");
    } catch {
      return false;
    }
    try {
      const snap = SnapshotSchema.parse(JSON.parse(text));
      const records = new Map<string, HopwayRecord>();
      for (const r of snap.records) records.set(r.name, r);
      const shared = canonicalShared(snap.shared_namespaces);
      if (!this.adoptReload({ epoch: snap.epoch, version: snap.version, records, shared })) return false;
      return this.rebuildNow("disk", snap.saved_at) !== undefined;
    } catch (err) {
      this.o.log?.warn("persisted records snapshot unreadable; ignoring it", { error: String(err) });
      return false;
    }
  }

  // ---- talking to the edge ----------------------------------------------------------------

  private async getJson(path: string, timeoutMs: number): Promise<{ body: unknown; etag: string | null }> {
    const res = await this.t.request(path, timeoutMs);
    if (!res.ok) throw await statusError(res);
    const text = await readText(res);
    this.stats.bytes += Buffer.byteLength(text);
    return { body: JSON.parse(text) as unknown, etag: res.headers.get("etag") };
  }

  /** One `/changes` request; `wait` 0 asks without holding. */
  async fetchChanges(wait: number): Promise<ChangesAnswer> {
    const s = this.state;
    const q = new URLSearchParams();
    if (s !== undefined) {
      q.set("since", String(s.version));
      q.set("epoch", s.epoch);
      if (wait > 0) q.set("wait", String(wait));
    }
    const qs = q.toString();
    const { body } = await this.getJson(`/changes${qs ? `?${qs}` : ""}`, (wait + 15) * 1000);
    // Validated whole, so a garbled answer never touches the replica.
    const answer = ChangesAnswerSchema.parse(body);
    if (answer.trust_bundle !== undefined) this.passBundle(answer.epoch, answer.version, answer.trust_bundle);
    return answer;
  }

  /**
   * Every trust-bundle change is a realm version, so an answer older than the last one whose
   * bundle was passed on (a retry that crossed a newer long-poll) carries an older bundle: it
   * must not bring back a retired CA, however briefly. A new epoch starts the versions over.
   */
  private passBundle(epoch: string, version: number, bundle: string[]): void {
    const last = this.bundleFrom;
    if (last !== undefined && last.epoch === epoch && version < last.version) return;
    this.bundleFrom = { epoch, version };
    this.o.onTrustBundle?.(bundle);
  }

  /**
   * Pages through the record list. The pages may come from different versions while the
   * realm changes; the first page's (epoch, version) is the base, and the catch-up delta
   * from that base (every record changed since, at its latest state) makes the mix
   * consistent. A page from another epoch restarts the reload.
   */
  async reload(): Promise<SyncState> {
    const size = this.o.pageSize ?? 5_000;
    for (let round = 0; round < 5; round++) {
      const records = new Map<string, HopwayRecord>();
      let base: { epoch: string; version: number } | undefined;
      let shared: string[] | null | undefined;
      let after: string | null = null;
      let restart = false;
      do {
        const qs: string = `limit=${size}${after !== null ? `&after=${encodeURIComponent(after)}` : ""}`;
        const { body, etag } = await this.getJson(`/nodes?${qs}`, 60_000);
        // GET /nodes?limit=&after= (the epoch travels in the ETag `"epoch.version"`).
        const page = NodesAnswerSchema.parse(body);
        const tag = parseEtag(etag);
        if (tag === undefined) throw new Error(`record list without an "epoch.version" ETag: ${String(etag)}`);
        this.stats.pages++;
        base ??= tag;
        if (shared === undefined && page.shared_namespaces !== undefined)
          shared = canonicalShared(page.shared_namespaces);
        if (tag.epoch !== base.epoch) {
          restart = true;
          break;
        }
        for (const r of page.records) records.set(r.name, r);
        // A realm is bounded (the edge refuses more); an answer stream past that is broken or hostile.
        if (records.size > MAX_RECORDS) throw new Error(`record list longer than ${MAX_RECORDS} records`);
        // With `limit` the edge always sends `next`; a page without one is the last.
        const next = page.next ?? null;
        if (next !== null && after !== null && next <= after) throw new Error("record pages do not advance");
        after = next;
        if (this.t.stopped()) throw new Error("stopped");
      } while (after !== null);
      if (restart || base === undefined) continue;
      return { epoch: base.epoch, version: base.version, records, shared: shared ?? null };
    }
    throw new Error("the edge's storage epoch kept changing during the reload");
  }

  /** Reload, then catch up on what changed while paging, then build at once (no debounce). */
  private async resync(): Promise<void> {
    for (let round = 0; round < 4; round++) {
      const next = await this.reload();
      // Thrown so the follow loop backs off instead of reloading in a tight circle.
      if (!this.adoptReload(next)) throw new Error("the edge's record list is older than the replica");
      const catchUp = await this.fetchChanges(0);
      if (this.applyChanges(catchUp, this.t.now()) !== "reset") {
        this.rebuildNow();
        return;
      }
    }
    // The edge's changelog keeps moving past us: use what we have; the loop goes on from it.
    this.rebuildNow();
  }

  /** One step of the follow loop: long-poll, apply, reload on reset. */
  async step(): Promise<void> {
    if (this.state === undefined) {
      await this.resync();
      this.t.setReachable(true);
      return;
    }
    const answer = await this.fetchChanges(this.o.waitSeconds);
    this.t.setReachable(true);
    const outcome = this.applyChanges(answer, this.t.now());
    if (outcome === "reset") {
      this.o.log?.info("edge asked for a reload of the record list", { epoch: answer.epoch, version: answer.version });
      await this.resync();
    } else if (outcome === "ignored") {
      // The edge is behind us (a lagging answer): do not spin on it.
      await this.t.sleep(this.t.backoff(1));
    }
  }

  async run(): Promise<void> {
    let attempt = 0;
    while (!this.t.stopped()) {
      try {
        await this.step();
        attempt = 0;
      } catch (err) {
        if (this.t.stopped()) break;
        this.t.setReachable(false, err);
        await this.t.sleep(this.t.backoff(attempt++));
      }
    }
    // A change waiting in the debounce window still reaches the relay and the disk.
    if (this.rebuildTimer !== undefined) this.rebuildNow();
  }
}
