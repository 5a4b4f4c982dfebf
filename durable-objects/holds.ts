// Names that stay with their namespace for a while after their record went
// away (docs/contract/edge-api.md §14), in SQLite (migration nameHolds).
import type { Sql } from "./migrations.ts";

export interface NameHold {
  namespace: string;
  until: number;
}

export class NameHoldStore {
  constructor(private readonly sql: Sql) {}

  /** Who holds `name` at `now`, if anyone. */
  holder(name: string, now: number): NameHold | undefined {
    return this.sql
      .exec<{ namespace: string; until: number }>(
        "SELECT namespace, until FROM name_holds WHERE name = ? AND until > ?",
        name,
        now,
      )
      .toArray()[0];
  }

  /**
   * Keeps `name` for `namespace` until `until`, unless the namespace already holds `cap` names:
   * holds are storage a tenant makes by deleting records, so one that churns names loses the
   * protection for its own names rather than growing this table without bound.
   */
  hold(name: string, namespace: string, until: number, now: number, cap: number): void {
    // Holds that ended go first (indexed by `until`), so that only live ones take room, here and on disk.
    this.prune(now);
    const held = this.sql
      .exec<{ n: number }>("SELECT count(*) AS n FROM name_holds WHERE namespace = ? AND until > ?", namespace, now)
      .one().n;
    if (held >= cap) return;
    this.sql.exec(
      "INSERT OR REPLACE INTO name_holds (name, namespace, until) VALUES (?, ?, ?)",
      name,
      namespace,
      until,
    );
  }

  /** Live holds per namespace, namespaces holding none left out. */
  countsByNamespace(now: number): Map<string, number> {
    const rows = this.sql.exec<{ namespace: string; n: number }>(
      "SELECT namespace, count(*) AS n FROM name_holds WHERE until > ? GROUP BY namespace",
      now,
    );
    return new Map([...rows].map((r) => [r.namespace, r.n]));
  }

  /** Ends every hold at `until` at the latest (a shorter name_hold_seconds); ended ones go. */
  shorten(until: number, now: number): void {
    this.sql.exec("UPDATE name_holds SET until = ? WHERE until > ?", until, until);
    this.prune(now);
  }

  release(name: string): void {
    this.sql.exec("DELETE FROM name_holds WHERE name = ?", name);
  }

  prune(now: number): void {
    this.sql.exec("DELETE FROM name_holds WHERE until <= ?", now);
  }
}
