// Listener declarations of one realm (docs/listeners.md): which relays bind
// which local address for which target. A counter of their own moves with each
// change, so agents long-poll declarations without waking on record changes.
import type { NamedListenerDeclaration } from "../src/core/listener.ts";
import type { Sql } from "./migrations.ts";

/** Declarations a realm may hold: each is one listening socket on every relay it selects. */
export const MAX_LISTENERS = 1024;
/**
 * Declarations one namespace may hold, so that no tenant can use up the realm's (docs/listeners.md).
 * The admin's declarations without a namespace count only against the realm's.
 */
export const MAX_LISTENERS_PER_NAMESPACE = 128;
/** `meta` key prefix of the version at which a namespace's declarations last changed ("" for the admin's). */
const VERSION_OF = "listeners_version:";

interface Row extends Record<string, SqlStorageValue> {
  name: string;
  namespace: string | null;
  json: string;
}

export class ListenerStore {
  private versionCache: number;

  constructor(private readonly sql: Sql) {
    const row = sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'listeners_version'").toArray()[0];
    this.versionCache = Number(row?.value ?? "0");
  }

  get version(): number {
    return this.versionCache;
  }

  /** The namespace of a stored declaration: undefined = none stored; null = an admin's, for any namespace. */
  namespaceOf(name: string): string | null | undefined {
    const row = this.sql.exec<Row>("SELECT name, namespace, json FROM listeners WHERE name = ?", name).toArray()[0];
    return row === undefined ? undefined : row.namespace;
  }

  count(): number {
    return this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM listeners").one().n;
  }

  countIn(namespace: string): number {
    return this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM listeners WHERE namespace = ?", namespace).one().n;
  }

  list(): NamedListenerDeclaration[] {
    return this.sql
      .exec<Row>("SELECT name, namespace, json FROM listeners ORDER BY name")
      .toArray()
      .map((r) => JSON.parse(r.json) as NamedListenerDeclaration);
  }

  /**
   * What an agent of `namespaces` follows: their declarations and the admin's (no namespace), and
   * the version at which that part last changed. Another namespace's changes leave both as they
   * were, so they neither wake its long-poll nor make it download, parse and save the realm's whole
   * list. A namespace changed only before these versions were kept counts as changed at 0.
   */
  view(namespaces: readonly string[]): { version: number; listeners: NamedListenerDeclaration[] } {
    const keys = [...new Set(namespaces)];
    const marks = ["", ...keys].map((ns) => `${VERSION_OF}${ns}`);
    const version = this.sql
      .exec<{ value: string }>(`SELECT value FROM meta WHERE key IN (${marks.map(() => "?").join(",")})`, ...marks)
      .toArray()
      .reduce((v, r) => Math.max(v, Number(r.value)), 0);
    const listeners = this.sql
      .exec<Row>(
        `SELECT name, namespace, json FROM listeners WHERE namespace IS NULL${
          keys.length > 0 ? ` OR namespace IN (${keys.map(() => "?").join(",")})` : ""
        } ORDER BY name`,
        ...keys,
      )
      .toArray()
      .map((r) => JSON.parse(r.json) as NamedListenerDeclaration);
    return { version, listeners };
  }

  /** Stores it; false when the stored one was the same (no new version). */
  put(decl: NamedListenerDeclaration): boolean {
    const json = JSON.stringify(decl);
    const old = this.sql
      .exec<Row>("SELECT name, namespace, json FROM listeners WHERE name = ?", decl.name)
      .toArray()[0];
    if (old?.json === json) return false;
    this.sql.exec(
      "INSERT OR REPLACE INTO listeners (name, namespace, json) VALUES (?, ?, ?)",
      decl.name,
      decl.namespace ?? null,
      json,
    );
    // A declaration that moved between namespaces changed both.
    this.bump([old?.namespace, decl.namespace ?? null]);
    return true;
  }

  delete(name: string): boolean {
    const ns = this.namespaceOf(name);
    const removed = this.sql.exec("DELETE FROM listeners WHERE name = ?", name).rowsWritten > 0;
    if (removed) this.bump([ns]);
    return removed;
  }

  private bump(namespaces: Array<string | null | undefined>): void {
    this.versionCache++;
    const value = String(this.versionCache);
    this.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('listeners_version', ?)", value);
    for (const ns of new Set(namespaces)) {
      if (ns === undefined) continue;
      this.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", `${VERSION_OF}${ns ?? ""}`, value);
    }
  }
}
