// Scoped tokens of one realm. Only the SHA-256 of a token is stored, so a
// leaked database does not leak credentials; the plaintext is returned once.
import type { Caller, Principal, TokenInfo } from "../src/edge/types.ts";
import type { Sql } from "./migrations.ts";

const ADMIN: Principal = { role: "admin", namespaces: null, tokenId: null };

export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function randomHex(bytes: number): string {
  return [...crypto.getRandomValues(new Uint8Array(bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

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

  async create(
    role: "agent" | "reader",
    namespaces: string[],
    now: number,
  ): Promise<{ token: string; info: TokenInfo }> {
    const id = randomHex(8);
    // The id is part of the token only to make it recognisable in logs; lookup is by hash.
    const token = `hwt_${id}_${randomHex(24)}`;
    const hash = await sha256Hex(token);
    const sorted = [...new Set(namespaces)].sort();
    this.sql.exec(
      "INSERT INTO tokens (id, hash, role, namespaces, created_at) VALUES (?, ?, ?, ?, ?)",
      id,
      hash,
      role,
      JSON.stringify(sorted),
      now,
    );
    return { token, info: { id, role, namespaces: sorted, created_at: new Date(now).toISOString() } };
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
