// The realm's relay certificate authority (docs/identity.md): CA key pairs by
// generation, the leaves issued and the leaf lifetime setting, in the realm's
// SQLite. Synchronous SQL except where WebCrypto must run (key generation,
// signing); callers keep the awaited parts outside any multi-statement
// invariant. Private keys are read only to sign: no method returns them.
import { fromBase64, toBase64 } from "../src/core/der.ts";
import { createCaCertificate, generateP256KeyPair, type IssuedLeaf, issueLeaf } from "../src/core/x509.ts";
import type { CaAuthorityInfo } from "../src/edge/types.ts";
import type { Sql } from "./migrations.ts";

/** Leaf lifetime when the admin set none. */
export const DEFAULT_CERT_LIFETIME_SECONDS = 24 * 3600;
/** A CA outlives every leaf it can issue by far; leaves are clamped to it anyway. */
export const CA_LIFETIME_MS = 10 * 365 * 24 * 3600 * 1000;
/**
 * Unexpired leaves one relay name may hold. A relay renews at two thirds of a
 * lifetime, so it holds two at most in normal operation; the cap bounds what
 * one name takes of its namespace's share (OUTSTANDING_PER_NAMESPACE_RECORD
 * bounds the table).
 */
export const MAX_OUTSTANDING_PER_NAME = 16;
/**
 * Unexpired leaves a namespace may hold, per record it may hold (its record limit): two per relay
 * in normal operation, with room for restarts that make new keys. The per-name cap alone does not
 * bound the table: a token can register a name, take 16 leaves, delete it and go on to the next.
 */
export const OUTSTANDING_PER_NAMESPACE_RECORD = 4;

export interface AuthorityRow extends Record<string, SqlStorageValue> {
  generation: number;
  certificate: string;
  created_at: number;
  not_after: number;
}

export class CaStore {
  private bundleCache: string[] | undefined;
  private readonly keys = new Map<number, Promise<CryptoKey>>();

  constructor(private readonly sql: Sql) {}

  /** The CA certificates peers are checked against, oldest generation first; empty before the first CA. */
  trustBundle(): string[] {
    this.bundleCache ??= this.sql
      .exec<{ certificate: string }>("SELECT certificate FROM ca_authorities ORDER BY generation")
      .toArray()
      .map((r) => r.certificate);
    return this.bundleCache;
  }

  active(): AuthorityRow | undefined {
    return this.sql
      .exec<AuthorityRow>(
        "SELECT generation, certificate, created_at, not_after FROM ca_authorities ORDER BY generation DESC LIMIT 1",
      )
      .toArray()[0];
  }

  hasGeneration(generation: number): boolean {
    return this.sql.exec("SELECT 1 FROM ca_authorities WHERE generation = ?", generation).toArray().length > 0;
  }

  /** A new CA key pair and certificate, not yet stored (the await happens here). */
  async prepareAuthority(realm: string, generation: number, now: number) {
    const keys = await generateP256KeyPair();
    const ca = await createCaCertificate({ realm, generation, keys, now, lifetimeMs: CA_LIFETIME_MS });
    const pkcs8 = new Uint8Array((await crypto.subtle.exportKey("pkcs8", keys.privateKey)) as ArrayBuffer);
    return { generation, certificate: ca.pem, pkcs8: toBase64(pkcs8), now, notAfter: now + CA_LIFETIME_MS };
  }

  /** Stores a prepared CA unless that generation exists already (a concurrent creation won); true if stored. */
  store(prepared: Awaited<ReturnType<CaStore["prepareAuthority"]>>): boolean {
    const r = this.sql.exec(
      `INSERT OR IGNORE INTO ca_authorities (generation, certificate, private_key_pkcs8, created_at, not_after)
       VALUES (?, ?, ?, ?, ?)`,
      prepared.generation,
      prepared.certificate,
      prepared.pkcs8,
      prepared.now,
      prepared.notAfter,
    );
    if (r.rowsWritten > 0) this.bundleCache = undefined;
    return r.rowsWritten > 0;
  }

  private signingKey(generation: number): Promise<CryptoKey> {
    let key = this.keys.get(generation);
    if (key === undefined) {
      const row = this.sql
        .exec<{ private_key_pkcs8: string }>(
          "SELECT private_key_pkcs8 FROM ca_authorities WHERE generation = ?",
          generation,
        )
        .toArray()[0];
      if (row === undefined) return Promise.reject(new Error(`no CA of generation ${generation}`));
      key = crypto.subtle.importKey(
        "pkcs8",
        fromBase64(row.private_key_pkcs8),
        { name: "ECDSA", namedCurve: "P-256" },
        false,
        ["sign"],
      );
      this.keys.set(generation, key);
    }
    return key;
  }

  /** Signs a leaf with CA `authority`; the caller records it with `record` once it is sure the CA still exists. */
  async sign(
    authority: AuthorityRow,
    o: { realm: string; name: string; publicKey: Uint8Array; now: number; lifetimeMs: number },
  ): Promise<IssuedLeaf> {
    return issueLeaf({
      caCertificate: authority.certificate,
      caPrivateKey: await this.signingKey(authority.generation),
      publicKey: o.publicKey,
      realm: o.realm,
      name: o.name,
      now: o.now,
      lifetimeMs: o.lifetimeMs,
    });
  }

  /** Records a leaf issued for relay `name` while its record was in `namespace` (null: a record without one). */
  record(serial: string, generation: number, name: string, namespace: string | null, notAfter: number): void {
    this.sql.exec(
      `INSERT OR REPLACE INTO ca_issued (serial, generation, name, not_after, namespace, namespace_known)
       VALUES (?, ?, ?, ?, ?, 1)`,
      serial,
      generation,
      name,
      notAfter,
      namespace,
    );
  }

  /** Forgets leaves that have expired: they can no longer be used, so they hold no CA back. */
  pruneExpired(now: number): void {
    this.sql.exec("DELETE FROM ca_issued WHERE not_after <= ?", now);
  }

  /** Unexpired leaves for relay `name` issued while its record was in `namespace`. */
  outstandingFor(name: string, namespace: string | null, now: number): number {
    return this.sql
      .exec<{ n: number }>(
        "SELECT count(*) AS n FROM ca_issued WHERE name = ? AND namespace_known = 1 AND namespace IS ? AND not_after > ?",
        name,
        namespace,
        now,
      )
      .one().n;
  }

  /** Unexpired leaves issued to records of `namespace`, whatever their names. */
  outstandingIn(namespace: string | null, now: number): number {
    return this.sql
      .exec<{ n: number }>(
        "SELECT count(*) AS n FROM ca_issued WHERE namespace_known = 1 AND namespace IS ? AND not_after > ?",
        namespace,
        now,
      )
      .one().n;
  }

  /**
   * Unexpired leaves for relay `name` issued to a namespace other than
   * `namespace`: while there are any, a record of that name in `namespace`
   * could be impersonated by whoever holds them. Undefined when there are none;
   * `until` is when the last of them expires (ms).
   */
  heldElsewhere(
    name: string,
    namespace: string | null,
    now: number,
  ): { namespaces: Array<string | null>; until: number } | undefined {
    const rows = this.sql
      .exec<{ namespace: string | null; until: number }>(
        `SELECT namespace, max(not_after) AS until FROM ca_issued
          WHERE name = ? AND namespace_known = 1 AND namespace IS NOT ? AND not_after > ?
          GROUP BY namespace ORDER BY namespace`,
        name,
        namespace,
        now,
      )
      .toArray();
    if (rows.length === 0) return undefined;
    return { namespaces: rows.map((r) => r.namespace), until: Math.max(...rows.map((r) => r.until)) };
  }

  authorities(now: number): CaAuthorityInfo[] {
    const rows = this.sql
      .exec<AuthorityRow>(
        "SELECT generation, certificate, created_at, not_after FROM ca_authorities ORDER BY generation",
      )
      .toArray();
    const last = rows[rows.length - 1]?.generation;
    return rows.map((r) => {
      const o = this.sql
        .exec<{ n: number; until: number | null }>(
          "SELECT count(*) AS n, max(not_after) AS until FROM ca_issued WHERE generation = ? AND not_after > ?",
          r.generation,
          now,
        )
        .one();
      return {
        generation: r.generation,
        active: r.generation === last,
        certificate: r.certificate,
        created_at: new Date(r.created_at).toISOString(),
        not_after: new Date(r.not_after).toISOString(),
        outstanding_certificates: o.n,
        outstanding_until: o.until === null ? null : new Date(o.until).toISOString(),
      };
    });
  }

  /** Deletes the CA of `generation`, its key and its (expired) leaf rows. */
  drop(generation: number): void {
    this.sql.exec("DELETE FROM ca_authorities WHERE generation = ?", generation);
    this.sql.exec("DELETE FROM ca_issued WHERE generation = ?", generation);
    this.keys.delete(generation);
    this.bundleCache = undefined;
  }

  get lifetimeSeconds(): number {
    const row = this.sql
      .exec<{ value: string }>("SELECT value FROM meta WHERE key = 'ca_cert_lifetime_seconds'")
      .toArray()[0];
    return row === undefined ? DEFAULT_CERT_LIFETIME_SECONDS : Number(row.value);
  }

  setLifetimeSeconds(seconds: number): void {
    this.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('ca_cert_lifetime_seconds', ?)", String(seconds));
  }
}
