// Helpers for the edge tests: requests through the real Worker (SELF) into real Durable Objects.
import { runInDurableObject, SELF } from "cloudflare:test";
import { env } from "cloudflare:workers";
import type { RealmObject } from "../../durable-objects/realm.ts";
import { answerProblem } from "./answers.ts";

export const ADMIN = "test-admin-token";
let seq = 0;
/** A realm name no other test uses, so tests stay independent without resetting storage. Not created. */
export function freshRealm(prefix = "t"): string {
  return `${prefix}-${Date.now().toString(36)}-${(seq++).toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`;
}

/** A fresh realm, created by the admin as an operator would (PUT /v1/realms/{realm}). */
export async function newRealm(prefix = "t"): Promise<string> {
  const realm = freshRealm(prefix);
  const r = await call("PUT", `/v1/realms/${realm}`);
  if (r.status !== 201) throw new Error(`creating realm ${realm}: ${r.status} ${JSON.stringify(r.body)}`);
  return realm;
}

/**
 * SELF.fetch, with the answer checked against the endpoint table the
 * Worker's /openapi.json is generated from (answers.ts): an undeclared status,
 * or a body with a missing, mistyped or unknown field, fails the request and
 * so the test that made it. Every edge test reaches the Worker through this.
 */
export async function edgeFetch(url: string, init: RequestInit = {}): Promise<Response> {
  const res = await SELF.fetch(url, init);
  const text = await res.clone().text();
  const problem = answerProblem(init.method ?? "GET", url, res.status, res.headers.get("content-type"), text);
  if (problem !== null) throw new Error(`the edge answered outside its documented shapes: ${problem}`);
  return res;
}

export interface Call {
  status: number;
  headers: Headers;
  // biome-ignore lint/suspicious/noExplicitAny: test responses are inspected structurally
  body: any;
}

export async function call(
  method: string,
  path: string,
  opts: {
    token?: string | null;
    body?: unknown;
    raw?: string | Uint8Array;
    type?: string;
    headers?: Record<string, string>;
  } = {},
): Promise<Call> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  const token = opts.token === undefined ? ADMIN : opts.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  let body: BodyInit | undefined;
  if (opts.raw !== undefined) body = opts.raw;
  else if (opts.body !== undefined) body = JSON.stringify(opts.body);
  if (body !== undefined) headers["content-type"] = opts.type ?? "application/json";
  const res = await edgeFetch(`https://edge${path}`, { method, headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text === "" ? null : JSON.parse(text);
  } catch {}
  return { status: res.status, headers: res.headers, body: parsed };
}

/** The realm's Durable Object, for runInDurableObject and the like. */
export function stubOf(realm: string): DurableObjectStub<RealmObject> {
  return env.REALM.get(env.REALM.idFromName(realm)) as DurableObjectStub<RealmObject>;
}

/** Sets the realm object's clock (leases, names held, budgets) to `at`, ms since the epoch. */
export async function setClock(realm: string, at: number): Promise<void> {
  await runInDurableObject(stubOf(realm), (instance: RealmObject) => {
    instance.clockForTest = () => at;
  });
}

/** A scoped token of `realm`, minted by the admin: the token and its id. */
export async function mintToken(
  realm: string,
  role: "agent" | "reader",
  namespaces: string[] = [],
): Promise<{ token: string; id: string }> {
  const r = await call("POST", `/v1/realms/${realm}/tokens`, { body: { role, namespaces } });
  if (r.status !== 201) throw new Error(`minting a token in ${realm}: ${r.status} ${JSON.stringify(r.body)}`);
  return { token: r.body.token as string, id: r.body.id as string };
}

export function node(name: string, ns = "ns1", extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name,
    metadata: { namespace_name: ns, kind: "relay", labels: { app: name } },
    gateway: [{ priority: 1, address: `ipv4://10.9.${seq % 250}.${(seq++ % 250) + 1}:1234` }],
    ...extra,
  };
}

export interface StoredRealmState {
  version: number;
  epoch: string;
  records: number;
  /** The alarm storage holds (ms since the epoch), null when none is set. */
  alarm: number | null;
}

/** What the realm object's storage holds, read inside the object so production carries no RPC for it. */
export async function storedRealmState(realm: string): Promise<StoredRealmState> {
  const stub = env.REALM.get(env.REALM.idFromName(realm));
  return runInDurableObject(stub, async (_instance: RealmObject, state) => {
    const sql = state.storage.sql;
    const meta = (key: string) =>
      sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = ?", key).toArray()[0]?.value;
    return {
      version: Number(meta("version")),
      epoch: meta("epoch") ?? "",
      records: sql.exec<{ n: number }>("SELECT count(*) AS n FROM records").one().n,
      alarm: await state.storage.getAlarm(),
    };
  });
}

/**
 * Takes a realm's `records` table back to its layout before scaling reports
 * were kept per namespace (schema 5), for tests that rewind a realm to an
 * older schema and let it migrate.
 */
export function recordsBeforeReportNamespace(sql: SqlStorage): void {
  recordsBeforeOwnerNamespace(sql);
  sql.exec("DROP INDEX records_workload_scope");
  sql.exec("ALTER TABLE records DROP COLUMN report_namespace");
  sql.exec("CREATE INDEX records_workload ON records (workload) WHERE workload IS NOT NULL");
}

/** Takes a realm's `records` table back to schema 9, before leases named the agent instance holding them. */
export function recordsBeforeInstance(sql: SqlStorage): void {
  sql.exec("ALTER TABLE records DROP COLUMN instance");
}

/**
 * Takes a realm's storage back to schema 7: `records` before records kept their owning namespace,
 * and no name holds (schema 9).
 */
export function recordsBeforeOwnerNamespace(sql: SqlStorage): void {
  recordsBeforeInstance(sql);
  sql.exec("DROP TABLE name_holds");
  sql.exec("DROP INDEX records_owner");
  sql.exec("ALTER TABLE records DROP COLUMN owner_namespace");
}
