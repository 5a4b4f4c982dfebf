// Runs THIS Worker (src/index.ts + its Durable Objects, configured by wrangler.toml)
// under workerd on 127.0.0.1. The agent end-to-end tests, the CLI tests, the demo
// and the benchmarks all use it, so they exercise the same Worker as `npm run dev`.
//
// It uses wrangler's createTestHarness(), the documented, stable API for running a
// Worker in tests. That API always listens on an ephemeral port and keeps storage in
// memory, so the one case it cannot serve, a restart on the same port with the same
// state (`persistDir` or `port`, used by the edge-outage test), goes through
// unstable_startWorker. docs/testing-harness.md says why.
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { createConnection } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createTestHarness, unstable_startWorker } from "wrangler";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

export interface LocalEdgeOptions {
  /** Directory for Durable Object/SQLite state; a restart with the same directory keeps the data. Default: in-memory. */
  persistDir?: string;
  /** Admin token injected as the HOPWAY_ADMIN_TOKEN binding; default: a fresh random one. */
  adminToken?: string;
  /** Token-signing key (HOPWAY_TOKEN_KEY); default: a fresh random one. Keep it across restarts so tokens stay valid. */
  tokenKey?: string;
  /** Port to listen on; default: ephemeral. */
  port?: number;
}

export interface LocalEdge {
  /** `http://127.0.0.1:PORT`, no trailing slash. */
  url: string;
  adminToken: string;
  tokenKey: string;
  /** Stops workerd and the proxy; resolves once the port no longer accepts connections. */
  stop(): Promise<void>;
}

interface Running {
  port: number;
  close(): Promise<void>;
}

export async function startLocalEdge(opts: LocalEdgeOptions = {}): Promise<LocalEdge> {
  const adminToken = opts.adminToken ?? `test-admin-${randomBytes(16).toString("hex")}`;
  const tokenKey = opts.tokenKey ?? randomBytes(32).toString("hex");
  // Loopback only: no Request.cf download from workers.cloudflare.com, no telemetry.
  process.env.CLOUDFLARE_CF_FETCH_ENABLED ??= "false";
  process.env.WRANGLER_SEND_METRICS ??= "false";
  const running =
    opts.persistDir === undefined && opts.port === undefined
      ? await startHarness(adminToken, tokenKey)
      : await startPersistent(adminToken, tokenKey, opts);
  const url = `http://127.0.0.1:${running.port}`;
  let stopped: Promise<void> | undefined;
  return {
    url,
    adminToken,
    tokenKey,
    stop() {
      stopped ??= (async () => {
        await running.close();
        await waitPortClosed(running.port, 10_000);
      })();
      return stopped;
    },
  };
}

/** The stable path: createTestHarness on an ephemeral port, state in memory. */
async function startHarness(adminToken: string, tokenKey: string): Promise<Running> {
  const server = createTestHarness({
    root: ROOT,
    // Only the secrets given here count (a developer's .dev.vars must not leak into tests).
    workers: [
      {
        configPath: join(ROOT, "wrangler.toml"),
        secrets: { HOPWAY_ADMIN_TOKEN: adminToken, HOPWAY_TOKEN_KEY: tokenKey },
      },
    ],
  });
  try {
    const { url } = await server.listen();
    if (url.hostname !== "127.0.0.1") throw new Error(`local edge: listening on ${url.hostname}, not 127.0.0.1`);
    return { port: Number(url.port), close: () => server.close() };
  } catch (err) {
    await server.close();
    throw err;
  }
}

/** A chosen port and/or state kept on disk across restarts: what createTestHarness does not offer. */
async function startPersistent(adminToken: string, tokenKey: string, opts: LocalEdgeOptions): Promise<Running> {
  if (opts.persistDir !== undefined) mkdirSync(opts.persistDir, { recursive: true });
  // The file watcher is off: a test edge must not reload mid-request because someone saved a source file.
  const worker = await unstable_startWorker({
    config: join(ROOT, "wrangler.toml"),
    entrypoint: join(ROOT, "src", "index.ts"),
    // Only the secrets given here count (a developer's .dev.vars must not leak into tests).
    bindings: {
      HOPWAY_ADMIN_TOKEN: { type: "plain_text", value: adminToken },
      HOPWAY_TOKEN_KEY: { type: "plain_text", value: tokenKey },
    },
    dev: {
      server: { hostname: "127.0.0.1", port: opts.port ?? 0 },
      inspector: false,
      persist: opts.persistDir !== undefined ? resolve(opts.persistDir) : false,
      watch: false,
      liveReload: false,
      logLevel: "none",
      registry: undefined,
    },
  });
  try {
    await worker.ready;
    return { port: Number((await worker.url).port), close: () => worker.dispose() };
  } catch (err) {
    await worker.dispose();
    throw err;
  }
}

/** Polls until nothing accepts on the port, so a caller that restarts on the same persistDir never races the old workerd. */
async function waitPortClosed(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const open = await new Promise<boolean>((done) => {
      const socket = createConnection({ host: "127.0.0.1", port });
      socket.once("connect", () => {
        socket.destroy();
        done(true);
      });
      socket.once("error", () => done(false));
    });
    if (!open) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`local edge: port ${port} still open ${timeoutMs} ms after stop()`);
}

/**
 * A JSON call to one realm of a local edge with its admin token, for test set-up:
 * a non-2xx answer throws with the edge's body, so a failed step names itself.
 */
export async function adminApi(
  edge: LocalEdge,
  realm: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<Record<string, unknown>> {
  const res = await fetch(`${edge.url}/v1/realms/${realm}${path}`, {
    method,
    headers: { authorization: `Bearer ${edge.adminToken}`, "content-type": "application/json" },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text) as Record<string, unknown>;
}

/**
 * Creates a realm as an operator does (PUT /v1/realms/{realm}; idempotent).
 * Everything here runs on loopback, so by default the realm's address policy
 * also lets agent tokens publish loopback gateways, which a real realm refuses
 * (docs/security/edge.md).
 */
export async function createRealm(
  edge: LocalEdge,
  realm: string,
  opts: { allowLoopback?: boolean } = {},
): Promise<void> {
  const res = await fetch(`${edge.url}/v1/realms/${realm}`, {
    method: "PUT",
    headers: { authorization: `Bearer ${edge.adminToken}` },
  });
  if (!res.ok) throw new Error(`PUT /v1/realms/${realm}: ${res.status} ${await res.text()}`);
  if (opts.allowLoopback ?? true) {
    await adminApi(edge, realm, "PUT", "/policy", { default: { allow_loopback: true } });
  }
}
