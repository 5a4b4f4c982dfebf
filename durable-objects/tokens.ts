// Scoped tokens of one realm. Only the SHA-256 of a token is stored, so a
// leaked database does not leak credentials; the Worker mints and signs the
// token (src/edge/auth.ts) and returns the plaintext once.
import type { Caller, Principal, TokenInfo } from "../src/edge/types.ts";
import type { Sql } from "./migrations.ts";

const ADMIN: Principal = { role: "admin", namespaces: null, tokenId: null };

interface TokenRow extends Record<string, SqlStorageValue> {
  id: string;
  role: "agent" | "reader";
  namespaces: string;
  created_at: number;
}

export class TokenStore {
  constructor(private readonly sql: Sql) {}

  /** null: no such token in this realm (tokens are per realm, so another realm's token is unknown here). */
  principal(caller: Caller): Principal | null {
    if (caller.kind === "admin") return ADMIN;
    const row = this.sql
      .exec<TokenRow>("SELECT id, role, namespaces, created_at FROM tokens WHERE hash = ?", caller.hash)
      .toArray()[0];
    if (row === undefined) return null;
    return { role: row.role, namespaces: row.role === "agent" ? JSON.parse(row.namespaces) : [], tokenId: row.id };
  }

  create(minted: { id: string; hash: string }, role: "agent" | "reader", namespaces: string[], now: number): TokenInfo {
    const sorted = [...new Set(namespaces)].sort();
    this.sql.exec(
      "INSERT INTO tokens (id, hash, role, namespaces, created_at) VALUES (?, ?, ?, ?, ?)",
      minted.id,
      minted.hash,
      role,
      JSON.stringify(sorted),
      now,
    );
    return { id: minted.id, role, namespaces: sorted, created_at: new Date(now).toISOString() };
  }

  list(): TokenInfo[] {
    return this.sql
      .exec<TokenRow>("SELECT id, role, namespaces, created_at FROM tokens ORDER BY created_at, id")
      .toArray()
      .map((r) => ({
        id: r.id,
        role: r.role,
        namespaces: JSON.parse(r.namespaces),
        created_at: new Date(r.created_at).toISOString(),
      }));
  }

  revoke(id: string): boolean {
    return this.sql.exec("DELETE FROM tokens WHERE id = ?", id).rowsWritten > 0;
  }
}
