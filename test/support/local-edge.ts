// Runs THIS Worker (src/index.ts + its Durable Objects) under workerd through
// wrangler's programmatic dev server, on 127.0.0.1 with an ephemeral port. The
// agent end-to-end tests, the CLI tests, the demo and the edge benchmark all use
// it, so they exercise the same code path as `npm run dev`.
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { createConnection } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { unstable_dev } from "wrangler";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

export interface LocalEdgeOptions {
  /** Directory for Durable Object/SQLite state; a restart with the same directory keeps the data. Default: in-memory. */
  persistDir?: string;
  /** Admin token injected as the HOPWAY_ADMIN_TOKEN binding; default: a fresh random one. */
  adminToken?: string;
  /** Port to listen on; default: ephemeral. */
  port?: number;
}

export interface LocalEdge {
  /** `http://127.0.0.1:PORT`, no trailing slash. */
  url: string;
  adminToken: string;
  /** Stops workerd and the proxy; resolves once the port no longer accepts connections. */
  stop(): Promise<void>;
}

export async function startLocalEdge(opts: LocalEdgeOptions = {}): Promise<LocalEdge> {
  const adminToken = opts.adminToken ?? `test-admin-${randomBytes(16).toString("hex")}`;
  // Loopback only: no Request.cf download from workers.cloudflare.com, no telemetry.
  process.env.CLOUDFLARE_CF_FETCH_ENABLED ??= "false";
  process.env.WRANGLER_SEND_METRICS ??= "false";
  if (opts.persistDir !== undefined) mkdirSync(opts.persistDir, { recursive: true });
  const worker = await unstable_dev(join(ROOT, "src", "index.ts"), {
    config: join(ROOT, "wrangler.toml"),
    ip: "127.0.0.1",
    port: opts.port ?? 0,
    inspectorPort: 0,
    local: true,
    logLevel: "none",
    // A developer's .dev.vars must not leak into tests: only the token given here counts.
    envFiles: [],
    vars: { HOPWAY_ADMIN_TOKEN: adminToken },
    ...(opts.persistDir !== undefined ? { persistTo: resolve(opts.persistDir) } : { persist: false }),
    experimental: {
      disableExperimentalWarning: true,
      disableDevRegistry: true,
      showInteractiveDevSession: false,
      watch: false,
      liveReload: false,
    },
  });
  const url = `http://127.0.0.1:${worker.port}`;
  let stopped: Promise<void> | undefined;
  return {
    url,
    adminToken,
    stop() {
      stopped ??= (async () => {
        await worker.stop();
        await waitPortClosed(worker.port, 10_000);
      })();
      return stopped;
    },
  };
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
