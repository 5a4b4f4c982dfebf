// The versioned record store of one realm: records, leases, autoscaling
// reports and the changelog from which Worker isolates catch up. Every method
// is synchronous SQL, so a caller that does not await between calls is atomic
// inside the Durable Object (its input gate admits no other event meanwhile).
import { recordNamespace } from "../src/core/group.ts";
import { type Usage, utf8Length } from "../src/core/limits.ts";
import { type HopwayRecord, type ScalingReport, setOwn } from "../src/core/schema.ts";
import type { Changes, RecordChange, RecordPage } from "../src/edge/types.ts";
import type { Sql } from "./migrations.ts";

/** Changelog rows kept; older history is dropped and isolates that far behind reload by pages. */
export const CHANGELOG_ROWS = 50_000;
/** A delta naming more records than this is answered with `reset` (paged reload is cheaper). */
export const MAX_DELTA = 5_000;

export interface RecordRow extends Record<string, SqlStorageValue> {
  name: string;
  json: string;
  namespace: string | null;
  /** The namespace whose agent tokens may write the record (recordNamespace: a group's is the one it names). */
  owner_namespace: string | null;
  expires_at: number | null;
  ttl_seconds: number | null;
  updated_version: number;
  workload: string | null;
  report: string | null;
  report_at: number | null;
  /** The namespace of the record when it reported (null: a record without one); reports are read per namespace. */
  report_namespace: string | null;
  /** The agent instance that holds the lease (`Hopway-Instance`); null when written without one. */
  instance: string | null;
}

export function namespaceOf(record: HopwayRecord): string | null {
  return record.type === "group" ? null : (record.metadata?.namespace_name ?? null);
}

export class RecordStore {
  private versionCache: number;
  private readonly epochValue: string;

  /**
   * What the realm and each namespace hold, kept in memory from one scan at start so that the
   * record limits cost no table scan per write (docs/contract/edge-api.md §14).
   */
  private readonly total: Usage = { records: 0, bytes: 0 };
  private readonly byNamespace = new Map<string, Usage>();

  constructor(private readonly sql: Sql) {
    this.versionCache = Number(this.meta("version"));
    this.epochValue = this.meta("epoch") ?? "";
    this.loadUsage();
  }

  /** Sizes are UTF-8 bytes of the stored JSON, as `utf8Length` counts them on the way in. */
  private loadUsage(): void {
    this.total.records = 0;
    this.total.bytes = 0;
    this.byNamespace.clear();
    const rows = this.sql.exec<{ owner: string | null; n: number; bytes: number }>(
      "SELECT owner_namespace AS owner, count(*) AS n, coalesce(sum(length(CAST(json AS BLOB))), 0) AS bytes FROM records GROUP BY owner_namespace",
    );
    for (const r of rows) {
      this.total.records += r.n;
      this.total.bytes += r.bytes;
      if (r.owner !== null) this.byNamespace.set(r.owner, { records: r.n, bytes: r.bytes });
    }
  }

  /**
   * Reads the version and the usage back from the tables. A transaction that threw was rolled back
   * by SQLite, but the calls inside it had already moved these in memory.
   */
  reload(): void {
    this.versionCache = Number(this.meta("version"));
    this.loadUsage();
  }

  private meta(key: string): string | undefined {
    return this.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = ?", key).toArray()[0]?.value;
  }

  get version(): number {
    return this.versionCache;
  }

  get epoch(): string {
    return this.epochValue;
  }

  /** One new realm version covering every name in `names`. */
  bump(names: Iterable<string>): number {
    const v = this.versionCache + 1;
    this.sql.exec("UPDATE meta SET value = ? WHERE key = 'version'", String(v));
    for (const name of names) this.sql.exec("INSERT OR IGNORE INTO changelog (version, name) VALUES (?, ?)", v, name);
    this.versionCache = v;
    return v;
  }

  get(name: string): RecordRow | undefined {
    return this.sql.exec<RecordRow>("SELECT * FROM records WHERE name = ?", name).toArray()[0];
  }

  /**
   * A record that moves to another namespace leaves its scaling report behind:
   * the report was the old namespace's and must not count in the new one's
   * workloads (the record's next heartbeat reports again).
   */
  upsert(
    record: HopwayRecord,
    json: string,
    lease: { expiresAt: number; ttl: number } | null,
    version: number,
    instance: string | null = null,
  ): void {
    const before = this.footprint(record.name);
    this.sql.exec(
      `INSERT INTO records (name, json, namespace, owner_namespace, expires_at, ttl_seconds, updated_version, instance)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET json = excluded.json, namespace = excluded.namespace,
         owner_namespace = excluded.owner_namespace, instance = excluded.instance,
         expires_at = excluded.expires_at, ttl_seconds = excluded.ttl_seconds,
         updated_version = excluded.updated_version,
         workload = iif(records.owner_namespace IS excluded.owner_namespace, records.workload, NULL),
         report = iif(records.owner_namespace IS excluded.owner_namespace, records.report, NULL),
         report_at = iif(records.owner_namespace IS excluded.owner_namespace, records.report_at, NULL),
         report_namespace = iif(records.owner_namespace IS excluded.owner_namespace, records.report_namespace, NULL)`,
      record.name,
      json,
      namespaceOf(record),
      recordNamespace(record),
      lease?.expiresAt ?? null,
      lease?.ttl ?? null,
      version,
      instance,
    );
    if (before !== undefined) this.account(before, -1);
    // What was just stored, counted as `footprint` reads it back (UTF-8 bytes of the JSON).
    this.account({ owner: recordNamespace(record), bytes: utf8Length(json) }, 1);
  }

  /** What the realm (null) or one owning namespace (groups: the namespace they name) holds now. */
  usage(namespace: string | null): Usage {
    const u = namespace === null ? this.total : this.byNamespace.get(namespace);
    return { records: u?.records ?? 0, bytes: u?.bytes ?? 0 };
  }

  /** What each owning namespace holds, namespaces holding nothing left out. */
  usageByNamespace(): Record<string, Usage> {
    const out: Record<string, Usage> = {};
    for (const ns of [...this.byNamespace.keys()].sort()) setOwn(out, ns, this.usage(ns));
    return out;
  }

  /** The stored size and owner of one record, as `usage` counts them. */
  private footprint(name: string): { owner: string | null; bytes: number } | undefined {
    return this.sql
      .exec<{ owner: string | null; bytes: number }>(
        "SELECT owner_namespace AS owner, length(CAST(json AS BLOB)) AS bytes FROM records WHERE name = ?",
        name,
      )
      .toArray()[0];
  }

  private account(f: { owner: string | null; bytes: number }, sign: 1 | -1): void {
    this.total.records += sign;
    this.total.bytes += sign * f.bytes;
    if (f.owner === null) return;
    const u = this.byNamespace.get(f.owner) ?? { records: 0, bytes: 0 };
    u.records += sign;
    u.bytes += sign * f.bytes;
    if (u.records <= 0) this.byNamespace.delete(f.owner);
    else this.byNamespace.set(f.owner, u);
  }

  setLease(name: string, lease: { expiresAt: number; ttl: number } | null, instance: string | null): void {
    this.sql.exec(
      "UPDATE records SET expires_at = ?, ttl_seconds = ?, instance = ? WHERE name = ?",
      lease?.expiresAt ?? null,
      lease?.ttl ?? null,
      instance,
      name,
    );
  }

  /** Stores a record's report under `namespace`, the record's own (null: a record without one). */
  setReport(name: string, report: ScalingReport, namespace: string | null, now: number): void {
    this.sql.exec(
      "UPDATE records SET workload = ?, report = ?, report_at = ?, report_namespace = ? WHERE name = ?",
      report.workload,
      JSON.stringify(report),
      now,
      namespace,
      name,
    );
  }

  delete(name: string): boolean {
    const before = this.footprint(name);
    if (before === undefined) return false;
    this.sql.exec("DELETE FROM records WHERE name = ?", name);
    this.account(before, -1);
    return true;
  }

  /** Leases that ended at or before `endedBy` run again for their own TTL from `now`; returns how many. */
  extendOverdue(endedBy: number, now: number): number {
    return this.sql.exec(
      "UPDATE records SET expires_at = ? + ttl_seconds * 1000 WHERE expires_at IS NOT NULL AND expires_at <= ? AND ttl_seconds IS NOT NULL",
      now,
      endedBy,
    ).rowsWritten;
  }

  /** Leases ended at `now`, with the namespace that owned each record. */
  expired(now: number): Array<{ name: string; owner_namespace: string | null }> {
    return this.sql
      .exec<{ name: string; owner_namespace: string | null }>(
        "SELECT name, owner_namespace FROM records WHERE expires_at IS NOT NULL AND expires_at <= ?",
        now,
      )
      .toArray();
  }

  nextExpiry(): number | null {
    return this.sql
      .exec<{ t: number | null }>("SELECT min(expires_at) AS t FROM records WHERE expires_at IS NOT NULL")
      .one().t;
  }

  /**
   * Live reports of a workload in one namespace (null: records without one): a
   * report lives as long as its record (and its lease). Reports of the same
   * workload name from another namespace are another workload.
   */
  workloadReports(
    workload: string,
    namespace: string | null,
    now: number,
  ): { node: string; report: ScalingReport; reportedAt: number }[] {
    return this.sql
      .exec<RecordRow>(
        `SELECT * FROM records WHERE workload = ? AND report_namespace IS ? AND (expires_at IS NULL OR expires_at > ?)
          ORDER BY name`,
        workload,
        namespace,
        now,
      )
      .toArray()
      .map((r) => ({ node: r.name, report: JSON.parse(r.report ?? "null"), reportedAt: r.report_at ?? 0 }));
  }

  /** The namespaces (null: records without one) with live reports of `workload`. */
  workloadNamespaces(workload: string, now: number): Array<string | null> {
    return this.sql
      .exec<{ ns: string | null }>(
        `SELECT DISTINCT report_namespace AS ns FROM records
          WHERE workload = ? AND (expires_at IS NULL OR expires_at > ?) ORDER BY ns`,
        workload,
        now,
      )
      .toArray()
      .map((r) => r.ns);
  }

  changesSince(epoch: string | null, since: number | null): Changes {
    const version = this.versionCache;
    const base = { epoch: this.epochValue, version };
    if (epoch !== this.epochValue || since === null || since > version) return { kind: "reset", ...base };
    if (since === version) return { kind: "current", ...base };
    const floor = Number(this.meta("log_floor") ?? "0");
    if (since < floor) return { kind: "reset", ...base };
    const rows = this.sql
      .exec<{ name: string; json: string | null }>(
        `SELECT c.name AS name, r.json AS json
           FROM (SELECT DISTINCT name FROM changelog WHERE version > ?) c
           LEFT JOIN records r ON r.name = c.name
          LIMIT ?`,
        since,
        MAX_DELTA + 1,
      )
      .toArray();
    if (rows.length > MAX_DELTA) return { kind: "reset", ...base };
    const changes: RecordChange[] = rows.map((r) => ({
      name: r.name,
      record: r.json === null ? null : (JSON.parse(r.json) as HopwayRecord),
    }));
    return { kind: "delta", ...base, changes };
  }

  page(after: string | null, limit: number): RecordPage {
    const rows = this.sql
      .exec<{ name: string; json: string }>(
        "SELECT name, json FROM records WHERE name > ? ORDER BY name LIMIT ?",
        after ?? "",
        limit + 1,
      )
      .toArray();
    const more = rows.length > limit;
    const slice = more ? rows.slice(0, limit) : rows;
    return {
      epoch: this.epochValue,
      version: this.versionCache,
      records: slice.map((r) => JSON.parse(r.json) as HopwayRecord),
      next: more ? (slice[slice.length - 1]?.name ?? null) : null,
    };
  }

  /** Drops changelog history beyond CHANGELOG_ROWS rows; isolates older than the new floor reload. */
  prune(): void {
    const cut = this.sql
      .exec<{ version: number }>("SELECT version FROM changelog ORDER BY version DESC LIMIT 1 OFFSET ?", CHANGELOG_ROWS)
      .toArray()[0];
    if (cut === undefined) return;
    this.sql.exec("DELETE FROM changelog WHERE version <= ?", cut.version);
    this.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('log_floor', ?)", String(cut.version));
  }
}
