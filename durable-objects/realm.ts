// One RealmObject per realm is the source of truth: records, leases, reports,
// scoped tokens and the changelog, in SQLite. It does no route computation:
// Worker isolates cache the realm and compute routes (stateless, horizontally
// scaled); this object only answers cheap indexed reads and serialises writes.
// Every RPC method does its SQL without awaiting in between, so each call is
// atomic and bumps the version at most once.
import { DurableObject } from "cloudflare:workers";
import { type AddressPolicy, recordAddressProblem } from "../src/core/address-policy.ts";
import type { ErrorCode } from "../src/core/errors.ts";
import { computeWorkloadScaling } from "../src/core/scaling.ts";
import type { HopwayRecord, ScalingReport } from "../src/core/schema.ts";
import type {
  Caller,
  Changes,
  Failure,
  HeartbeatResult,
  Principal,
  PutResult,
  RecordPage,
  Result,
  StoredRecord,
  TokenInfo,
  WorkloadView,
  WriteResult,
} from "../src/edge/types.ts";
import { migrate } from "./migrations.ts";
import { PolicyStore } from "./policy.ts";
import { namespaceOf, RecordStore } from "./records.ts";
import { TokenStore } from "./tokens.ts";

/** Upper bound of a long-poll held inside the object. */
export const MAX_WAIT_MS = 60_000;
const PAGE_MAX = 5_000;
/**
 * A lease still stored this long after it ended was not swept on time: its
 * alarm could not run because the edge itself was not serving. Alarms run
 * within moments of their time when the object is up (and are retried after
 * about 2 s), so 10 s separates "late" from "the control plane was away".
 */
export const LATE_SWEEP_MS = 10_000;

function fail(code: ErrorCode, status: number, message: string, path?: string): Failure {
  return { ok: false, error: { code, status, message, ...(path !== undefined ? { path } : {}) } };
}

interface Waiter {
  since: number;
  wake: () => void;
}

export class RealmObject extends DurableObject<Env> {
  /** Milliseconds since the epoch. Tests replace it (via runInDurableObject) to expire leases deterministically. */
  now: () => number = () => Date.now();

  private records!: RecordStore;
  private tokens!: TokenStore;
  private policies!: PolicyStore;
  private alarmAt: number | null = null;
  private readonly waiters = new Set<Waiter>();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    void ctx.blockConcurrencyWhile(async () => {
      this.runMigrations();
      this.alarmAt = await ctx.storage.getAlarm();
    });
  }

  /** Runs pending schema migrations in one transaction and (re)opens the stores. Public for the migration test. */
  runMigrations(): number {
    const from = this.ctx.storage.transactionSync(() => migrate(this.ctx.storage.sql));
    this.records = new RecordStore(this.ctx.storage.sql);
    this.tokens = new TokenStore(this.ctx.storage.sql);
    this.policies = new PolicyStore(this.ctx.storage.sql);
    return from;
  }

  // ---- access control ---------------------------------------------------------

  private principal(caller: Caller): Principal | Failure {
    return this.tokens.principal(caller) ?? fail("unauthorized", 401, "unknown or revoked token for this realm");
  }

  private reader(caller: Caller): Principal | Failure {
    return this.principal(caller);
  }

  /** The caller may write records in every namespace listed (null = a record without a namespace). */
  private writer(caller: Caller, namespaces: Iterable<string | null>): Principal | Failure {
    const p = this.principal(caller);
    if ("ok" in p) return p;
    if (p.role === "admin") return p;
    if (p.role === "reader") return fail("forbidden", 403, "a reader token cannot change records");
    const allowed = new Set(p.namespaces ?? []);
    for (const ns of namespaces) {
      if (ns === null || !allowed.has(ns)) {
        return fail(
          "namespace_forbidden",
          403,
          ns === null
            ? "this agent token may only write records whose metadata.namespace_name is one of its namespaces; this record has none"
            : `this agent token may not write records in namespace '${ns}'`,
          "metadata.namespace_name",
        );
      }
    }
    return p;
  }

  /**
   * Every gateway address a non-admin writes must pass the realm's address
   * policy. The admin is not checked: it is the operator who sets the policy,
   * and its demo topologies dial loopback on purpose.
   */
  private addressesAllowed(p: Principal, records: readonly HopwayRecord[], indexed: boolean): Failure | null {
    if (p.role === "admin") return null;
    const policy = this.policies.policy;
    for (const [i, record] of records.entries()) {
      const problem = recordAddressProblem(record, policy, indexed ? [i] : []);
      if (problem !== null) {
        return fail(
          "gateway_forbidden",
          403,
          `${problem.message}; the realm's address policy (GET /policy) decides what gateways may publish`,
          problem.path,
        );
      }
    }
    return null;
  }

  private admin(caller: Caller): Principal | Failure {
    const p = this.principal(caller);
    if ("ok" in p) return p;
    return p.role === "admin" ? p : fail("forbidden", 403, "only the admin token may do this (tokens, address policy)");
  }

  // ---- versions, waiters, alarms ------------------------------------------------

  private notify(): void {
    const v = this.records.version;
    for (const w of this.waiters) if (v !== w.since) w.wake();
  }

  private scheduleAlarm(): void {
    const next = this.records.nextExpiry();
    if (next === this.alarmAt) return;
    this.alarmAt = next;
    // Not awaited: the output gate holds the response until the alarm write is durable.
    if (next === null) void this.ctx.storage.deleteAlarm();
    else void this.ctx.storage.setAlarm(next);
  }

  /** Removes every lease that has ended, in one version. Idempotent: a second run finds nothing. */
  private sweep(now: number): string[] {
    const names = this.records.expiredNames(now);
    if (names.length === 0) return names;
    this.ctx.storage.transactionSync(() => {
      for (const name of names) this.records.delete(name);
      this.records.bump(names);
    });
    this.notify();
    return names;
  }

  /**
   * Leases that ended while the edge itself was not serving (their sweep is
   * overdue by more than LATE_SWEEP_MS) get a fresh TTL from now instead of
   * all expiring together on the first event after an outage: their nodes
   * could not renew against an edge that was not there. Nothing else
   * changes: no version bump, routes stay as they were. Idempotent, and cheap
   * when there is nothing to do (one indexed min()).
   */
  private catchUp(now: number): void {
    const next = this.records.nextExpiry();
    if (next === null || next > now - LATE_SWEEP_MS) return;
    if (this.records.extendOverdue(now - LATE_SWEEP_MS, now) > 0) this.scheduleAlarm();
  }

  override async alarm(): Promise<void> {
    this.alarmAt = null;
    const now = this.now();
    this.catchUp(now);
    this.sweep(now);
    this.scheduleAlarm();
  }

  // ---- reads (for the Worker's cache) -------------------------------------------

  /** What changed since the caller's copy (epoch, version). */
  changes(caller: Caller, epoch: string | null, since: number | null): Result<{ changes: Changes }> {
    const p = this.reader(caller);
    if ("ok" in p) return p;
    this.catchUp(this.now());
    return { ok: true, changes: this.records.changesSince(epoch, since) };
  }

  /**
   * Long-poll: resolves as soon as the version differs from `since` (or the
   * epoch differs), with the delta, or after `ms` with `current`. Cheap: a
   * waiter is a closure; nothing is computed until the version changes.
   */
  async waitForChange(
    caller: Caller,
    epoch: string | null,
    since: number,
    ms: number,
  ): Promise<Result<{ changes: Changes }>> {
    const p = this.reader(caller);
    if ("ok" in p) return p;
    this.catchUp(this.now());
    if (epoch === this.records.epoch && since === this.records.version && ms > 0) {
      await new Promise<void>((resolve) => {
        const waiter: Waiter = {
          since,
          wake: () => {
            clearTimeout(timer);
            this.waiters.delete(waiter);
            resolve();
          },
        };
        const timer = setTimeout(waiter.wake, Math.min(ms, MAX_WAIT_MS));
        this.waiters.add(waiter);
      });
    }
    return { ok: true, changes: this.records.changesSince(epoch, since) };
  }

  page(caller: Caller, after: string | null, limit: number): Result<{ page: RecordPage }> {
    const p = this.reader(caller);
    if ("ok" in p) return p;
    this.catchUp(this.now());
    return { ok: true, page: this.records.page(after, Math.max(1, Math.min(limit, PAGE_MAX))) };
  }

  getRecord(caller: Caller, name: string): Result<{ stored: StoredRecord }> {
    const p = this.reader(caller);
    if ("ok" in p) return p;
    this.catchUp(this.now());
    const row = this.records.get(name);
    if (row === undefined) return fail("unknown_node", 404, `no record named '${name}' in this realm`, "name");
    return {
      ok: true,
      stored: {
        version: this.records.version,
        record: JSON.parse(row.json) as HopwayRecord,
        expires_at: row.expires_at === null ? null : new Date(row.expires_at).toISOString(),
        ttl_seconds: row.ttl_seconds,
        report: row.report === null ? null : (JSON.parse(row.report) as ScalingReport),
      },
    };
  }

  stats(): { version: number; records: number; epoch: string; alarm: number | null; waiters: number } {
    return {
      version: this.records.version,
      records: this.records.count(),
      epoch: this.records.epoch,
      alarm: this.alarmAt,
      waiters: this.waiters.size,
    };
  }

  // ---- writes ---------------------------------------------------------------------

  putRecord(caller: Caller, record: HopwayRecord, ttlSeconds: number | null): Result<PutResult> {
    const existing = this.records.get(record.name);
    const p = this.writer(
      caller,
      existing === undefined ? [namespaceOf(record)] : [namespaceOf(record), existing.namespace],
    );
    if ("ok" in p) return p;
    const refused = this.addressesAllowed(p, [record], false);
    if (refused !== null) return refused;
    const now = this.now();
    this.catchUp(now);
    const lease = ttlSeconds === null ? null : { expiresAt: now + ttlSeconds * 1000, ttl: ttlSeconds };
    const json = JSON.stringify(record);
    let changed = true;
    if (existing !== undefined && existing.json === json) {
      // Re-registering the same record only renews (or ends) the lease: routes did not change.
      changed = false;
      this.records.setLease(record.name, lease);
    } else {
      this.ctx.storage.transactionSync(() => {
        const v = this.records.bump([record.name]);
        this.records.upsert(record, json, lease, v);
      });
      this.notify();
      this.maybePrune();
    }
    this.scheduleAlarm();
    return {
      ok: true,
      version: this.records.version,
      created: existing === undefined,
      changed,
      expires_at: lease === null ? null : new Date(lease.expiresAt).toISOString(),
    };
  }

  importRecords(caller: Caller, records: HopwayRecord[]): Result<WriteResult & { records: number }> {
    const namespaces = new Set<string | null>(records.map(namespaceOf));
    for (const r of records) {
      const old = this.records.get(r.name);
      if (old !== undefined) namespaces.add(old.namespace);
    }
    const p = this.writer(caller, namespaces);
    if ("ok" in p) return p;
    // Checked before anything is written: a refused import stores nothing.
    const refused = this.addressesAllowed(p, records, true);
    if (refused !== null) return refused;
    this.catchUp(this.now());
    if (records.length === 0) return { ok: true, version: this.records.version, records: 0 };
    this.ctx.storage.transactionSync(() => {
      const v = this.records.bump(records.map((r) => r.name));
      for (const r of records) this.records.upsert(r, JSON.stringify(r), null, v);
    });
    this.notify();
    // An import may add thousands of changelog rows at once: trim now rather than after 256 more writes.
    this.records.prune();
    this.scheduleAlarm();
    return { ok: true, version: this.records.version, records: records.length };
  }

  deleteRecord(caller: Caller, name: string): Result<WriteResult> {
    this.catchUp(this.now());
    const existing = this.records.get(name);
    if (existing === undefined) {
      const p = this.reader(caller);
      if ("ok" in p) return p;
      return fail("unknown_node", 404, `no record named '${name}' in this realm`, "name");
    }
    const p = this.writer(caller, [existing.namespace]);
    if ("ok" in p) return p;
    this.ctx.storage.transactionSync(() => {
      this.records.delete(name);
      this.records.bump([name]);
    });
    this.notify();
    this.scheduleAlarm();
    return { ok: true, version: this.records.version };
  }

  /**
   * Renews a lease (ttlSeconds, else the TTL it was registered with) and stores
   * the pod's latest scaling report. Not a topology change: the version stays.
   * Answers the workload's scaling view, which is how a pod learns it drains.
   */
  heartbeat(
    caller: Caller,
    name: string,
    ttlSeconds: number | null,
    report: ScalingReport | null,
  ): Result<HeartbeatResult> {
    const now = this.now();
    this.catchUp(now);
    let row = this.records.get(name);
    if (row !== undefined && row.expires_at !== null && row.expires_at <= now) {
      this.sweep(now);
      this.scheduleAlarm();
      row = undefined;
    }
    if (row === undefined) {
      const p = this.reader(caller);
      if ("ok" in p) return p;
      return fail(
        "unknown_node",
        404,
        `no record named '${name}' (lease expired or never registered): register it again`,
      );
    }
    const p = this.writer(caller, [row.namespace]);
    if ("ok" in p) return p;
    const ttl = ttlSeconds ?? row.ttl_seconds;
    const expiresAt = ttl === null ? null : now + ttl * 1000;
    if (ttl !== null && expiresAt !== null) this.records.setLease(name, { expiresAt, ttl });
    if (report !== null) this.records.setReport(name, report, now);
    this.scheduleAlarm();
    const workload = report?.workload ?? row.workload;
    const result: HeartbeatResult = {
      version: this.records.version,
      expires_at: expiresAt === null ? null : new Date(expiresAt).toISOString(),
    };
    if (workload !== null) {
      result.scaling = computeWorkloadScaling(
        workload,
        this.records.workloadReports(workload, now).map((r) => r.report),
      );
    }
    return { ok: true, ...result };
  }

  workload(caller: Caller, workload: string): Result<{ view: WorkloadView }> {
    const p = this.reader(caller);
    if ("ok" in p) return p;
    this.catchUp(this.now());
    const live = this.records.workloadReports(workload, this.now());
    if (live.length === 0) return fail("not_found", 404, `no live pod reports for workload '${workload}'`, "workload");
    return {
      ok: true,
      view: {
        version: this.records.version,
        scaling: computeWorkloadScaling(
          workload,
          live.map((r) => r.report),
        ),
        pods: live.map((r) => ({ node: r.node, report: r.report, reported_at: new Date(r.reportedAt).toISOString() })),
      },
    };
  }

  private writesSincePrune = 0;
  private maybePrune(): void {
    if (++this.writesSincePrune < 256) return;
    this.writesSincePrune = 0;
    this.records.prune();
  }

  // ---- gateway address policy ------------------------------------------------------

  getPolicy(caller: Caller): Result<{ policy: AddressPolicy }> {
    const p = this.admin(caller);
    if ("ok" in p) return p;
    return { ok: true, policy: this.policies.policy };
  }

  /** Replaces the policy. It governs writes from now on; records already stored are not re-checked. */
  setPolicy(caller: Caller, policy: AddressPolicy): Result<{ policy: AddressPolicy }> {
    const p = this.admin(caller);
    if ("ok" in p) return p;
    this.ctx.storage.transactionSync(() => this.policies.replace(policy));
    return { ok: true, policy: this.policies.policy };
  }

  // ---- tokens -------------------------------------------------------------------------

  /** Stores a token the Worker minted (and signed for this realm): only its id and SHA-256 arrive here. */
  createToken(
    caller: Caller,
    role: "agent" | "reader",
    namespaces: string[],
    minted: { id: string; hash: string },
  ): Result<{ info: TokenInfo }> {
    const p = this.admin(caller);
    if ("ok" in p) return p;
    return { ok: true, info: this.tokens.create(minted, role, namespaces, this.now()) };
  }

  listTokens(caller: Caller): Result<{ tokens: TokenInfo[] }> {
    const p = this.admin(caller);
    if ("ok" in p) return p;
    return { ok: true, tokens: this.tokens.list() };
  }

  revokeToken(caller: Caller, id: string): Result<{ revoked: string }> {
    const p = this.admin(caller);
    if ("ok" in p) return p;
    if (!this.tokens.revoke(id)) return fail("not_found", 404, `no token with id '${id}'`, "id");
    return { ok: true, revoked: id };
  }
}
