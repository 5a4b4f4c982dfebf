// The agent's side of the edge API: registers this pod's records as leases and
// keeps them alive, follows this relay's route table by long-poll, keeps the
// last good table on disk so a restart without the edge still routes, and
// deregisters on shutdown. Every clock, timer, random source and the fetch
// function are injectable so tests can drive it deterministically.
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { HopwayRecord } from "@hopway/core/schema";
import { ROUTE_TABLE_FORMAT, type RouteTable, RouteTableSchema } from "@hopway/core/wire";
import type { Logger } from "../log.ts";
import { HttpStatusError, readJson, statusError } from "./body.ts";
import { RecordsSync, type SyncMode } from "./records-sync.ts";

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** At most one "edge rate limit" line per this long. */
const THROTTLE_LOG_MS = 60_000;

/** Full-jitter exponential backoff (AWS architecture blog): uniform in [0, min(cap, base·2^attempt)). */
export function backoffDelay(attempt: number, baseMs: number, capMs: number, random: () => number): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/** Backoff steps a route-table poll takes while this node has no record: at most 4 s with the 500 ms base. */
const UNREGISTERED_BACKOFF_STEPS = 3;

/** Lease renewal interval: a third of the lease, ±20 % so a fleet restarted together does not renew in lockstep. */
export function renewDelay(leaseSeconds: number, random: () => number): number {
  return Math.floor((leaseSeconds * 1000 * (0.8 + 0.4 * random())) / 3);
}

export type TableSource = "edge" | "disk";

export interface EdgeClientOptions {
  url: string;
  realm: string;
  token: string;
  /** The record whose route table is followed ("this relay"). */
  node: string;
  /**
   * This agent's instance id, sent as `Hopway-Instance` with every lease write: the edge then
   * refuses another agent's writes to this agent's live leases, and this agent's to another's
   * (`409 name_in_use`), instead of letting two agents of one name overwrite each other.
   */
  instance?: string | undefined;
  records: HopwayRecord[];
  leaseSeconds: number;
  waitSeconds: number;
  /** Where the last good route table is kept; undefined = not persisted. */
  dataDir?: string | undefined;
  onTable: (table: RouteTable, source: TableSource) => void;
  /** Scaling report sent with the node's heartbeat (autoscaling). */
  report?: () => unknown;
  /** The relay's links to its neighbours, sent with the node's heartbeat for the topology page. */
  links?: () => unknown;
  /** What the edge answers in `scaling` (e.g. whether this pod is draining). */
  onScaling?: (scaling: unknown) => void;
  onReachability?: (reachable: boolean) => void;
  /** The relay trust bundle from each route table (route-table mode) or `/changes` answer (records mode). */
  onTrustBundle?: (bundle: string[]) => void;
  fetch?: typeof fetch;
  clock?: Clock;
  random?: () => number;
  log?: Logger;
  backoffBaseMs?: number;
  backoffCapMs?: number;
  /** "route-table" (default): download this relay's table; "records": replicate the records, compute locally. */
  sync?: SyncMode;
  /** records mode: coalescing window for a burst of changes (default 150 ms). */
  syncDebounceMs?: number;
  /** records mode: records per page when (re)loading the record list. */
  syncPageSize?: number;
  /**
   * Replace a record of the same name that exists without a lease (imported, or written by an
   * admin). Off by default: such a record is someone else's, and the agent deletes what it
   * registered when it stops.
   */
  takeover?: boolean;
}

/** Why the agent cannot do its job with the edge as configured; shown by /readyz and the metrics. */
export interface EdgeProblem {
  reason: "edge_unauthorized" | "record_refused" | "record_conflict";
  message: string;
}

interface Persisted {
  table: RouteTable;
  etag: string | undefined;
  saved_at: number;
  /** The table schema it was written with (ROUTE_TABLE_FORMAT). */
  format: number;
}

export class EdgeClient {
  private readonly o: EdgeClientOptions;
  private readonly fetchFn: typeof fetch;
  private readonly clock: Clock;
  private readonly random: () => number;
  private current: RouteTable | undefined;
  private etag: string | undefined;
  private confirmedAt: number | undefined;
  /** When "edge rate limit" was last said, and the 429s since. */
  private throttleLoggedAt: number | undefined;
  private throttledSinceLog = 0;
  /** undefined until the first request settles, so the first failure is logged too. */
  private reachableNow: boolean | undefined;
  private stopped = false;
  private readonly abort = new AbortController();
  private readonly wakers = new Set<() => void>();
  private persistChain: Promise<void> = Promise.resolve();
  private loops: Promise<void>[] = [];
  /** Set in records mode: the local replica that computes the table instead of downloading it. */
  readonly recordsSync: RecordsSync | undefined;
  /** The edge refuses this agent's token; cleared by the next request it accepts. */
  private authProblem: EdgeProblem | undefined;
  /**
   * The refusal was a 403 of a record write (the token lacks the record's namespace): reads with
   * the same token still succeed, so only a write the edge accepts clears it, not any answer.
   */
  private authRefusedWrite = false;
  /** Records this agent refused to take over; never registered, renewed or deleted. */
  private readonly conflicts = new Map<string, string>();
  /** The edge answered the last route-table request with 404: this node has no record. */
  private unregistered = false;
  /** Records whose registration the edge refuses for what they are (recordRefused), with why. */
  private readonly refusals = new Map<string, string>();
  /** Records this agent has registered: the only ones it renews and deletes. */
  private readonly registered = new Set<HopwayRecord>();

  constructor(opts: EdgeClientOptions) {
    this.o = opts;
    this.fetchFn = opts.fetch ?? fetch;
    this.clock = opts.clock ?? realClock;
    this.random = opts.random ?? Math.random;
    if (opts.sync === "records") {
      this.recordsSync = new RecordsSync(
        {
          node: opts.node,
          waitSeconds: opts.waitSeconds,
          dataDir: opts.dataDir,
          debounceMs: opts.syncDebounceMs,
          pageSize: opts.syncPageSize,
          log: opts.log,
          onTable: (table, source, at, replace) => this.applyTable(table, undefined, source, at, replace),
          onConfirmed: (at) => {
            this.confirmedAt = Math.max(this.confirmedAt ?? 0, at);
          },
          onTrustBundle: opts.onTrustBundle,
        },
        {
          request: (path, timeoutMs) => this.request("GET", path, { timeoutMs }),
          setReachable: (ok, error) => this.setReachable(ok, error),
          sleep: (ms) => this.sleep(ms),
          backoff: (attempt) => this.backoff(attempt),
          now: () => this.clock.now(),
          setTimeout: (fn, ms) => this.clock.setTimeout(fn, ms),
          clearTimeout: (h) => this.clock.clearTimeout(h),
          random: () => this.random(),
          stopped: () => this.stopped,
        },
      );
    }
  }

  get version(): number | undefined {
    return this.current?.version;
  }
  get table(): RouteTable | undefined {
    return this.current;
  }
  /** When the table in use was last confirmed current (ms since epoch). */
  get tableConfirmedAt(): number | undefined {
    return this.confirmedAt;
  }
  get reachable(): boolean {
    return this.reachableNow === true;
  }

  private get base(): string {
    return `${this.o.url.replace(/\/+$/, "")}/v1/realms/${encodeURIComponent(this.o.realm)}`;
  }

  /** What keeps this agent from working with the edge as configured, if anything. */
  get problem(): EdgeProblem | undefined {
    if (this.authProblem !== undefined) return this.authProblem;
    const [refusedName, refusal] = [...this.refusals][0] ?? [];
    if (refusedName !== undefined && refusal !== undefined) return { reason: "record_refused", message: refusal };
    const [name, message] = [...this.conflicts][0] ?? [];
    return name !== undefined && message !== undefined ? { reason: "record_conflict", message } : undefined;
  }
  /** True while the edge refuses this agent's token (401/403). */
  get authFailed(): boolean {
    return this.authProblem !== undefined;
  }

  /**
   * A registration the edge refused for what the record is, not for who asks (a name or gateway
   * outside the realm's policy, the namespace at its record limit, a name another namespace holds):
   * the token is good and the edge reachable, so the refusal stays until that record registers,
   * whatever other requests succeed meanwhile. Retrying heals it once the operator acts or a hold ends.
   * Returns whether `err` is such a refusal (and so is taken care of here).
   */
  private refusedRecord(record: HopwayRecord, err: unknown): boolean {
    if (!(err instanceof HttpStatusError && refusesRecord(err))) return false;
    // The edge answered: it is reachable.
    this.setReachable(true);
    if (this.refusals.has(record.name)) return true;
    const message =
      `the edge refused record '${record.name}' in realm '${this.o.realm}' (${err.edgeCode}, HTTP ${err.status}): ` +
      (err.edgeMessage ?? "no reason given");
    this.refusals.set(record.name, message);
    this.o.log?.error("edge refused record", {
      realm: this.o.realm,
      record: record.name,
      status: err.status,
      code: err.edgeCode,
      error: message,
    });
    return true;
  }

  private recordAccepted(record: HopwayRecord): void {
    if (!this.refusals.delete(record.name)) return;
    this.o.log?.info("edge accepts the record again", { realm: this.o.realm, record: record.name });
  }

  /**
   * What the last request said of the edge. `write`: it was a record write (registration, renewal),
   * whose 403 only another accepted write clears.
   */
  private setReachable(ok: boolean, error?: unknown, write = false): void {
    // A refused token is not an outage: it will not heal by retrying, so it is said once, as what it is.
    const refused =
      !ok && error instanceof HttpStatusError && (error.status === 401 || error.status === 403) ? error : undefined;
    if (refused !== undefined && (this.authProblem === undefined || !this.authRefusedWrite)) {
      this.authRefusedWrite = write && refused.status === 403;
    }
    if (refused !== undefined && this.authProblem === undefined) {
      const code = refused.edgeCode ?? (refused.status === 401 ? "unauthorized" : "forbidden");
      const message =
        refused.status === 401
          ? `the edge refused this agent's token for realm '${this.o.realm}' (${code}, HTTP 401): ` +
            `it needs an agent-role token of realm '${this.o.realm}' (POST /v1/realms/${this.o.realm}/tokens ` +
            `{"role":"agent","namespaces":[…]} with the admin token)`
          : `the edge refused this agent's token in realm '${this.o.realm}' (${code}, HTTP 403): ` +
            `an agent-role token whose namespaces include every record this agent registers is needed`;
      this.authProblem = { reason: "edge_unauthorized", message };
      this.o.log?.error(refused.status === 401 ? "edge unauthorized" : "edge forbidden", {
        realm: this.o.realm,
        token_role_needed: "agent",
        status: refused.status,
        code,
        error: message,
      });
    }
    if (ok && this.authProblem !== undefined && (write || !this.authRefusedWrite)) {
      this.authProblem = undefined;
      this.authRefusedWrite = false;
      this.o.log?.info("edge accepts the token again", { realm: this.o.realm });
    }
    // Past the token's write or change budget (docs/contract/edge-api.md §14.1): the edge answered, and the
    // pacer holds every request until its Retry-After. Said as what it is, at most once a minute
    // (hopway_edge_throttled_total counts every one).
    const throttled = !ok && error instanceof HttpStatusError && error.status === 429;
    if (throttled) {
      this.throttledSinceLog++;
      const now = this.clock.now();
      if (this.throttleLoggedAt === undefined || now - this.throttleLoggedAt >= THROTTLE_LOG_MS) {
        this.o.log?.warn("edge rate limit", {
          realm: this.o.realm,
          code: error.edgeCode ?? "rate_limited",
          refused: this.throttledSinceLog,
          error: error.edgeMessage ?? String(error),
        });
        this.throttleLoggedAt = now;
        this.throttledSinceLog = 0;
      }
    }
    // The edge that refuses the token answered: it is reachable (hopway_edge_reachable says outages only).
    const reachable = ok || refused !== undefined || throttled;
    if (reachable === this.reachableNow) return;
    this.reachableNow = reachable;
    this.o.log?.log(
      reachable ? "info" : "warn",
      reachable ? "edge reachable" : "edge unreachable",
      error !== undefined && !reachable ? { error: String(error) } : {},
    );
    this.o.onReachability?.(reachable);
  }

  private async request(
    method: string,
    path: string,
    init: { body?: unknown; headers?: Record<string, string>; timeoutMs: number },
  ): Promise<Response> {
    const signal = AbortSignal.any([this.abort.signal, AbortSignal.timeout(init.timeoutMs)]);
    const res = await this.fetchFn(`${this.base}${path}`, {
      method,
      signal,
      headers: {
        authorization: `Bearer ${this.o.token}`,
        ...(init.body !== undefined ? { "content-type": "application/json" } : {}),
        ...init.headers,
      },
      ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
    });
    return res;
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.clock.clearTimeout(handle);
        this.wakers.delete(done);
        resolve();
      };
      const handle = this.clock.setTimeout(done, ms);
      this.wakers.add(done);
    });
  }

  private backoff(attempt: number): number {
    return backoffDelay(attempt, this.o.backoffBaseMs ?? 500, this.o.backoffCapMs ?? 30_000, this.random);
  }

  /**
   * Applies a table if it is newer than the one in use. Responses may arrive out of order
   * (retries, concurrent polls, an edge replica that lags), so an older or equal version
   * never replaces a newer one; an equal one only confirms freshness.
   */
  applyTable(
    table: RouteTable,
    etag: string | undefined,
    source: TableSource,
    confirmedAt: number,
    /**
     * records mode only: take the table whatever its version, because the edge's storage epoch
     * changed (versions started over) or the routes at this version changed.
     */
    replace = false,
  ): boolean {
    if (table.node !== this.o.node) {
      this.o.log?.warn("route table for another node ignored", { node: table.node });
      return false;
    }
    const cur = this.current?.version;
    if (cur !== undefined && table.version <= cur && !replace) {
      if (table.version === cur) this.confirmedAt = Math.max(this.confirmedAt ?? 0, confirmedAt);
      return false;
    }
    this.current = table;
    this.etag = etag;
    this.confirmedAt = confirmedAt;
    this.o.onTable(table, source);
    if (table.trust_bundle !== undefined) this.o.onTrustBundle?.(table.trust_bundle);
    this.o.log?.info("route table applied", { version: table.version, routes: table.routes.length, source });
    // records mode persists the (smaller, resumable) records snapshot instead.
    if (source === "edge" && this.recordsSync === undefined) this.persist(table, etag, confirmedAt);
    return true;
  }

  private persist(table: RouteTable, etag: string | undefined, savedAt: number): void {
    const dir = this.o.dataDir;
    if (!dir) return;
    const body: Persisted = { table, etag, saved_at: savedAt, format: ROUTE_TABLE_FORMAT };
    // Serialised so a slow older write can never land after a newer one; temp + rename so a
    // crash mid-write leaves the previous good file, never a torn one.
    this.persistChain = this.persistChain.then(async () => {
      try {
        await mkdir(dir, { recursive: true });
        const file = join(dir, "route-table.json");
        const tmp = `${file}.${process.pid}.${Math.floor(this.random() * 1e9)}.tmp`;
        await writeFile(tmp, JSON.stringify(body), { mode: 0o600 });
        await rename(tmp, file);
      } catch (err) {
        this.o.log?.warn("could not persist route table", { error: String(err) });
      }
    });
  }

  /** Waits for pending disk writes (tests, shutdown). */
  async flush(): Promise<void> {
    await this.persistChain;
    await this.recordsSync?.flush();
  }

  /** Loads the last good table from the data directory; true when one was applied. */
  async loadPersisted(): Promise<boolean> {
    const dir = this.o.dataDir;
    if (!dir) return false;
    let text: string;
    try {
      text = await readFile(join(dir, "route-table.json"), "utf8");
    } catch {
      return false;
    }
    try {
      const raw = JSON.parse(text) as { table?: unknown; etag?: unknown; saved_at?: unknown; format?: unknown };
      const table = RouteTableSchema.parse(raw.table);
      const etag = typeof raw.etag === "string" && raw.format === ROUTE_TABLE_FORMAT ? raw.etag : undefined;
      const savedAt = typeof raw.saved_at === "number" ? raw.saved_at : 0;
      return this.applyTable(table, etag, "disk", savedAt);
    } catch (err) {
      this.o.log?.warn("persisted route table unreadable; ignoring it", { error: String(err) });
      return false;
    }
  }

  /** One route-table request (a long-poll when a table is already held). */
  async fetchTableOnce(waitSeconds: number): Promise<"updated" | "unchanged"> {
    const wait = this.etag !== undefined ? waitSeconds : 0;
    const res = await this.request(
      "GET",
      `/route-tables/${encodeURIComponent(this.o.node)}${wait > 0 ? `?wait=${wait}` : ""}`,
      {
        headers: this.etag !== undefined ? { "if-none-match": this.etag } : {},
        timeoutMs: (wait + 15) * 1000,
      },
    );
    const at = this.clock.now();
    if (res.status === 304) {
      await res.body?.cancel();
      this.setReachable(true);
      this.confirmedAt = at;
      return "unchanged";
    }
    if (!res.ok) throw await statusError(res);
    const table = RouteTableSchema.parse(await readJson(res));
    this.unregistered = false;
    this.setReachable(true);
    return this.applyTable(table, res.headers.get("etag") ?? undefined, "edge", at) ? "updated" : "unchanged";
  }

  private async followLoop(): Promise<void> {
    let attempt = 0;
    while (!this.stopped) {
      try {
        await this.fetchTableOnce(this.o.waitSeconds);
        attempt = 0;
      } catch (err) {
        if (this.stopped) return;
        if (err instanceof HttpStatusError && err.status === 404 && err.edgeCode === "unknown_node") {
          // The edge answered: this node has no record (not registered yet, or refused; the lease
          // loop says why). That is no outage, and the table comes once the record is there.
          if (!this.unregistered) this.o.log?.info("no route table yet: this node's record is not registered", {});
          this.unregistered = true;
          this.setReachable(true);
          // Not an outage to back off from: the record may register any moment (a limit raised, a
          // hold ended), and the table must follow within seconds, not after a 30 s backoff.
          attempt = Math.min(attempt, UNREGISTERED_BACKOFF_STEPS);
        } else this.setReachable(false, err);
        await this.sleep(this.backoff(attempt++));
      }
    }
  }

  /** `Hopway-Instance`, on the requests that write this agent's leases. */
  private get instanceHeaders(): Record<string, string> {
    return this.o.instance === undefined ? {} : { "hopway-instance": this.o.instance };
  }

  private async put(record: HopwayRecord): Promise<void> {
    const res = await this.request("PUT", `/nodes/${encodeURIComponent(record.name)}`, {
      body: { ...record, ttl_seconds: this.o.leaseSeconds },
      headers: this.instanceHeaders,
      timeoutMs: 10_000,
    });
    if (!res.ok) throw await statusError(res);
    await res.body?.cancel();
  }

  private async heartbeat(record: HopwayRecord): Promise<void> {
    const own = record.name === this.o.node;
    const report = own ? this.o.report?.() : undefined;
    const links = own ? this.o.links?.() : undefined;
    const res = await this.request("POST", `/nodes/${encodeURIComponent(record.name)}/heartbeat`, {
      body: {
        ttl_seconds: this.o.leaseSeconds,
        ...(report !== undefined ? { report } : {}),
        ...(links !== undefined ? { links } : {}),
      },
      headers: this.instanceHeaders,
      timeoutMs: 10_000,
    });
    if (res.status === 404) {
      // The lease ran out (edge unreachable for too long, or an operator deleted it): register again.
      await res.body?.cancel();
      this.o.log?.info("lease lost; registering again", { record: record.name });
      await this.put(record);
      this.recordAccepted(record);
      return;
    }
    if (!res.ok) throw await statusError(res);
    const body = (await readJson(res)) as { scaling?: unknown };
    if (body.scaling !== undefined) this.o.onScaling?.(body.scaling);
  }

  /**
   * Whether this agent may register `record`: not when a record of that name exists without a
   * lease (imported, or written by an admin) unless `takeover` is set. Such a record would be
   * replaced silently and then deleted when the agent stops. A leased one is this agent's own from
   * before a restart, or another agent's: the edge refuses the write then (`name_in_use`), since
   * the lease names the instance that holds it.
   */
  private async mayRegister(record: HopwayRecord): Promise<boolean> {
    const res = await this.request("GET", `/nodes/${encodeURIComponent(record.name)}`, { timeoutMs: 10_000 });
    if (res.status === 404) {
      await res.body?.cancel();
      return true;
    }
    if (!res.ok) throw await statusError(res);
    const existing = (await readJson(res)) as { ttl_seconds?: unknown };
    if (typeof existing.ttl_seconds === "number") return true;
    if (this.o.takeover === true) {
      this.o.log?.warn("taking over a record that was not registered by an agent (edge.takeover: true)", {
        record: record.name,
        realm: this.o.realm,
      });
      return true;
    }
    const message =
      `record '${record.name}' already exists in realm '${this.o.realm}' and was not registered by an agent ` +
      `(no lease: imported or written by an admin); refusing to replace it, or to delete it on shutdown. ` +
      `Use another realm or record name, delete the record, or set edge.takeover: true`;
    this.conflicts.set(record.name, message);
    this.o.log?.error("refusing to take over a record", { record: record.name, realm: this.o.realm, error: message });
    return false;
  }

  private async leaseLoop(): Promise<void> {
    if (this.o.records.length === 0) return;
    const pending = new Set(this.o.records);
    let attempt = 0;
    while (!this.stopped && pending.size > 0) {
      for (const r of [...pending]) {
        try {
          if (!(await this.mayRegister(r))) {
            pending.delete(r);
            continue;
          }
          await this.put(r);
          pending.delete(r);
          this.registered.add(r);
          this.recordAccepted(r);
          this.setReachable(true, undefined, true);
          this.o.log?.info("registered", { record: r.name, lease_seconds: this.o.leaseSeconds });
        } catch (err) {
          if (this.stopped) return;
          if (this.refusedRecord(r, err)) continue;
          this.setReachable(false, err, true);
          // A refused token was said once, as what it is (setReachable); anything else each time.
          if (!this.authFailed) this.o.log?.error("registration failed", { record: r.name, error: String(err) });
        }
      }
      if (pending.size > 0) await this.sleep(this.backoff(attempt++));
    }
    attempt = 0;
    while (!this.stopped && this.registered.size > 0) {
      await this.sleep(
        attempt === 0
          ? renewDelay(this.o.leaseSeconds, this.random)
          : Math.min(this.backoff(attempt), renewDelay(this.o.leaseSeconds, this.random)),
      );
      if (this.stopped) return;
      let failed = false;
      for (const r of this.registered) {
        try {
          await this.heartbeat(r);
          this.setReachable(true, undefined, true);
        } catch (err) {
          if (this.stopped) return;
          // A lost lease whose record the edge now refuses (another pod took the namespace's last
          // place, another namespace holds the name): said as such, and tried again next renewal.
          if (this.refusedRecord(r, err)) continue;
          failed = true;
          this.setReachable(false, err, true);
        }
      }
      attempt = failed ? attempt + 1 : 0;
    }
  }

  /** Loads the persisted table, then registers and follows in the background. */
  async start(): Promise<void> {
    // records mode falls back to a route table left by route-table mode, so switching modes keeps start-from-disk.
    const loaded = (await this.recordsSync?.loadPersisted()) || (await this.loadPersisted());
    if (loaded) this.o.log?.info("starting from the persisted route table", { version: this.current?.version });
    this.loops = [this.recordsSync ? this.recordsSync.run() : this.followLoop(), this.leaseLoop()];
  }

  /** Stops the loops and removes the records from the edge (best effort, bounded). */
  async stop(deregister = true, timeoutMs = 3000): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    for (const w of [...this.wakers]) w();
    await Promise.allSettled(this.loops);
    if (deregister) {
      await Promise.allSettled(
        [...this.registered].map(async (r) => {
          const res = await this.fetchFn(`${this.base}/nodes/${encodeURIComponent(r.name)}`, {
            method: "DELETE",
            // With the instance: a record another agent took over meanwhile stays (409 name_in_use).
            headers: { authorization: `Bearer ${this.o.token}`, ...this.instanceHeaders },
            signal: AbortSignal.timeout(timeoutMs),
          });
          await res.body?.cancel();
          if (res.status === 409) {
            // Another agent of this name holds the record now (name_in_use): it stays theirs.
            this.o.log?.info("record left to the agent holding it", { record: r.name, status: res.status });
          } else this.o.log?.info("deregistered", { record: r.name, status: res.status });
        }),
      );
    }
    await this.flush();
  }
}

/** A refusal of what the agent writes, not of who it is: its token is fine. */
function refusesRecord(err: HttpStatusError): boolean {
  const code = err.edgeCode;
  if (err.status === 403) return code === "gateway_forbidden" || code === "quota_exceeded" || code === "name_forbidden";
  return err.status === 409 && (code === "name_held" || code === "name_certified" || code === "name_in_use");
}
