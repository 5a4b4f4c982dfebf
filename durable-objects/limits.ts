// The realm's record limits (docs/contract/edge-api.md §14), as the admin set
// them, in the meta table: read once per object start and on every change, so
// a write checks against memory.
import type { RealmLimits } from "../src/core/limits.ts";
import type { Sql } from "./migrations.ts";

const KEY = "limits";

export class LimitStore {
  private cached: RealmLimits;

  constructor(private readonly sql: Sql) {
    this.cached = this.load();
  }

  private load(): RealmLimits {
    const row = this.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = ?", KEY).toArray()[0];
    return row === undefined ? {} : (JSON.parse(row.value) as RealmLimits);
  }

  get limits(): RealmLimits {
    return this.cached;
  }

  /** Replaces the whole setting; `{}` is every default. */
  replace(limits: RealmLimits): void {
    this.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", KEY, JSON.stringify(limits));
    this.cached = this.load();
  }
}
