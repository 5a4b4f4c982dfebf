// The realm directory: one object that knows which realms exist. Realms are
// created only by the admin (PUT /v1/realms/{realm}); the Worker asks this
// object before it lets an admin request reach a realm, so an admin typo gets
// 404 unknown_realm instead of an empty realm that nobody meant to create.
// Token requests never come here: their MAC already names a realm that
// exists. Reads write nothing, not even the table, so asking about a realm
// that does not exist leaves storage as it was.
import { DurableObject } from "cloudflare:workers";

/** The single directory's name (idFromName). */
export const DIRECTORY_NAME = "directory";

export class DirectoryObject extends DurableObject<Env> {
  private hasTable(): boolean {
    return (
      this.ctx.storage.sql
        .exec<{ n: number }>("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'realms'")
        .one().n > 0
    );
  }

  exists(realm: string): boolean {
    if (!this.hasTable()) return false;
    return this.ctx.storage.sql.exec("SELECT 1 FROM realms WHERE name = ?", realm).toArray().length > 0;
  }

  /** Idempotent: false when the realm was already there. */
  create(realm: string, now: number): { created: boolean; created_at: string } {
    const sql = this.ctx.storage.sql;
    sql.exec("CREATE TABLE IF NOT EXISTS realms (name TEXT PRIMARY KEY, created_at INTEGER NOT NULL) WITHOUT ROWID");
    const created =
      sql.exec("INSERT OR IGNORE INTO realms (name, created_at) VALUES (?, ?)", realm, now).rowsWritten > 0;
    const at = sql.exec<{ created_at: number }>("SELECT created_at FROM realms WHERE name = ?", realm).one().created_at;
    return { created, created_at: new Date(at).toISOString() };
  }

  list(): { name: string; created_at: string }[] {
    if (!this.hasTable()) return [];
    return this.ctx.storage.sql
      .exec<{ name: string; created_at: number }>("SELECT name, created_at FROM realms ORDER BY name")
      .toArray()
      .map((r) => ({ name: r.name, created_at: new Date(r.created_at).toISOString() }));
  }
}
