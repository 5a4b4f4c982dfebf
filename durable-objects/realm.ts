// One RealmObject per realm is the source of truth: records, leases, reports,
// scoped tokens and the changelog, in SQLite. It does no route computation:
// Worker isolates cache the realm and compute routes (stateless, horizontally
// scaled); this object only answers cheap indexed reads and serialises writes.
// Every RPC method does its SQL without awaiting in between, so each call is
// atomic and bumps the version at most once.
import { DurableObject } from "cloudflare:workers";
import { type AddressPolicy, recordAddressProblem, recordNameProblem } from "../src/core/address-policy.ts";
import type { ErrorCode } from "../src/core/errors.ts";
import { recordNamespace } from "../src/core/group.ts";
import {
  allowedIn,
  allowedInRealm,
  DEFAULT_TOKEN_CHANGE_BURST,
  DEFAULT_TOKEN_CHANGES_PER_SECOND,
  DEFAULT_TOKEN_WRITE_BURST,
  DEFAULT_TOKEN_WRITES_PER_SECOND,
  type LimitRefusal,
  limitRefusal,
  MAX_RECORD_BYTES,
  nameHoldSeconds,
  perNamespace,
  type RealmLimits,
  type RealmLimitsView,
  type RecordPlacement,
  tokenRate,
  utf8Length,
} from "../src/core/limits.ts";
import type { ListenerDeclaration, NamedListenerDeclaration } from "../src/core/listener.ts";
import { TokenBuckets } from "../src/core/rate.ts";
import { computeWorkloadScaling } from "../src/core/scaling.ts";
import { type HopwayRecord, type LinkState, ownEntry, type ScalingReport, setOwn } from "../src/core/schema.ts";
import type {
  Caller,
  CaStatus,
  ChangesWithTrust,
  Failure,
  HeartbeatResult,
  IssuedCertificate,
  LinkStatus,
  Principal,
  PutResult,
  RecordPageWithTrust,
  Result,
  StoredRecord,
  TokenInfo,
  TrustBundle,
  WorkloadView,
  WriteResult,
} from "../src/edge/types.ts";
import { type AuthorityRow, CaStore, MAX_OUTSTANDING_PER_NAME, OUTSTANDING_PER_NAMESPACE_RECORD } from "./ca.ts";
import { NameHoldStore } from "./holds.ts";
import { LimitStore } from "./limits.ts";
import { ListenerStore, MAX_LISTENERS, MAX_LISTENERS_PER_NAMESPACE } from "./listeners.ts";
import { migrate } from "./migrations.ts";
import { PolicyStore } from "./policy.ts";
import { type RecordRow, RecordStore } from "./records.ts";
import { TokenStore } from "./tokens.ts";

/** Upper bound of a long-poll held inside the object. */
export const MAX_WAIT_MS = 60_000;
const PAGE_MAX = 5_000;
/** Buckets per budget before full ones, then the least recently charged, are forgotten: memory stays bounded whatever the tokens do. */
const MAX_BUDGET_BUCKETS = 10_000;
/**
 * Link entries the realm keeps from heartbeats, per namespace and in all: each report is bounded
 * (256 entries), but reports are not records and count in no record limit, so without these a
 * namespace's leased records could each keep 256 entries in this object's memory and in every
 * `GET /links` answer (docs/contract/edge-api.md §10).
 */
export const LINK_ENTRIES_PER_NAMESPACE = 20_000;
export const LINK_ENTRIES_PER_REALM = 100_000;
/**
 * A lease still stored this long after it ended was not swept on time: its
 * alarm could not run because the edge itself was not serving. Alarms run
 * within moments of their time when the object is up (and are retried after
 * about 2 s), so 10 s separates "late" from "the control plane was away".
 */
export const LATE_SWEEP_MS = 10_000;

/** What a write is of, for the words and the field of its `namespace_forbidden` refusal. */
interface WriteScope {
  noun: string;
  field: string;
  /** A record's place in an import (`[3].`), and its name. */
  at?: string;
  name?: string;
}
const RECORDS: WriteScope = { noun: "records", field: "metadata.namespace_name" };
const LISTENERS: WriteScope = { noun: "listener declarations", field: "namespace" };

function fail(code: ErrorCode, status: number, message: string, path?: string): Failure {
  return { ok: false, error: { code, status, message, ...(path !== undefined ? { path } : {}) } };
}

/**
 * The namespace whose agent tokens may write a stored record (recordNamespace: a group's is the
 * one it names).
 */
function storedNamespace(row: RecordRow): string | null {
  return row.owner_namespace;
}

function limitFailure(r: LimitRefusal): Failure {
  const whose = r.namespace === null ? "the realm" : `namespace '${r.namespace}'`;
  const unit = r.what === "records" ? "records" : "bytes of records";
  const setting =
    r.namespace === null ? `${r.what}_per_realm` : `${r.what}_per_namespace, or namespaces['${r.namespace}'].${r.what}`;
  return fail(
    "quota_exceeded",
    403,
    `${whose} holds ${r.holds} ${unit} and may hold ${r.limit}; this write would add ${r.adds}: ` +
      `delete records first, or the admin raises the limit (${setting} in PUT /v1/realms/{realm}/limits)`,
    r.namespace === null ? `${r.at}name` : `${r.at}metadata.namespace_name`,
  );
}

/** What storing `record` (as `json`) changes, for the record limits; `existing` is the stored one of that name. */
function placement(record: HopwayRecord, json: string, existing: RecordRow | undefined, at: string): RecordPlacement {
  return {
    to: recordNamespace(record),
    from: existing === undefined ? undefined : storedNamespace(existing),
    bytes: utf8Length(json),
    fromBytes: existing === undefined ? 0 : utf8Length(existing.json),
    at,
  };
}

/** A record larger than MAX_RECORD_BYTES (the Worker refuses it first; this keeps it from ever reaching SQLite). */
function tooLarge(records: readonly HopwayRecord[], texts: readonly string[], indexed: boolean): Failure | null {
  for (const [i, text] of texts.entries()) {
    const bytes = utf8Length(text);
    if (bytes > MAX_RECORD_BYTES) {
      const name = records[i]?.name ?? "";
      return fail(
        "invalid_input",
        400,
        `record '${name}' is ${bytes} bytes of JSON; a record is at most ${MAX_RECORD_BYTES}`,
        indexed ? `[${i}]` : undefined,
      );
    }
  }
  return null;
}

interface Waiter {
  since: number;
  wake: () => void;
}

/** Resolves when a waker calls the waiter's `wake`, or after `ms` (at most MAX_WAIT_MS). */
function waitIn(waiters: Set<Waiter>, since: number, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const waiter: Waiter = {
      since,
      wake: () => {
        clearTimeout(timer);
        waiters.delete(waiter);
        resolve();
      },
    };
    const timer = setTimeout(waiter.wake, Math.min(ms, MAX_WAIT_MS));
    waiters.add(waiter);
  });
}

export class RealmObject extends DurableObject<Env> {
  /** A clock tests set (via runInDurableObject) to expire leases deterministically; unset in production. */
  clockForTest: (() => number) | undefined;

  private records!: RecordStore;
  private tokens!: TokenStore;
  private ca!: CaStore;
  /** The first CA's creation, shared by concurrent first requests so only one key pair is made. */
  private caCreation: Promise<void> | undefined;
  private listeners!: ListenerStore;
  private readonly listenerWaiters = new Set<Waiter>();
  private policies!: PolicyStore;
  private limits!: LimitStore;
  private holds!: NameHoldStore;
  // Each agent or reader token's two budgets, its writes and its changes (docs/contract/edge-api.md
  // §14.1), in memory only: an object that restarts starts every token full, which costs at most one
  // burst per token, and a request never waits on a storage write to be counted. Only authenticated
  // tokens get a bucket, so nothing is kept for a caller the realm does not know.
  private readonly writeBudgets = new TokenBuckets(MAX_BUDGET_BUCKETS, MAX_BUDGET_BUCKETS);
  private readonly changeBudgets = new TokenBuckets(MAX_BUDGET_BUCKETS, MAX_BUDGET_BUCKETS);
  private alarmAt: number | null = null;
  private readonly waiters = new Set<Waiter>();
  /**
   * Link state per relay, from its last heartbeat. Kept in memory on purpose: it is a picture
   * for operators that the next heartbeat (a third of a lease) repaints, so it is not worth a
   * storage write per heartbeat; after an eviction the page shows "unknown" until then.
   */
  private readonly linkReports = new Map<string, { links: LinkState[]; at: number; namespace: string | null }>();
  /** Entries held in linkReports, per namespace of the reporting record and in all. */
  private readonly linkEntries = new Map<string | null, number>();
  private linkEntriesTotal = 0;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    void ctx.blockConcurrencyWhile(async () => {
      this.runMigrations();
      this.alarmAt = await ctx.storage.getAlarm();
    });
  }

  /** Runs pending schema migrations in one transaction and opens the stores on the migrated tables. */
  private runMigrations(): void {
    this.ctx.storage.transactionSync(() => migrate(this.ctx.storage.sql));
    this.records = new RecordStore(this.ctx.storage.sql);
    this.tokens = new TokenStore(this.ctx.storage.sql);
    this.ca = new CaStore(this.ctx.storage.sql);
    this.listeners = new ListenerStore(this.ctx.storage.sql);
    this.policies = new PolicyStore(this.ctx.storage.sql);
    this.limits = new LimitStore(this.ctx.storage.sql);
    this.holds = new NameHoldStore(this.ctx.storage.sql);
  }

  /** Buckets held now, of both budgets: none is kept for a caller the realm does not know. */
  writeBucketsForTest(): number {
    return this.writeBudgets.size + this.changeBudgets.size;
  }

  /** Milliseconds since the epoch. */
  private now(): number {
    return this.clockForTest?.() ?? Date.now();
  }

  // ---- access control ---------------------------------------------------------

  /**
   * Who is calling. A write passes `cost` 1: it is charged to its token's write budget
   * (docs/contract/edge-api.md §14.1) before any work is done for it. The admin has no budget.
   */
  private principal(caller: Caller, cost = 0): Principal | Failure {
    const p = this.tokens.principal(caller);
    if (p === null) return fail("unauthorized", 401, "unknown or revoked token for this realm");
    if (p.tokenId === null || cost === 0) return p;
    return this.overBudget(p, "write") ?? p;
  }

  /**
   * Charges one write, or one change (a write that moves the realm's version, asked just before
   * it is made), to the caller's token; a refusal says when to try again. The admin has no budget.
   */
  private overBudget(p: Principal, kind: "write" | "change"): Failure | null {
    if (p.tokenId === null) return null;
    const budgets = kind === "write" ? this.writeBudgets : this.changeBudgets;
    const rate = tokenRate(this.limits.limits, p.tokenId, kind);
    const charged = budgets.charge(p.tokenId, this.now(), rate);
    if (charged.ok) return null;
    const seconds = Math.ceil(charged.retryAfterMs / 1000);
    const what = kind === "write" ? "write budget" : "change budget (writes that change records)";
    return {
      ok: false,
      error: {
        code: "rate_limited",
        status: 429,
        message:
          `token ${p.tokenId} is past its ${what}, ${rate.perSecond} per second and ` +
          `${rate.burst} at once: try again in ${seconds} s; the admin sets it with PUT /limits`,
        retry_after_seconds: seconds,
      },
    };
  }

  private reader(caller: Caller): Principal | Failure {
    return this.principal(caller);
  }

  /** The caller may write records in every namespace listed (null = a record without a namespace). */
  private writer(
    caller: Caller,
    namespaces: Iterable<string | null>,
    scope: WriteScope = RECORDS,
  ): Principal | Failure {
    const p = this.principal(caller, 1);
    return "ok" in p ? p : this.writesIn(p, namespaces, scope);
  }

  /**
   * `writer` for a caller already authenticated. `scope` says what is written, for the refusal:
   * records by default; one record of an import (its place `[3].` and name); listener declarations.
   */
  private writesIn(
    p: Principal,
    namespaces: Iterable<string | null>,
    scope: WriteScope = RECORDS,
  ): Principal | Failure {
    if (p.role === "admin") return p;
    if (p.role === "reader") return fail("forbidden", 403, "a reader token cannot change records");
    const allowed = new Set(p.namespaces ?? []);
    const which = scope.name === undefined ? "" : `record '${scope.name}': `;
    for (const ns of namespaces) {
      if (ns === null || !allowed.has(ns)) {
        return fail(
          "namespace_forbidden",
          403,
          which +
            (ns === null
              ? `this agent token may only write ${scope.noun} whose ${scope.field} is one of its namespaces; this one has none`
              : `this agent token may not write ${scope.noun} in namespace '${ns}'`),
          `${scope.at ?? ""}${scope.field}`,
        );
      }
    }
    return p;
  }

  /**
   * Every record name and gateway address a non-admin writes must pass the
   * realm's policy. The admin is not checked: it is the operator who sets the
   * policy, and its demo topologies dial loopback on purpose.
   */
  private addressesAllowed(p: Principal, records: readonly HopwayRecord[], indexed: boolean): Failure | null {
    if (p.role === "admin") return null;
    const policy = this.policies.policy;
    for (const [i, record] of records.entries()) {
      const refusedName = recordNameProblem(record, policy);
      if (refusedName !== null) {
        return fail(
          "name_forbidden",
          403,
          `${refusedName}; the realm's policy (GET /policy) decides what names each namespace may register`,
          indexed ? `[${i}].name` : "name",
        );
      }
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
    return p.role === "admin"
      ? p
      : fail("forbidden", 403, "only the admin token may do this (tokens, the address policy, record limits, the CA)");
  }

  // ---- versions, waiters, alarms ------------------------------------------------

  /**
   * A transaction that changes records or the version. If it throws (a value over SQLite's size
   * limit, say), SQLite rolls it back, but the record store had already counted each call in memory:
   * it reads its version and usage back, so a failed write cannot lower what a namespace holds.
   */
  private recordsTransaction(fn: () => void): void {
    try {
      this.ctx.storage.transactionSync(fn);
    } catch (err) {
      this.records.reload();
      throw err;
    }
  }

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
    const expired = this.records.expired(now);
    if (expired.length === 0) return [];
    const names = expired.map((r) => r.name);
    this.recordsTransaction(() => {
      for (const r of expired) {
        this.records.delete(r.name);
        this.holdName(r.name, r.owner_namespace, now);
      }
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
  changes(caller: Caller, epoch: string | null, since: number | null): Result<{ changes: ChangesWithTrust }> {
    const p = this.reader(caller);
    if ("ok" in p) return p;
    this.catchUp(this.now());
    return { ok: true, changes: { ...this.records.changesSince(epoch, since), ...this.routeInputs() } };
  }

  /** What routes depend on besides the records, with every answer a Worker's cache builds from. */
  private routeInputs(): { trust_bundle: string[]; shared_namespaces: string[] | null } {
    return { trust_bundle: this.ca.trustBundle(), shared_namespaces: this.policies.shared };
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
  ): Promise<Result<{ changes: ChangesWithTrust }>> {
    const p = this.reader(caller);
    if ("ok" in p) return p;
    this.catchUp(this.now());
    if (epoch === this.records.epoch && since === this.records.version && ms > 0) {
      await waitIn(this.waiters, since, ms);
    }
    return { ok: true, changes: { ...this.records.changesSince(epoch, since), ...this.routeInputs() } };
  }

  page(caller: Caller, after: string | null, limit: number): Result<{ page: RecordPageWithTrust }> {
    const p = this.reader(caller);
    if ("ok" in p) return p;
    this.catchUp(this.now());
    const page = this.records.page(after, Math.max(1, Math.min(limit, PAGE_MAX)));
    return { ok: true, page: { ...page, ...this.routeInputs() } };
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

  // ---- writes ---------------------------------------------------------------------

  /**
   * A node record may not take a name for which relay certificates issued to
   * another namespace (or to records without one) are unexpired: whoever holds
   * them could stand in for this record's relay, since peers check the name
   * (docs/identity.md). `at` is the record's place in an import (`[3].`).
   */
  private certifiedElsewhere(record: HopwayRecord, now: number, at = ""): Failure | null {
    if (record.type !== "node") return null;
    const namespace = record.metadata?.namespace_name ?? null;
    const held = this.ca.heldElsewhere(record.name, namespace, now);
    if (held === undefined) return null;
    const scope = (ns: string | null) => (ns === null ? "records without a namespace" : `namespace '${ns}'`);
    return fail(
      "name_certified",
      409,
      `relay certificates for '${record.name}' issued to ${held.namespaces.map(scope).join(" and ")} are unexpired, ` +
        `the last valid until ${new Date(held.until).toISOString()}: a record of this name in ${scope(namespace)} ` +
        "could be impersonated with them until then; use another name, or write it after that time",
      `${at}name`,
    );
  }

  /**
   * A name whose record of another namespace went away less than name_hold_seconds ago stays with
   * that namespace: another namespace's tokens may not take it yet (the admin may). `at` is the
   * record's place in an import.
   */
  private heldElsewhere(p: Principal, record: HopwayRecord, now: number, at = ""): Failure | null {
    if (p.role === "admin") return null;
    const hold = this.holds.holder(record.name, now);
    const namespace = recordNamespace(record);
    if (hold === undefined || hold.namespace === namespace) return null;
    // A token of the namespace holding the name may move it on, as it may move the record itself.
    if (p.namespaces?.includes(hold.namespace)) return null;
    return fail(
      "name_held",
      409,
      `a record '${record.name}' of namespace '${hold.namespace}' went away moments ago, and the name stays with ` +
        `that namespace until ${new Date(hold.until).toISOString()} (name_hold_seconds): its agent may be ` +
        "restarting; use another name, or write it after that time",
      `${at}name`,
    );
  }

  /**
   * A live lease belongs to the agent instance that took it (docs/contract/edge-api.md §4.7): a
   * write that names another instance is a second agent registering the same name, and would
   * otherwise replace the first one's record at every renewal, each pointing routes at itself.
   * Writes without an instance (the admin, tools, agents before instances) are not checked.
   */
  private inUseElsewhere(row: RecordRow | undefined, instance: string | null, now: number): Failure | null {
    if (row === undefined || instance === null || row.instance === null || row.instance === instance) return null;
    if (row.expires_at === null || row.expires_at <= now) return null;
    return fail(
      "name_in_use",
      409,
      `record '${row.name}' is registered by another agent (instance '${row.instance}') whose lease runs until ` +
        `${new Date(row.expires_at).toISOString()}: two agents register the same name. Give each agent its own ` +
        "node name; this one may take the name once that lease has ended",
      "name",
    );
  }

  /** Keeps a removed record's name with its namespace for name_hold_seconds. */
  private holdName(name: string, namespace: string | null, now: number): void {
    const seconds = nameHoldSeconds(this.limits.limits);
    if (namespace === null || seconds === 0) return;
    this.holds.hold(name, namespace, now + seconds * 1000, now, allowedIn(this.limits.limits, namespace).records);
  }

  putRecord(
    caller: Caller,
    record: HopwayRecord,
    ttlSeconds: number | null,
    instance: string | null = null,
  ): Result<PutResult> {
    // Authenticated, and charged to the token's write budget, before the lease upkeep below writes anything.
    const who = this.principal(caller, 1);
    if ("ok" in who) return who;
    // Leases that ended while the realm was not serving run again first, as for a heartbeat: what
    // this write finds (whose lease is live, for name_in_use) must not depend on which came first.
    this.catchUp(this.now());
    const existing = this.records.get(record.name);
    const p = this.writesIn(
      who,
      existing === undefined ? [recordNamespace(record)] : [recordNamespace(record), storedNamespace(existing)],
    );
    if ("ok" in p) return p;
    const refused = this.addressesAllowed(p, [record], false);
    if (refused !== null) return refused;
    const json = JSON.stringify(record);
    const large = tooLarge([record], [json], false);
    if (large !== null) return large;
    const over = this.overLimit([placement(record, json, existing, "")]);
    if (over !== null) return over;
    const now = this.now();
    const certified = this.certifiedElsewhere(record, now);
    if (certified !== null) return certified;
    const held = this.heldElsewhere(p, record, now);
    if (held !== null) return held;
    const inUse = this.inUseElsewhere(existing, instance, now);
    if (inUse !== null) return inUse;
    const lease = ttlSeconds === null ? null : { expiresAt: now + ttlSeconds * 1000, ttl: ttlSeconds };
    let changed = true;
    if (existing !== undefined && existing.json === json) {
      // Re-registering the same record only renews (or ends) the lease: routes did not change.
      changed = false;
      this.records.setLease(record.name, lease, instance);
    } else {
      const spent = this.overBudget(p, "change");
      if (spent !== null) return spent;
      this.recordsTransaction(() => {
        const v = this.records.bump([record.name]);
        this.records.upsert(record, json, lease, v, instance);
        if (existing === undefined) this.holds.release(record.name);
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

  /**
   * Whether the caller may import at all (a known, unrevoked token that is not a reader): asked
   * before the Worker reads and parses a body of up to 12 MiB for it.
   */
  mayImport(caller: Caller): Result<Record<never, never>> {
    const p = this.writer(caller, []);
    return "ok" in p ? p : { ok: true };
  }

  /**
   * The Worker asks `mayImport` first, which charged this import to the token's write budget: it
   * is not charged again here. Its change is charged below, once it is known to be allowed.
   */
  importRecords(caller: Caller, records: HopwayRecord[]): Result<WriteResult & { records: number }> {
    const p = this.principal(caller);
    if ("ok" in p) return p;
    this.catchUp(this.now());
    // parseRecords refuses duplicate names, so each placement is one distinct record.
    const placements: RecordPlacement[] = [];
    const texts = records.map((r) => JSON.stringify(r));
    for (const [i, r] of records.entries()) {
      const old = this.records.get(r.name);
      // Each record against the token's namespaces, so that a refusal names the record at fault.
      const scoped = this.writesIn(
        p,
        old === undefined ? [recordNamespace(r)] : [recordNamespace(r), storedNamespace(old)],
        { ...RECORDS, at: `[${i}].`, name: r.name },
      );
      if ("ok" in scoped) return scoped;
      placements.push(placement(r, texts[i] as string, old, `[${i}].`));
    }
    if (records.length === 0) {
      const scoped = this.writesIn(p, []);
      if ("ok" in scoped) return scoped;
    }
    // Checked before anything is written: a refused import stores nothing.
    const large = tooLarge(records, texts, true);
    if (large !== null) return large;
    const refused = this.addressesAllowed(p, records, true);
    if (refused !== null) return refused;
    const over = this.overLimit(placements);
    if (over !== null) return over;
    const now = this.now();
    for (const [i, r] of records.entries()) {
      const certified = this.certifiedElsewhere(r, now, `[${i}].`);
      if (certified !== null) return certified;
      const held = this.heldElsewhere(p, r, now, `[${i}].`);
      if (held !== null) return held;
    }
    if (records.length === 0) return { ok: true, version: this.records.version, records: 0 };
    // One version however many records: one change.
    const spent = this.overBudget(p, "change");
    if (spent !== null) return spent;
    this.recordsTransaction(() => {
      const v = this.records.bump(records.map((r) => r.name));
      for (const [i, r] of records.entries()) {
        this.records.upsert(r, texts[i] as string, null, v);
        this.holds.release(r.name);
      }
    });
    this.notify();
    // An import may add thousands of changelog rows at once: trim now rather than after 256 more writes.
    this.records.prune();
    this.scheduleAlarm();
    return { ok: true, version: this.records.version, records: records.length };
  }

  deleteRecord(caller: Caller, name: string, instance: string | null = null): Result<WriteResult> {
    // Authenticated, and charged to the token's write budget, before the lease upkeep below writes anything.
    const who = this.principal(caller, 1);
    if ("ok" in who) return who;
    this.catchUp(this.now());
    const existing = this.records.get(name);
    if (existing === undefined) return fail("unknown_node", 404, `no record named '${name}' in this realm`, "name");
    const p = this.writesIn(who, [storedNamespace(existing)]);
    if ("ok" in p) return p;
    const now = this.now();
    // An agent stopping must not delete the record another agent of the same name holds now.
    const inUse = this.inUseElsewhere(existing, instance, now);
    if (inUse !== null) return inUse;
    const spent = this.overBudget(p, "change");
    if (spent !== null) return spent;
    this.recordsTransaction(() => {
      this.records.delete(name);
      // The admin deleting a record (evicting a squatter, say) leaves its name free; an agent's
      // deletion (its pod shutting down) keeps the name for its namespace a while.
      if (p.role !== "admin") this.holdName(name, storedNamespace(existing), now);
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
   * Reports are per namespace: the report is stored under the namespace the
   * caller was checked against, and the view is read from that namespace only.
   */
  heartbeat(
    caller: Caller,
    name: string,
    ttlSeconds: number | null,
    report: ScalingReport | null,
    links: LinkState[] | null = null,
    instance: string | null = null,
  ): Result<HeartbeatResult> {
    // Authenticated, and charged to the token's write budget, before the lease upkeep below writes anything.
    const who = this.principal(caller, 1);
    if ("ok" in who) return who;
    const now = this.now();
    this.catchUp(now);
    let row = this.records.get(name);
    if (row !== undefined && row.expires_at !== null && row.expires_at <= now) {
      this.sweep(now);
      this.scheduleAlarm();
      row = undefined;
    }
    if (row === undefined) {
      return fail(
        "unknown_node",
        404,
        `no record named '${name}' (lease expired or never registered): register it again`,
        "name",
      );
    }
    // Whoever may write the record renews it: a group's namespace tokens too (the one it names), and
    // its reports, as every record's, count in that namespace only.
    const scope = storedNamespace(row);
    const p = this.writesIn(who, [scope]);
    if ("ok" in p) return p;
    const inUse = this.inUseElsewhere(row, instance, now);
    if (inUse !== null) return inUse;
    const ttl = ttlSeconds ?? row.ttl_seconds;
    const expiresAt = ttl === null ? null : now + ttl * 1000;
    // A heartbeat without an instance keeps the one that holds the lease; one with it claims a record written without.
    if (ttl !== null && expiresAt !== null) this.records.setLease(name, { expiresAt, ttl }, instance ?? row.instance);
    if (report !== null) this.records.setReport(name, report, scope, now);
    if (links !== null) this.keepLinkReport(name, scope, links, now);
    this.scheduleAlarm();
    const workload = report?.workload ?? row.workload;
    const result: HeartbeatResult = {
      version: this.records.version,
      expires_at: expiresAt === null ? null : new Date(expiresAt).toISOString(),
    };
    if (workload !== null) {
      result.scaling = computeWorkloadScaling(
        workload,
        this.records.workloadReports(workload, scope, now).map((r) => r.report),
      );
    }
    return { ok: true, ...result };
  }

  /**
   * The scaling view of a workload in one namespace (null: records without one):
   * the same workload name in two namespaces is two workloads. Without
   * `namespace`, the only namespace with live reports of it (for an agent
   * token, the only one among its own namespaces); several are refused rather
   * than guessed between.
   */
  workload(caller: Caller, workload: string, namespace?: string | null): Result<{ view: WorkloadView }> {
    const p = this.reader(caller);
    if ("ok" in p) return p;
    const now = this.now();
    this.catchUp(now);
    let scope = namespace;
    if (scope === undefined) {
      let found = this.records.workloadNamespaces(workload, now);
      if (p.role === "agent") found = found.filter((ns) => ns !== null && (p.namespaces ?? []).includes(ns));
      if (found.length > 1) {
        const names = found.map((ns) => (ns === null ? "(none)" : `'${ns}'`)).join(", ");
        return fail(
          "invalid_input",
          400,
          `pods of ${found.length} namespaces report workload '${workload}' (${names}), each its own workload: ` +
            "name one with ?namespace= (empty for records without a namespace)",
          "namespace",
        );
      }
      scope = found[0];
    }
    const live = scope === undefined ? [] : this.records.workloadReports(workload, scope, now);
    if (scope === undefined || live.length === 0) {
      const where =
        scope === undefined
          ? p.role === "agent"
            ? " in this token's namespaces"
            : ""
          : scope === null
            ? " from records without a namespace"
            : ` in namespace '${scope}'`;
      return fail("not_found", 404, `no live pod reports for workload '${workload}'${where}`, "workload");
    }
    return {
      ok: true,
      view: {
        version: this.records.version,
        namespace: scope,
        scaling: computeWorkloadScaling(
          workload,
          live.map((r) => r.report),
        ),
        pods: live.map((r) => ({ node: r.node, report: r.report, reported_at: new Date(r.reportedAt).toISOString() })),
      },
    };
  }

  /**
   * Every relay's reported links. A report outlives neither its record nor three lease
   * lengths (30 s ones for a permanent record), so a relay that stopped heartbeating stops
   * being shown as linked.
   */
  linkStatus(caller: Caller): Result<{ links: LinkStatus[] }> {
    const p = this.reader(caller);
    if ("ok" in p) return p;
    const now = this.now();
    const out: LinkStatus[] = [];
    this.sweepLinkReports(now);
    for (const [name, r] of this.linkReports) {
      const at = new Date(r.at).toISOString();
      for (const l of r.links) out.push({ from: name, ...l, reported_at: at });
    }
    out.sort((a, b) => (a.from === b.from ? (a.peer < b.peer ? -1 : 1) : a.from < b.from ? -1 : 1));
    return { ok: true, links: out };
  }

  /**
   * Keeps a relay's link report: only peers that are records of the realm (a relay links only to
   * relays of its route table), once each, and no more than the namespace's and the realm's share
   * of entries leaves room for; a report past it keeps its first entries that fit.
   */
  private keepLinkReport(name: string, namespace: string | null, links: LinkState[], now: number): void {
    this.dropLinkReport(name);
    const seen = new Set<string>();
    const known = links.filter((l) => {
      if (seen.has(l.peer) || this.records.get(l.peer) === undefined) return false;
      seen.add(l.peer);
      return true;
    });
    const room = () =>
      Math.min(
        LINK_ENTRIES_PER_NAMESPACE - (this.linkEntries.get(namespace) ?? 0),
        LINK_ENTRIES_PER_REALM - this.linkEntriesTotal,
      );
    // Reports of relays that stopped heartbeating still hold entries until swept: sweep before cutting.
    if (room() < known.length) this.sweepLinkReports(now);
    const kept = known.slice(0, Math.max(0, room()));
    this.linkReports.set(name, { links: kept, at: now, namespace });
    this.linkEntries.set(namespace, (this.linkEntries.get(namespace) ?? 0) + kept.length);
    this.linkEntriesTotal += kept.length;
  }

  private dropLinkReport(name: string): void {
    const r = this.linkReports.get(name);
    if (r === undefined) return;
    this.linkReports.delete(name);
    this.linkEntries.set(r.namespace, (this.linkEntries.get(r.namespace) ?? 0) - r.links.length);
    this.linkEntriesTotal -= r.links.length;
  }

  /** A report outlives neither its record nor three lease lengths (30 s ones for a permanent record). */
  private sweepLinkReports(now: number): void {
    for (const [name, r] of this.linkReports) {
      const row = this.records.get(name);
      const ttl = row?.ttl_seconds ?? 30;
      if (row === undefined || now - r.at > 3 * ttl * 1000) this.dropLinkReport(name);
    }
  }

  // ---- listener declarations (docs/listeners.md) ----------------------------------------

  /**
   * Declares (or replaces) a listener. The admin may declare for any namespace or none; an agent
   * token only in its own namespaces, and never over another namespace's declaration of that name.
   */
  putListener(caller: Caller, name: string, decl: ListenerDeclaration): Result<{ version: number; created: boolean }> {
    const stored = this.listeners.namespaceOf(name);
    const namespaces: Array<string | null> = [decl.namespace ?? null];
    if (stored !== undefined) namespaces.push(stored);
    const p = this.writer(caller, namespaces, LISTENERS);
    if ("ok" in p) return p;
    if (stored === undefined && this.listeners.count() >= MAX_LISTENERS) {
      return fail("invalid_input", 400, `a realm holds at most ${MAX_LISTENERS} listener declarations`, "name");
    }
    const ns = decl.namespace;
    if (ns !== undefined && stored !== ns && this.listeners.countIn(ns) >= MAX_LISTENERS_PER_NAMESPACE) {
      return fail(
        "invalid_input",
        400,
        `a namespace holds at most ${MAX_LISTENERS_PER_NAMESPACE} listener declarations; '${ns}' has them`,
        "namespace",
      );
    }
    const named: NamedListenerDeclaration = { name, ...decl };
    if (this.listeners.put(named)) this.wakeListenerWaiters();
    return { ok: true, version: this.listeners.version, created: stored === undefined };
  }

  deleteListener(caller: Caller, name: string): Result<{ version: number }> {
    const stored = this.listeners.namespaceOf(name);
    if (stored === undefined) {
      const p = this.reader(caller);
      if ("ok" in p) return p;
      return fail("not_found", 404, `no listener named '${name}' in this realm`, "name");
    }
    const p = this.writer(caller, [stored], LISTENERS);
    if ("ok" in p) return p;
    if (this.listeners.delete(name)) this.wakeListenerWaiters();
    return { ok: true, version: this.listeners.version };
  }

  /**
   * The declarations the caller follows, and their version: an agent token gets its namespaces'
   * and the admin's (docs/listeners.md), any other role every one. With `since` equal to that
   * version, waits up to `ms` for it to change; another namespace's changes do not end the wait.
   */
  async listenerDeclarations(
    caller: Caller,
    since: number | null,
    ms: number,
  ): Promise<Result<{ version: number; listeners: NamedListenerDeclaration[] }>> {
    const p = this.reader(caller);
    if ("ok" in p) return p;
    const scope = p.role === "agent" ? (p.namespaces ?? []) : null;
    const view = () =>
      scope === null
        ? { version: this.listeners.version, listeners: this.listeners.list() }
        : this.listeners.view(scope);
    const deadline = Date.now() + ms;
    let current = view();
    while (since === current.version && Date.now() < deadline) {
      await waitIn(this.listenerWaiters, since, deadline - Date.now());
      current = view();
    }
    return { ok: true, ...current };
  }

  private wakeListenerWaiters(): void {
    for (const w of this.listenerWaiters) w.wake();
  }

  private writesSincePrune = 0;
  private maybePrune(): void {
    if (++this.writesSincePrune < 256) return;
    this.writesSincePrune = 0;
    this.records.prune();
    this.holds.prune(this.now());
  }

  // ---- gateway address policy ------------------------------------------------------

  getPolicy(caller: Caller): Result<{ policy: AddressPolicy }> {
    const p = this.admin(caller);
    if ("ok" in p) return p;
    return { ok: true, policy: this.policies.policy };
  }

  /**
   * Replaces the policy. Its address and name rules govern writes from now on; records already
   * stored are not re-checked. Its shared namespaces decide routes (docs/contract/records.md §2.3),
   * so a change to them is a realm version: it wakes long-polls and changes every ETag.
   */
  setPolicy(caller: Caller, policy: AddressPolicy): Result<{ policy: AddressPolicy }> {
    const p = this.admin(caller);
    if ("ok" in p) return p;
    return this.storePolicy(policy);
  }

  /**
   * Sets only the shared namespaces (null: every namespace), keeping the address and name rules:
   * read and written in one synchronous step, so no other policy write falls between them.
   */
  setSharedNamespaces(caller: Caller, shared: string[] | null): Result<{ policy: AddressPolicy }> {
    const p = this.admin(caller);
    if ("ok" in p) return p;
    const { shared_namespaces: _, ...rules } = this.policies.policy;
    return this.storePolicy(shared === null ? rules : { ...rules, shared_namespaces: shared });
  }

  private storePolicy(policy: AddressPolicy): Result<{ policy: AddressPolicy }> {
    const before = JSON.stringify(this.policies.shared);
    let moved = false;
    this.recordsTransaction(() => {
      this.policies.replace(policy);
      moved = JSON.stringify(this.policies.shared) !== before;
      if (moved) this.records.bump([]);
    });
    if (moved) this.notify();
    return { ok: true, policy: this.policies.policy };
  }

  // ---- record limits (docs/contract/edge-api.md §14) ------------------------------------

  /** Whether storing `placements` takes the realm or a namespace past its record limit; admin writes count too. */
  private overLimit(placements: readonly RecordPlacement[]): Failure | null {
    const refusal = limitRefusal(this.limits.limits, placements, (ns) => this.records.usage(ns));
    return refusal === null ? null : limitFailure(refusal);
  }

  private limitsView(): RealmLimitsView {
    const limits = this.limits.limits;
    const realm = allowedInRealm(limits);
    const each = perNamespace(limits);
    const total = this.records.usage(null);
    return {
      records_per_realm: realm.records,
      bytes_per_realm: realm.bytes,
      records_per_namespace: each.records,
      bytes_per_namespace: each.bytes,
      namespaces: { ...(limits.namespaces ?? {}) },
      name_hold_seconds: nameHoldSeconds(limits),
      token_writes_per_second: limits.token_writes_per_second ?? DEFAULT_TOKEN_WRITES_PER_SECOND,
      token_write_burst: limits.token_write_burst ?? DEFAULT_TOKEN_WRITE_BURST,
      token_changes_per_second: limits.token_changes_per_second ?? DEFAULT_TOKEN_CHANGES_PER_SECOND,
      token_change_burst: limits.token_change_burst ?? DEFAULT_TOKEN_CHANGE_BURST,
      tokens: { ...(limits.tokens ?? {}) },
      usage: { records: total.records, bytes: total.bytes, namespaces: this.usageWithHolds() },
    };
  }

  /** What each namespace holds, and how many names it holds without a record (name holds). */
  private usageWithHolds(): RealmLimitsView["usage"]["namespaces"] {
    const out: RealmLimitsView["usage"]["namespaces"] = this.records.usageByNamespace();
    for (const [ns, holds] of this.holds.countsByNamespace(this.now())) {
      const u = ownEntry(out, ns);
      setOwn(out, ns, { records: u?.records ?? 0, bytes: u?.bytes ?? 0, held_names: holds });
    }
    return out;
  }

  getLimits(caller: Caller): Result<{ limits: RealmLimitsView }> {
    const p = this.admin(caller);
    if ("ok" in p) return p;
    return { ok: true, limits: this.limitsView() };
  }

  /**
   * Replaces the limits. They govern writes from now on: records already stored stay, and a
   * namespace over a lowered limit can replace, renew and delete its records but add none.
   */
  setLimits(caller: Caller, limits: RealmLimits): Result<{ limits: RealmLimitsView }> {
    const p = this.admin(caller);
    if ("ok" in p) return p;
    const now = this.now();
    this.ctx.storage.transactionSync(() => {
      this.limits.replace(limits);
      // A shorter hold applies to the names held now too (0 frees them at once); a longer one only
      // to names let go from now on, since when a name was let go is not kept.
      this.holds.shorten(now + nameHoldSeconds(this.limits.limits) * 1000, now);
    });
    return { ok: true, limits: this.limitsView() };
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

  // ---- relay certificate authority (docs/identity.md) ------------------------------------

  /** A trust-bundle change is a realm version: it wakes long-polls and changes every ETag. */
  private installAuthority(prepared: Awaited<ReturnType<CaStore["prepareAuthority"]>>): boolean {
    let stored = false;
    this.recordsTransaction(() => {
      stored = this.ca.store(prepared);
      if (stored) this.records.bump([]);
    });
    if (stored) this.notify();
    return stored;
  }

  private async activeAuthority(realm: string): Promise<AuthorityRow> {
    const active = this.ca.active();
    if (active !== undefined) return active;
    this.caCreation ??= (async () => {
      try {
        this.installAuthority(await this.ca.prepareAuthority(realm, 1, this.now()));
      } finally {
        this.caCreation = undefined;
      }
    })();
    await this.caCreation;
    return this.ca.active()!;
  }

  /**
   * Signs a leaf for relay `name` with the active CA. Only for a node record the
   * caller may write: the admin, or an agent token holding the record's namespace.
   * `publicKey` is SPKI DER the Worker already checked to be P-256.
   */
  async issueCertificate(
    caller: Caller,
    realm: string,
    name: string,
    publicKey: Uint8Array,
  ): Promise<Result<{ issued: IssuedCertificate }>> {
    const p = this.principal(caller, 1);
    if ("ok" in p) return p;
    if (p.role === "reader") return fail("forbidden", 403, "a reader token cannot obtain relay certificates");
    const row = this.records.get(name);
    if (row === undefined) return fail("unknown_node", 404, `no record named '${name}' in this realm`, "name");
    const record = JSON.parse(row.json) as HopwayRecord;
    if (record.type !== "node") {
      return fail("invalid_input", 400, `'${name}' is a ${record.type} record; only node records are relays`, "name");
    }
    const w = this.writesIn(p, [row.namespace]);
    if ("ok" in w) return w;
    const now = this.now();
    this.ca.pruneExpired(now);
    const certified = this.certifiedElsewhere(record, now);
    if (certified !== null) return certified;
    // Counted within the record's namespace: another namespace's certificates for the name never use up its limit.
    const outstanding = this.ca.outstandingFor(name, row.namespace, now);
    if (outstanding >= MAX_OUTSTANDING_PER_NAME) {
      return fail(
        "conflict",
        409,
        `'${name}' already holds ${outstanding} unexpired certificates (at most ${MAX_OUTSTANDING_PER_NAME}); reuse one`,
        "name",
      );
    }
    // Records without a namespace are the admin's: only the realm's record limit bounds them.
    const ns = row.namespace;
    const nsRecords =
      ns === null ? allowedInRealm(this.limits.limits).records : allowedIn(this.limits.limits, ns).records;
    const nsCap = OUTSTANDING_PER_NAMESPACE_RECORD * Math.max(1, nsRecords);
    const inNamespace = this.ca.outstandingIn(ns, now);
    if (inNamespace >= nsCap) {
      const whose = ns === null ? "records without a namespace" : `namespace '${ns}'`;
      return fail(
        "conflict",
        409,
        `${whose} already holds ${inNamespace} unexpired relay certificates (at most ${nsCap}: ${OUTSTANDING_PER_NAMESPACE_RECORD} per record it may hold); they free up as they expire`,
        "name",
      );
    }
    const authority = await this.activeAuthority(realm);
    const leaf = await this.ca.sign(authority, {
      realm,
      name,
      publicKey,
      now,
      lifetimeMs: this.ca.lifetimeSeconds * 1000,
    });
    // Retiring checks the issued leaves: a leaf signed by a CA retired meanwhile must not go out unrecorded.
    if (!this.ca.hasGeneration(authority.generation)) {
      return fail("conflict", 409, "the realm CA changed while signing; ask again", "name");
    }
    // The record may have gone, or moved to another namespace, while signing: a leaf recorded under
    // its old namespace would let that namespace hold the name's certificate past the check above.
    if (this.records.get(name)?.namespace !== row.namespace) {
      return fail("conflict", 409, `'${name}' was removed or changed namespace while signing; ask again`, "name");
    }
    this.ca.record(leaf.serialHex, authority.generation, name, row.namespace, leaf.notAfter);
    return {
      ok: true,
      issued: {
        certificate: leaf.pem,
        chain: [leaf.pem],
        trust_bundle: this.ca.trustBundle(),
        not_after: new Date(leaf.notAfter).toISOString(),
        uri: leaf.uri,
        serial: leaf.serialHex,
      },
    };
  }

  trustBundle(caller: Caller): Result<TrustBundle> {
    const p = this.reader(caller);
    if ("ok" in p) return p;
    return { ok: true, version: this.records.version, trust_bundle: this.ca.trustBundle() };
  }

  private caStatus(extra: { retired?: number[] } = {}): { ok: true } & CaStatus {
    return {
      ok: true,
      version: this.records.version,
      cert_lifetime_seconds: this.ca.lifetimeSeconds,
      authorities: this.ca.authorities(this.now()),
      ...extra,
    };
  }

  getCa(caller: Caller): Result<CaStatus> {
    const p = this.admin(caller);
    if ("ok" in p) return p;
    return this.caStatus();
  }

  setCa(caller: Caller, certLifetimeSeconds: number): Result<CaStatus> {
    const p = this.admin(caller);
    if ("ok" in p) return p;
    this.ca.setLifetimeSeconds(certLifetimeSeconds);
    return this.caStatus();
  }

  /** A new CA signs from now on; the old one stays trusted until retired. */
  async rotateCa(caller: Caller, realm: string): Promise<Result<CaStatus>> {
    const p = this.admin(caller);
    if ("ok" in p) return p;
    const current = this.ca.active();
    if (current === undefined) {
      await this.activeAuthority(realm);
      return this.caStatus();
    }
    const prepared = await this.ca.prepareAuthority(realm, current.generation + 1, this.now());
    if (!this.installAuthority(prepared)) {
      return fail("conflict", 409, "another rotation ran at the same time; look at GET /ca and retry if needed");
    }
    return this.caStatus();
  }

  /**
   * Drops every CA but the active one, only when none of them has an unexpired
   * leaf out: a peer holding one would otherwise be refused before its renewal.
   */
  retireOldCa(caller: Caller): Result<CaStatus> {
    const p = this.admin(caller);
    if ("ok" in p) return p;
    const now = this.now();
    this.ca.pruneExpired(now);
    const old = this.ca.authorities(now).filter((a) => !a.active);
    const busy = old.filter((a) => a.outstanding_certificates > 0);
    if (busy.length > 0) {
      const n = busy.reduce((sum, a) => sum + a.outstanding_certificates, 0);
      const until = busy.map((a) => a.outstanding_until ?? "").sort()[busy.length - 1];
      return fail(
        "conflict",
        409,
        `the old CA still has ${n} unexpired certificate(s), the last valid until ${until}; retry after that`,
      );
    }
    if (old.length > 0) {
      this.recordsTransaction(() => {
        for (const a of old) this.ca.drop(a.generation);
        this.records.bump([]);
      });
      this.notify();
    }
    return this.caStatus({ retired: old.map((a) => a.generation) });
  }
}
