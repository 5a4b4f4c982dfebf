// The edge HTTP API (/v1). Handlers validate every input with the shared zod
// schemas, authenticate, and either call the realm's Durable Object (writes,
// leases, tokens) or answer from this isolate's cached view of the realm
// (record lists, routes, route tables), which a version change refreshes by
// delta.

import type { Context } from "hono";
import { Hono } from "hono";
import { DIRECTORY_NAME } from "../../durable-objects/directory.ts";
import {
  AddressPolicySchema,
  describeIssues,
  EdgeError,
  type FieldProblem,
  type HopwayRecord,
  ListenerDeclarationSchema,
  matchesSelector,
  NameSchema,
  parseTopologyText,
  RealmLimitsSchema,
  RecordSchema,
  resolveRoutes,
  type Selector,
  SharedNamespacesBodySchema,
  setOwn,
} from "../core/index.ts";
import {
  ChangesQuerySchema,
  HeartbeatBodySchema,
  InstanceIdSchema,
  NodesQuerySchema,
  RealmNameSchema,
  ROUTE_TABLE_FORMAT,
  RouteQuerySchema,
  TokenCreateBodySchema,
  TtlSecondsSchema,
  WaitQuerySchema,
  WorkloadQuerySchema,
} from "../core/wire.ts";
import { API, reply, replyText } from "./api.ts";
import { callerFrom, mintToken, tokenKeys } from "./auth.ts";
import { invalid, MAX_IMPORT_BYTES, readBody, readJson, requireAdmin, unwrap, validate } from "./http.ts";
import { mountIdentity } from "./identity.ts";
import { openApiDocument } from "./openapi.ts";
import { mountOwnership } from "./ownership.ts";
import { currentView, nextView, peekView, type RealmView } from "./realm-cache.ts";
import type { Caller } from "./types.ts";

type RealmStub = DurableObjectStub<import("../../durable-objects/realm.ts").RealmObject>;
type DirectoryStub = DurableObjectStub<import("../../durable-objects/directory.ts").DirectoryObject>;
type Vars = { realm: string; caller: Caller; stub: RealmStub };
type Env2 = { Bindings: Env; Variables: Vars };
type Ctx = Context<Env2>;

/** Query parameters as an object; repeated parameters are an error except `label`. */
function queryObject(c: Ctx): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [key, values] of Object.entries(c.req.queries())) {
    if (key === "label") out[key] = values;
    else if (values.length > 1) throw invalid([{ path: key, message: "given more than once" }]);
    else out[key] = values[0] ?? "";
  }
  return out;
}

function etagMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header.split(",").some((t) => {
    const v = t.trim();
    return v === "*" || v === etag || v === `W/${etag}`;
  });
}

/**
 * Conditional GET with long-poll: 304 while the client's ETag is current;
 * with `wait`, holds until the version changes (waking within one RPC
 * round-trip of the write) or the time is up. With `same`, a new version whose
 * answer `same` says is unchanged does not end the wait: the request answers
 * when its own answer changes, or with the latest version when the time is up.
 */
async function conditional(
  c: Ctx,
  waitSeconds: number | undefined,
  check: (view: RealmView) => void,
  render: (view: RealmView) => string | Uint8Array<ArrayBuffer>,
  format?: string,
  same?: (held: RealmView, later: RealmView) => boolean,
): Promise<Response> {
  const { stub, caller, realm } = c.var;
  const inm = c.req.header("if-none-match");
  // An answer whose form can change between releases of the edge names its form in the ETag, so a
  // client holding the same version in an earlier form gets the new one at once, not a 304.
  const etagOf = (v: RealmView) => (format === undefined ? v.etag : `"${v.epoch}.${v.version}.${format}"`);
  const cached = peekView(realm);
  const follow = async (held: RealmView, seconds: number): Promise<RealmView> => {
    const until = Date.now() + seconds * 1000;
    let at = held;
    for (;;) {
      const next = await nextView(stub, caller, realm, at, until - Date.now());
      if (next === at || same === undefined || !same(held, next)) return next;
      at = next;
      if (Date.now() >= until) return at;
    }
  };
  let view: RealmView;
  if (cached !== undefined && waitSeconds && etagMatches(inm, etagOf(cached))) {
    // The client is as current as this isolate: wait directly (one RPC, no extra read first).
    view = await follow(cached, waitSeconds);
  } else {
    view = await currentView(stub, caller, realm);
    if (waitSeconds && etagMatches(inm, etagOf(view))) {
      check(view);
      view = await follow(view, waitSeconds);
    }
  }
  check(view);
  const etag = etagOf(view);
  const headers = { ETag: etag, "Cache-Control": "no-cache", "X-Hopway-Version": String(view.version) };
  if (etagMatches(inm, etag)) return c.body(null, 304, headers);
  return c.body(render(view), 200, { ...headers, "Content-Type": "application/json; charset=utf-8" });
}

/**
 * A group without `metadata.namespace_name` counts listed members of every namespace, so any
 * agent token of the realm could join it by registering a listed name that is free
 * (docs/stateful.md). The edge writes such a group only when it says so with
 * `any_namespace: true`; groups stored before this rule keep working as they were.
 */
function unscopedGroupProblem(record: HopwayRecord, at: string): FieldProblem | null {
  if (record.type !== "group" || record.metadata !== undefined || record.any_namespace === true) return null;
  return {
    path: `${at === "" ? "" : `${at}.`}metadata.namespace_name`,
    message:
      "a group must name the namespace its members are in; without one, a record of any namespace registered " +
      "under a listed name counts as a member. Give metadata.namespace_name, or any_namespace: true to allow that",
  };
}

/** The `Hopway-Instance` header of an agent's record write (docs/contract/edge-api.md §4.7); absent is null. */
function instanceHeader(value: string | undefined): { id: string | null; problem?: FieldProblem } {
  if (value === undefined) return { id: null };
  const r = InstanceIdSchema.safeParse(value);
  if (r.success) return { id: r.data };
  return { id: null, problem: { path: "Hopway-Instance", message: r.error.issues[0]?.message ?? "invalid" } };
}

function requireNode(view: RealmView, name: string, path: string): void {
  if (!view.records.has(name)) {
    throw new EdgeError(404, "unknown_node", `no record named '${name}' in this realm`, path);
  }
}

function selectorFrom(q: ReturnType<typeof NodesQuerySchema.parse>): Selector {
  const metadata: NonNullable<Selector["metadata"]> = {};
  if (q.namespace_name !== undefined) metadata.namespace_name = q.namespace_name;
  if (q.api_version !== undefined) metadata.api_version = q.api_version;
  if (q.kind !== undefined) metadata.kind = q.kind;
  if (q.group !== undefined) metadata.group = q.group;
  if (q.label !== undefined) {
    metadata.labels = {};
    for (const kv of q.label) {
      const i = kv.indexOf("=");
      setOwn(metadata.labels, kv.slice(0, i), kv.slice(i + 1));
    }
  }
  const host: NonNullable<Selector["host"]> = {};
  if (q.hostname !== undefined) host.hostname = q.hostname;
  if (q.pid !== undefined) host.pid = q.pid;
  return {
    ...(q.name !== undefined ? { name: q.name } : {}),
    ...(Object.keys(metadata).length > 0 ? { metadata } : {}),
    ...(Object.keys(host).length > 0 ? { host } : {}),
  };
}

/**
 * Realms this isolate has seen in the directory. Realms are never removed, so
 * a positive answer stays true; the bound only limits memory.
 */
const knownRealms = new Set<string>();
const MAX_KNOWN_REALMS = 10_000;

function directory(env: Env): DirectoryStub {
  return env.DIRECTORY.get(env.DIRECTORY.idFromName(DIRECTORY_NAME)) as DirectoryStub;
}

/** 404 unless the realm was created; asks the directory, never the realm's own object. */
async function requireRealm(env: Env, realm: string): Promise<void> {
  if (knownRealms.has(realm)) return;
  if (!(await directory(env).exists(realm))) {
    throw new EdgeError(
      404,
      "unknown_realm",
      `no realm named '${realm}': the admin creates it with PUT /v1/realms/${realm}`,
      "realm",
    );
  }
  if (knownRealms.size >= MAX_KNOWN_REALMS) knownRealms.clear();
  knownRealms.add(realm);
}

/** The period of wrangler.toml's TOKEN_WRITES binding: a refusal waits for the next one. */
const WRITE_FLOOD_SECONDS = 10;

/** The Worker's Rate Limiting binding, keyed by realm and token (its SHA-256, never the token). */
async function withinWriteFlood(env: Env, realm: string, tokenHash: string): Promise<boolean> {
  return (await env.TOKEN_WRITES.limit({ key: writeFloodKey(realm, tokenHash) })).success;
}

export function writeFloodKey(realm: string, tokenHash: string): string {
  return `${realm}/${tokenHash}`;
}

const CONTENT_YAML = /^(application|text)\/(x-)?yaml\b/i;
const CONTENT_JSON = /^application\/([\w.+-]*\+)?json\b/i;

const ALLOWED_METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE"]);
export const ALLOW_HEADER = [...ALLOWED_METHODS].join(", ");

export function methodNotAllowed(method: string): { error: { code: "method_not_allowed"; message: string } } {
  const shown = /^[A-Za-z-]{1,32}$/.test(method) ? method : "this method";
  return { error: { code: "method_not_allowed", message: `${shown} is not an edge API method (use ${ALLOW_HEADER})` } };
}

export function createApp(): Hono<Env2> {
  const app = new Hono<Env2>();

  app.onError((err, c) => {
    if (err instanceof EdgeError) {
      const headers =
        err.retryAfterSeconds === undefined ? undefined : { "Retry-After": String(err.retryAfterSeconds) };
      return c.json(err.body(), (err.status ?? 500) as 400, headers);
    }
    console.error("hopway edge: unhandled error", err);
    return c.json({ error: { code: "internal", message: "internal error" } }, 500);
  });
  app.notFound((c) =>
    c.json({ error: { code: "not_found", message: `no such endpoint: ${c.req.method} ${c.req.path}` } }, 404),
  );

  // Methods no endpoint takes are refused as such, not as an unknown path.
  app.use("*", async (c, next) => {
    if (!ALLOWED_METHODS.has(c.req.method)) {
      return c.json(methodNotAllowed(c.req.method), 405, { Allow: ALLOW_HEADER });
    }
    await next();
  });

  app.get("/healthz", (c) => reply(c, API.health, 200, { ok: true }));
  let openapi: string | undefined;
  app.get("/openapi.json", (c) => {
    openapi ??= JSON.stringify(openApiDocument());
    return c.body(openapi, 200, { "Content-Type": "application/json; charset=utf-8" });
  });

  const adminOnly = async (c: Ctx, realm: string | null): Promise<void> => {
    const caller = await callerFrom(c.req.header("authorization"), c.env.HOPWAY_ADMIN_TOKEN, tokenKeys(c.env), realm);
    if (caller.kind !== "admin") throw new EdgeError(403, "forbidden", "only the admin token manages realms");
  };
  const realmParam = (c: Ctx): string => {
    const realm = c.req.param("realm") ?? "";
    const parsed = RealmNameSchema.safeParse(realm);
    if (!parsed.success)
      throw invalid([{ path: "realm", message: parsed.error.issues[0]?.message ?? "invalid realm name" }]);
    return realm;
  };

  // Realms exist only once the admin created them (docs/security/edge.md): no request for an
  // unknown realm, authenticated or not, may make storage appear.
  app.get("/v1/realms", async (c) => {
    await adminOnly(c, null);
    return reply(c, API.listRealms, 200, { realms: await directory(c.env).list() });
  });
  app.put("/v1/realms/:realm", async (c) => {
    const realm = realmParam(c);
    await adminOnly(c, realm);
    const r = await directory(c.env).create(realm, Date.now());
    return reply(c, API.createRealm, r.created ? 201 : 200, { realm, created: r.created, created_at: r.created_at });
  });
  app.get("/v1/realms/:realm", async (c) => {
    const realm = realmParam(c);
    await adminOnly(c, realm);
    await requireRealm(c.env, realm);
    return reply(c, API.getRealm, 200, { realm });
  });

  const realms = new Hono<Env2>();
  realms.use("*", async (c, next) => {
    const realm = realmParam(c);
    // Everything before the stub is decided in this isolate: a request without a valid
    // credential for this realm never reaches a Durable Object.
    const caller = await callerFrom(c.req.header("authorization"), c.env.HOPWAY_ADMIN_TOKEN, tokenKeys(c.env), realm);
    // A token's MAC already proves the realm was created (tokens are minted inside it).
    if (caller.kind === "admin") await requireRealm(c.env, realm);
    // A signed token's writes past the coarse per-location bound stop here, before the object
    // (wrangler.toml, TOKEN_WRITES); the object's budgets are the exact ones.
    else if (
      c.req.method !== "GET" &&
      c.req.method !== "HEAD" &&
      !(await withinWriteFlood(c.env, realm, caller.hash))
    ) {
      throw new EdgeError(
        429,
        "rate_limited",
        `this token sent more writes than the edge takes from one token in ${WRITE_FLOOD_SECONDS} s; ` +
          `try again in ${WRITE_FLOOD_SECONDS} s`,
        undefined,
        undefined,
        WRITE_FLOOD_SECONDS,
      );
    }
    c.set("realm", realm);
    c.set("caller", caller);
    c.set("stub", c.env.REALM.get(c.env.REALM.idFromName(realm)) as RealmStub);
    await next();
  });

  realms.post("/import", async (c) => {
    // Who may import is settled before a body of up to 12 MiB is read and parsed for them.
    unwrap(await c.var.stub.mayImport(c.var.caller));
    const type = c.req.header("content-type") ?? "";
    const format = CONTENT_YAML.test(type) ? "yaml" : CONTENT_JSON.test(type) ? "json" : undefined;
    const text = await readBody(c.req.raw, MAX_IMPORT_BYTES);
    if (text.trim() === "") throw new EdgeError(400, "invalid_json", "the body is empty; expected a topology");
    const parsed = parseTopologyText(text, format);
    if (!parsed.ok) {
      const err = invalid(parsed.problems);
      throw new EdgeError(400, parsed.code, err.message, err.path, parsed.problems);
    }
    const unscoped = parsed.records.flatMap((r, i) => unscopedGroupProblem(r, parsed.paths[i] ?? `[${i}]`) ?? []);
    if (unscoped.length > 0) throw invalid(unscoped);
    // mayImport charged this import to the token's write budget (docs/contract/edge-api.md §14.1).
    const r = await c.var.stub.importRecords(c.var.caller, parsed.records);
    if (!r.ok && r.error.path !== undefined) {
      // The object names a refused record by its index; the user knows it by its place in the text.
      const m = /^\[(\d+)\]/.exec(r.error.path);
      const at = m === null ? undefined : parsed.paths[Number(m[1])];
      if (m !== null && at !== undefined) r.error.path = `${at}${r.error.path.slice(m[0].length)}`;
    }
    const done = unwrap(r);
    return reply(c, API.importRecords, 200, { version: done.version, records: done.records });
  });

  realms.get("/nodes", async (c) => {
    const q = validate(NodesQuerySchema, queryObject(c));
    const selector = selectorFrom(q);
    const typeFilter = q.type;
    return conditional(
      c,
      q.wait,
      () => {},
      (view) => {
        let list: HopwayRecord[] = view
          .list()
          .filter((r) => (typeFilter === undefined || r.type === typeFilter) && matchesSelector(selector, r));
        if (q.after !== undefined) {
          const after = q.after;
          list = list.filter((r) => r.name > after);
        }
        let next: string | null = null;
        if (q.limit !== undefined && list.length > q.limit) {
          list = list.slice(0, q.limit);
          next = list[list.length - 1]?.name ?? null;
        }
        return replyText(API.listNodes, 200, {
          version: view.version,
          records: list,
          ...(q.limit !== undefined ? { next } : {}),
          shared_namespaces: view.shared === null ? null : [...view.shared],
        });
      },
    );
  });

  realms.get("/nodes/:name", async (c) => {
    const name = validate(NameSchema, c.req.param("name"), ["name"]);
    const { stored } = unwrap(await c.var.stub.getRecord(c.var.caller, name));
    return reply(c, API.getNode, 200, stored);
  });

  realms.put("/nodes/:name", async (c) => {
    const name = validate(NameSchema, c.req.param("name"), ["name"]);
    const body = await readJson(c.req.raw);
    if (body === null || typeof body !== "object" || Array.isArray(body)) {
      throw invalid([{ path: "", message: "expected a JSON object: the record's fields, plus ttl_seconds" }]);
    }
    const { ttl_seconds, ...fields } = body as Record<string, unknown>;
    const problems: FieldProblem[] = [];
    const ttl = ttl_seconds === undefined ? undefined : TtlSecondsSchema.safeParse(ttl_seconds);
    if (ttl !== undefined && !ttl.success) {
      problems.push({ path: "ttl_seconds", message: ttl.error.issues[0]?.message ?? "invalid" });
    }
    if (fields.name !== undefined && fields.name !== name) {
      problems.push({ path: "name", message: `must equal the name in the path ('${name}') or be omitted` });
    }
    const instance = instanceHeader(c.req.header("hopway-instance"));
    if (instance.problem !== undefined) problems.push(instance.problem);
    const record = RecordSchema.safeParse({ ...fields, name });
    if (!record.success) {
      problems.push(...describeIssues(record.error));
    } else {
      const unscoped = unscopedGroupProblem(record.data, "");
      if (unscoped !== null) problems.push(unscoped);
    }
    if (problems.length > 0 || !record.success) throw invalid(problems);
    const r = unwrap(
      await c.var.stub.putRecord(c.var.caller, record.data, ttl?.success ? ttl.data : null, instance.id),
    );
    return reply(c, API.putNode, r.created ? 201 : 200, {
      version: r.version,
      name,
      created: r.created,
      changed: r.changed,
      expires_at: r.expires_at,
    });
  });

  realms.delete("/nodes/:name", async (c) => {
    const name = validate(NameSchema, c.req.param("name"), ["name"]);
    const instance = instanceHeader(c.req.header("hopway-instance"));
    if (instance.problem !== undefined) throw invalid([instance.problem]);
    const r = unwrap(await c.var.stub.deleteRecord(c.var.caller, name, instance.id));
    return reply(c, API.deleteNode, 200, { version: r.version, name });
  });

  realms.post("/nodes/:name/heartbeat", async (c) => {
    const name = validate(NameSchema, c.req.param("name"), ["name"]);
    const text = await readBody(c.req.raw, 64 * 1024);
    let raw: unknown = {};
    if (text.trim() !== "") {
      try {
        raw = JSON.parse(text);
      } catch (err) {
        throw new EdgeError(
          400,
          "invalid_json",
          `the body is not JSON: ${err instanceof Error ? err.message : String(err)}`,
        );
      }
    }
    // The body's and the header's problems in one answer, as for PUT.
    const parsed = HeartbeatBodySchema.safeParse(raw);
    const instance = instanceHeader(c.req.header("hopway-instance"));
    const problems = parsed.success ? [] : describeIssues(parsed.error);
    if (instance.problem !== undefined) problems.push(instance.problem);
    if (problems.length > 0 || !parsed.success) throw invalid(problems);
    const body = parsed.data;
    const r = unwrap(
      await c.var.stub.heartbeat(
        c.var.caller,
        name,
        body.ttl_seconds ?? null,
        body.report ?? null,
        body.links ?? null,
        instance.id,
      ),
    );
    return reply(c, API.heartbeat, 200, {
      version: r.version,
      expires_at: r.expires_at,
      ...(r.scaling ? { scaling: r.scaling } : {}),
    });
  });

  // Listener declarations (docs/listeners.md). Agents long-poll the list with If-None-Match.
  realms.get("/listeners", async (c) => {
    const q = validate(WaitQuerySchema, queryObject(c));
    const inm = c.req.header("if-none-match");
    const since = /^"listeners-(\d{1,15})"$/.exec(inm ?? "")?.[1];
    const r = unwrap(
      await c.var.stub.listenerDeclarations(
        c.var.caller,
        since === undefined ? null : Number(since),
        (q.wait ?? 0) * 1000,
      ),
    );
    const etag = `"listeners-${r.version}"`;
    const headers = { ETag: etag, "Cache-Control": "no-cache" };
    if (etagMatches(inm, etag)) return c.body(null, 304, headers);
    return reply(c, API.listListeners, 200, { version: r.version, listeners: r.listeners }, headers);
  });
  realms.put("/listeners/:name", async (c) => {
    const name = validate(NameSchema, c.req.param("name"), ["name"]);
    const decl = validate(ListenerDeclarationSchema, await readJson(c.req.raw));
    const r = unwrap(await c.var.stub.putListener(c.var.caller, name, decl));
    return reply(c, API.putListener, r.created ? 201 : 200, { version: r.version, name, created: r.created });
  });
  realms.delete("/listeners/:name", async (c) => {
    const name = validate(NameSchema, c.req.param("name"), ["name"]);
    const r = unwrap(await c.var.stub.deleteListener(c.var.caller, name));
    return reply(c, API.deleteListener, 200, { version: r.version, name });
  });

  realms.get("/links", async (c) => {
    const { links } = unwrap(await c.var.stub.linkStatus(c.var.caller));
    return reply(c, API.links, 200, { links }, { "Cache-Control": "no-cache" });
  });

  realms.get("/workloads/:workload", async (c) => {
    const workload = validate(NameSchema, c.req.param("workload"), ["workload"]);
    // Reports are per namespace; `?namespace=` (empty) names records without one.
    const { namespace } = validate(WorkloadQuerySchema, queryObject(c));
    const scope = namespace === undefined ? undefined : namespace === "" ? null : namespace;
    const { view } = unwrap(await c.var.stub.workload(c.var.caller, workload, scope));
    return reply(c, API.workload, 200, view);
  });

  realms.get("/routes", async (c) => {
    const q = validate(RouteQuerySchema, queryObject(c));
    return conditional(
      c,
      undefined,
      (view) => {
        requireNode(view, q.from, "from");
        requireNode(view, q.to, "to");
      },
      (view) => {
        const route = view.route(q.from, q.to);
        const target = view.records.get(q.to);
        const members = target?.type === "group" ? { routes: resolveRoutes(view.realm, q.from, q.to) } : {};
        return replyText(API.route, 200, { ...route, from: q.from, to: q.to, version: view.version, ...members });
      },
    );
  });

  realms.get("/route-tables/:node", async (c) => {
    const node = validate(NameSchema, c.req.param("node"), ["node"]);
    const q = validate(WaitQuerySchema, queryObject(c));
    return conditional(
      c,
      q.wait,
      (view) => requireNode(view, node, "node"),
      // Rendered once per version and node: RealmView caches the body, typed as RouteTable there.
      (view) => view.routeTableBody(node),
      // An agent that fetched this version from an edge without the table's newest field gets it now.
      `t${ROUTE_TABLE_FORMAT}`,
      // Another tenant's writes change the realm's version, not this table: its waiting agent is
      // not woken for them (docs/contract/edge-api.md §1.5).
      (held, later) => held.sameRouteTable(later, node),
    );
  });

  // The record changelog, for clients that keep their own replica and resolve routes locally with
  // the same pure core (the scalable path for large realms: a change costs a few records, not a
  // full route table per agent). `reset` means: reload with GET /nodes, then ask again.
  realms.get("/changes", async (c) => {
    const q = validate(ChangesQuerySchema, queryObject(c));
    const { stub, caller } = c.var;
    const epoch = q.epoch ?? null;
    const r =
      q.wait && q.since !== undefined
        ? await stub.waitForChange(caller, epoch, q.since, q.wait * 1000)
        : await stub.changes(caller, epoch, q.since ?? null);
    const { changes } = unwrap(r);
    return reply(c, API.changes, 200, changes, { "Cache-Control": "no-cache" });
  });

  realms.post("/tokens", async (c) => {
    // Only the admin mints: refuse others before reading their body or spending a MAC on them.
    if (c.var.caller.kind !== "admin") throw new EdgeError(403, "forbidden", "only the admin token manages tokens");
    const body = validate(TokenCreateBodySchema, await readJson(c.req.raw));
    const minted = await mintToken(tokenKeys(c.env), c.var.realm);
    const r = unwrap(
      await c.var.stub.createToken(c.var.caller, body.role, body.namespaces, { id: minted.id, hash: minted.hash }),
    );
    return reply(c, API.createToken, 201, { token: minted.token, ...r.info });
  });
  realms.get("/tokens", async (c) =>
    reply(c, API.listTokens, 200, { tokens: unwrap(await c.var.stub.listTokens(c.var.caller)).tokens }),
  );
  realms.delete("/tokens/:id", async (c) => {
    const id = c.req.param("id");
    if (!/^[0-9a-f]{16}$/.test(id)) throw invalid([{ path: "id", message: "must be a token id (16 hex digits)" }]);
    return reply(c, API.revokeToken, 200, { revoked: unwrap(await c.var.stub.revokeToken(c.var.caller, id)).revoked });
  });

  realms.get("/policy", async (c) =>
    reply(c, API.getPolicy, 200, unwrap(await c.var.stub.getPolicy(c.var.caller)).policy),
  );
  // Who may write comes before what was written, as for /limits: a tenant learns nothing of the
  // policy's shape from a 400, and its body is not even parsed.
  realms.put("/policy", async (c) => {
    requireAdmin(c.var.caller);
    const policy = validate(AddressPolicySchema, await readJson(c.req.raw));
    return reply(c, API.putPolicy, 200, unwrap(await c.var.stub.setPolicy(c.var.caller, policy)).policy);
  });
  realms.put("/policy/shared-namespaces", async (c) => {
    requireAdmin(c.var.caller);
    const body = validate(SharedNamespacesBodySchema, await readJson(c.req.raw));
    const stored = unwrap(await c.var.stub.setSharedNamespaces(c.var.caller, body.shared_namespaces)).policy;
    return reply(c, API.putSharedNamespaces, 200, stored);
  });

  realms.get("/limits", async (c) =>
    reply(c, API.getLimits, 200, unwrap(await c.var.stub.getLimits(c.var.caller)).limits),
  );
  realms.put("/limits", async (c) => {
    requireAdmin(c.var.caller);
    const limits = validate(RealmLimitsSchema, await readJson(c.req.raw));
    return reply(c, API.putLimits, 200, unwrap(await c.var.stub.setLimits(c.var.caller, limits)).limits);
  });

  mountOwnership(realms);
  mountIdentity(realms);
  app.route("/v1/realms/:realm", realms);
  return app;
}
