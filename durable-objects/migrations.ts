// Versioned SQL schema of a realm. Each entry moves the database from version
// i to i+1; they run in order inside blockConcurrencyWhile when the object
// starts, so no request ever sees a half-migrated realm. Never edit a shipped
// migration: append a new one.

export interface Sql {
  exec: SqlStorage["exec"];
}

/** Schema version 1: the first deployed layout (records as JSON, leases, a version counter). */
function v1(sql: Sql): void {
  sql.exec("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
  sql.exec(
    "CREATE TABLE IF NOT EXISTS records (name TEXT PRIMARY KEY, json TEXT NOT NULL, expires_at INTEGER) WITHOUT ROWID",
  );
  sql.exec("INSERT OR IGNORE INTO meta (key, value) VALUES ('version', '0')");
}

/**
 * Schema version 2: what scale needs. A changelog so Worker isolates catch up
 * by delta instead of reloading 50,000 records; a namespace column for
 * token scopes; lease TTLs and autoscaling reports next to their record; an
 * epoch that changes if the storage is ever recreated (so stale ETags never
 * match); hashed scoped tokens.
 */
function v2(sql: Sql): void {
  sql.exec("ALTER TABLE records ADD COLUMN namespace TEXT");
  sql.exec("ALTER TABLE records ADD COLUMN ttl_seconds INTEGER");
  sql.exec("ALTER TABLE records ADD COLUMN updated_version INTEGER NOT NULL DEFAULT 0");
  sql.exec("ALTER TABLE records ADD COLUMN workload TEXT");
  sql.exec("ALTER TABLE records ADD COLUMN report TEXT");
  sql.exec("ALTER TABLE records ADD COLUMN report_at INTEGER");
  sql.exec("UPDATE records SET namespace = json_extract(json, '$.metadata.namespace_name')");
  // Old leases carried no TTL; a renewal without ttl_seconds falls back to 60 s.
  sql.exec("UPDATE records SET ttl_seconds = 60 WHERE expires_at IS NOT NULL");
  sql.exec("UPDATE records SET updated_version = (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'version')");
  sql.exec("CREATE INDEX IF NOT EXISTS records_expires ON records (expires_at) WHERE expires_at IS NOT NULL");
  sql.exec("CREATE INDEX IF NOT EXISTS records_workload ON records (workload) WHERE workload IS NOT NULL");
  sql.exec(
    "CREATE TABLE IF NOT EXISTS changelog (version INTEGER NOT NULL, name TEXT NOT NULL, PRIMARY KEY (version, name)) WITHOUT ROWID",
  );
  // History before this migration is unknown: isolates older than now must reload.
  sql.exec("INSERT OR REPLACE INTO meta (key, value) SELECT 'log_floor', value FROM meta WHERE key = 'version'");
  sql.exec("INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', lower(hex(randomblob(8))))");
  sql.exec(
    `CREATE TABLE IF NOT EXISTS tokens (
       id TEXT PRIMARY KEY,
       hash TEXT NOT NULL UNIQUE,
       role TEXT NOT NULL CHECK (role IN ('agent', 'reader')),
       namespaces TEXT NOT NULL,
       created_at INTEGER NOT NULL
     )`,
  );
}

/**
 * Relay certificate authority (docs/identity.md): the realm's CA key pairs,
 * one row per generation (a rotation adds one; retiring drops the old), and
 * the leaves issued, so the edge knows which CA still has unexpired
 * certificates out. The private key never leaves this table through an API.
 */
function relayCertificateAuthority(sql: Sql): void {
  sql.exec(
    `CREATE TABLE IF NOT EXISTS ca_authorities (
       generation INTEGER PRIMARY KEY,
       certificate TEXT NOT NULL,
       private_key_pkcs8 TEXT NOT NULL,
       created_at INTEGER NOT NULL,
       not_after INTEGER NOT NULL
     )`,
  );
  sql.exec(
    `CREATE TABLE IF NOT EXISTS ca_issued (
       serial TEXT PRIMARY KEY,
       generation INTEGER NOT NULL,
       name TEXT NOT NULL,
       not_after INTEGER NOT NULL
     ) WITHOUT ROWID`,
  );
  sql.exec("CREATE INDEX IF NOT EXISTS ca_issued_not_after ON ca_issued (not_after)");
  sql.exec("CREATE INDEX IF NOT EXISTS ca_issued_name ON ca_issued (name, not_after)");
  sql.exec("CREATE INDEX IF NOT EXISTS ca_issued_generation ON ca_issued (generation, not_after)");
}

/**
 * Listener declarations (docs/listeners.md): a table of their own, with their own version in
 * `meta`, so a change to them wakes the agents that follow listeners and nothing else.
 */
function listenersTable(sql: Sql): void {
  sql.exec(
    "CREATE TABLE IF NOT EXISTS listeners (name TEXT PRIMARY KEY, namespace TEXT, json TEXT NOT NULL) WITHOUT ROWID",
  );
  sql.exec("INSERT OR IGNORE INTO meta (key, value) VALUES ('listeners_version', '0')");
}

/**
 * The gateway address policy (docs/security/edge.md), one
 * row per scope: 'default', or 'ns:' and a namespace name. No row at all means
 * the built-in default, which is what every realm migrated from v2 gets.
 */
function addressPolicy(sql: Sql): void {
  sql.exec("CREATE TABLE IF NOT EXISTS address_policy (scope TEXT PRIMARY KEY, rules TEXT NOT NULL) WITHOUT ROWID");
}

/**
 * Scaling reports are per namespace (docs/contract/autoscaling.md §1.3): each
 * report keeps the namespace of the record that sent it, and a workload's
 * reports are read within one namespace, so one tenant's report never changes
 * another's draining list. A report already stored sits on the row of the
 * record that sent it, whose namespace the row holds, so it keeps counting
 * (dropping them would leave each workload's view to its first pods to
 * heartbeat after the upgrade, and drain pods on that partial view).
 */
function reportNamespace(sql: Sql): void {
  sql.exec("ALTER TABLE records ADD COLUMN report_namespace TEXT");
  sql.exec("UPDATE records SET report_namespace = namespace WHERE report IS NOT NULL");
  sql.exec("DROP INDEX IF EXISTS records_workload");
  sql.exec(
    "CREATE INDEX IF NOT EXISTS records_workload_scope ON records (workload, report_namespace) WHERE workload IS NOT NULL",
  );
}

/**
 * Issued relay certificates keep the namespace of the record they were issued
 * for (docs/identity.md), so a name another namespace holds unexpired
 * certificates for cannot be taken, and the per-name limit counts one
 * namespace's certificates. Rows from before are attributed to the record that
 * holds their name now, the relay that asked for them in all but a deliberate
 * hand-over; rows whose record is gone are `namespace_known = 0`: they still
 * hold their CA back from retirement, but neither block a name nor count
 * (blocking them would stop every relay that deregistered in the last
 * certificate lifetime from registering again after the upgrade).
 */
function issuedNamespace(sql: Sql): void {
  sql.exec("ALTER TABLE ca_issued ADD COLUMN namespace TEXT");
  sql.exec("ALTER TABLE ca_issued ADD COLUMN namespace_known INTEGER NOT NULL DEFAULT 1");
  sql.exec("UPDATE ca_issued SET namespace = (SELECT r.namespace FROM records r WHERE r.name = ca_issued.name)");
  sql.exec("UPDATE ca_issued SET namespace_known = 0 WHERE name NOT IN (SELECT name FROM records)");
}

/**
 * Each record keeps the namespace whose agent tokens may write it
 * (`recordNamespace`: for a group, the namespace it names, which the
 * `namespace` column leaves null), indexed, so a write checks the caller's
 * scope without parsing the stored JSON and counts what a namespace holds
 * against its record limit (docs/contract/edge-api.md §14).
 */
function ownerNamespace(sql: Sql): void {
  sql.exec("ALTER TABLE records ADD COLUMN owner_namespace TEXT");
  sql.exec("UPDATE records SET owner_namespace = json_extract(json, '$.metadata.namespace_name')");
  sql.exec("CREATE INDEX IF NOT EXISTS records_owner ON records (owner_namespace) WHERE owner_namespace IS NOT NULL");
}

/**
 * A name whose record went away stays with its namespace for a while
 * (docs/contract/edge-api.md §14): another namespace's tokens cannot take it
 * in the moments between an agent deleting its record on shutdown, or its
 * lease running out, and its next pod registering again.
 */
function nameHolds(sql: Sql): void {
  sql.exec(
    "CREATE TABLE IF NOT EXISTS name_holds (name TEXT PRIMARY KEY, namespace TEXT NOT NULL, until INTEGER NOT NULL) WITHOUT ROWID",
  );
  sql.exec("CREATE INDEX IF NOT EXISTS name_holds_namespace ON name_holds (namespace, until)");
  sql.exec("CREATE INDEX IF NOT EXISTS name_holds_until ON name_holds (until)");
}

/**
 * Which agent instance holds each leased record (docs/contract/edge-api.md §4.7): two agents that
 * register one name are told so instead of overwriting each other's record at every renewal.
 * Records stored before it have no instance, and the next agent write with one claims them.
 */
function recordInstance(sql: Sql): void {
  sql.exec("ALTER TABLE records ADD COLUMN instance TEXT");
}

/**
 * Unexpired relay certificates are counted per namespace before one more is issued
 * (docs/identity.md): without an index that count would read the whole issued-leaf table.
 */
function issuedByNamespace(sql: Sql): void {
  sql.exec(
    "CREATE INDEX IF NOT EXISTS ca_issued_namespace ON ca_issued (namespace, not_after) WHERE namespace_known = 1",
  );
}

export const MIGRATIONS: ReadonlyArray<(sql: Sql) => void> = [
  v1,
  v2,
  relayCertificateAuthority,
  listenersTable,
  addressPolicy,
  reportNamespace,
  issuedNamespace,
  ownerNamespace,
  nameHolds,
  recordInstance,
  issuedByNamespace,
];
export const SCHEMA_VERSION = MIGRATIONS.length;

/** Brings the database to SCHEMA_VERSION; returns the version it started from. Caller wraps it in a transaction. */
export function migrate(sql: Sql): number {
  sql.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
  const row = sql.exec<{ version: number }>("SELECT version FROM schema_version").toArray()[0];
  const from = row?.version ?? 0;
  if (row === undefined) sql.exec("INSERT INTO schema_version (version) VALUES (0)");
  if (from > SCHEMA_VERSION) {
    throw new Error(`realm storage has schema ${from}, newer than this code (${SCHEMA_VERSION}): refusing to run`);
  }
  for (let v = from; v < SCHEMA_VERSION; v++) {
    MIGRATIONS[v]!(sql);
    sql.exec("UPDATE schema_version SET version = ?", v + 1);
  }
  return from;
}
