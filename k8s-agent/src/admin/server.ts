// The agent's admin HTTP server: Prometheus metrics, the probes, the
// application's local API and the pre-delete hook. One listener, because a
// pod exposes one metrics port and the kubelet, Prometheus and a hook
// controller all reach the pod the same way. The local API is restricted to
// loopback callers by default, and its writes also need a bearer token
// (docs/security/relay.md): a loopback source is no proof of who is calling.
import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { describeIssues, type ErrorCode } from "@hopway/core/errors";
import type { ErrorBody } from "@hopway/core/wire";
import type { Registry } from "prom-client";
import { normalizeIp } from "../relay/self-addresses.ts";
import type { ScalingSignals } from "../scaling/signals.ts";
import { type NotReady, notReady, registerReadinessMetric } from "./readiness.ts";
import { LocalReportSchema } from "./schemas.ts";

export interface AdminServerOptions {
  /** `host:port`, `[v6]:port`, `:port`, or an object; port 0 picks a free one. */
  listen: string | { host?: string; port: number };
  /** The shared registry: the relay's metrics and the scaling gauges. */
  registry: Registry;
  scaling: ScalingSignals;
  /** Tunnels currently open through this relay. */
  tunnels: () => number;
  /** False while starting and once shutting down: /readyz answers 503. */
  ready: () => boolean;
  /**
   * Why the agent cannot do its job right now, if it cannot: a configuration problem (a refused
   * token, a record it would not take over) or a relay that cannot route (no valid route table, a
   * listener down). /readyz answers 503 with it, so such a pod is out of the Service's endpoints
   * and a bad rollout stops at its first pod. The hopway_not_ready gauge says the same.
   */
  notReadyReason?: () => NotReady | undefined;
  /** Who may call `/v1/local/*` (default: loopback only). */
  localApiFrom?: "loopback" | "any";
  /**
   * Bearer token the local API's writes require (`Authorization: Bearer <token>`);
   * undefined = writes are refused. Reads (status, owners, metrics, probes, hooks) do not need it.
   */
  localApiToken?: string | undefined;
  /**
   * Whether a caller is a connection this agent's relay opened itself (relay/self-addresses.ts):
   * such a caller is a tunnel's far end, never the application, whatever its source address.
   */
  isOwnConnection?: (accepted: Socket) => boolean;
  /** Largest request body accepted (default 16 KiB: a report is ~60 bytes). */
  maxBodyBytes?: number;
  /** Connections open at once (default 256), and from one source address (default 32). */
  maxConnections?: number;
  maxConnectionsPerSource?: number;
  /** A connection that sends nothing for this long is closed (default 10 s). */
  idleTimeoutMs?: number;
  /** Key-ownership look-ups (`/v1/local/owners`, k8s-agent/src/ownership); absent = 404. */
  ownership?: (query: URLSearchParams, body: unknown) => Promise<{ status: number; body: unknown }>;
}

export interface AdminServer {
  address: { host: string; port: number };
  /** `http://host:port` for clients and tests. */
  url: string;
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
    readonly path?: string,
  ) {
    super(message);
  }
}

export function parseListen(listen: AdminServerOptions["listen"]): { host: string; port: number } {
  if (typeof listen !== "string") return { host: listen.host ?? "0.0.0.0", port: listen.port };
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(listen);
  const port = Number(m?.[3]);
  if (!m || !Number.isInteger(port) || port > 65535)
    throw new RangeError(`listen address '${listen}' is not host:port`);
  return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
}

/** Whether a socket peer is inside the pod (loopback, also as an IPv4-mapped IPv6 address). */
export const isLoopback = (addr: string | undefined): boolean =>
  addr !== undefined && (addr === "::1" || /^(::ffff:)?127\./.test(addr));

type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<void> | void;

export async function startAdminServer(opts: AdminServerOptions): Promise<AdminServer> {
  const { registry, scaling, tunnels, ready } = opts;
  const maxBody = opts.maxBodyBytes ?? 16 * 1024;
  const localOnly = (opts.localApiFrom ?? "loopback") === "loopback";
  const readiness = () => notReady(ready(), opts.notReadyReason);
  registerReadinessMetric(registry, readiness);

  const json = (res: ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      "content-type": "application/json; charset=utf-8",
      "content-length": Buffer.byteLength(text),
      "cache-control": "no-store",
    });
    res.end(text);
  };

  const requireLocal = (req: IncomingMessage) => {
    if (opts.isOwnConnection?.(req.socket)) {
      throw new HttpError(403, "forbidden", "the local API does not answer connections the relay opened itself");
    }
    if (localOnly && !isLoopback(req.socket.remoteAddress)) {
      throw new HttpError(403, "forbidden", "the local API accepts only callers inside the pod (loopback)");
    }
  };

  // Compared as digests: equal lengths whatever was sent, so the time taken does not tell the
  // token's length either.
  const digest = (text: string) => createHash("sha256").update(text).digest();
  const expected = opts.localApiToken === undefined ? undefined : digest(opts.localApiToken);
  const requireWriter = (req: IncomingMessage) => {
    requireLocal(req);
    if (expected === undefined) {
      throw new HttpError(
        403,
        "forbidden",
        "local API writes are disabled: set admin.local_api_token (or _file) and send it as a bearer token",
      );
    }
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? "");
    const given = m ? digest(m[1] as string) : undefined;
    if (given === undefined || !timingSafeEqual(given, expected)) {
      throw new HttpError(401, "unauthorized", "local API writes need Authorization: Bearer <admin.local_api_token>");
    }
  };

  const readJson = async (req: IncomingMessage): Promise<unknown> => {
    const declared = Number(req.headers["content-length"] ?? 0);
    if (declared > maxBody) throw new HttpError(413, "body_too_large", `body over ${maxBody} bytes`);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > maxBody) throw new HttpError(413, "body_too_large", `body over ${maxBody} bytes`);
      chunks.push(chunk);
    }
    const text = Buffer.concat(chunks).toString("utf8");
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new HttpError(400, "invalid_json", "body is not JSON");
    }
  };

  const owners: Handler = async (req, res) => {
    requireLocal(req);
    if (!opts.ownership) throw new HttpError(404, "not_found", "key-ownership look-ups are not enabled on this agent");
    const body = req.method === "POST" ? await readJson(req) : undefined;
    const r = await opts.ownership(new URL(req.url ?? "/", "http://admin").searchParams, body);
    json(res, r.status, r.body);
  };

  // Requests that arrive while the registry renders share that render: a client that pipelines
  // many scrapes in one write must not make the agent render (and hold) one copy per request.
  let rendering: Promise<string> | undefined;
  const renderMetrics = (): Promise<string> => {
    rendering ??= registry.metrics().finally(() => {
      rendering = undefined;
    });
    return rendering;
  };

  const routes: Record<string, Partial<Record<string, Handler>>> = {
    "/metrics": {
      GET: async (_req, res) => {
        const text = await renderMetrics();
        res.writeHead(200, { "content-type": registry.contentType, "cache-control": "no-store" });
        res.end(text);
      },
    },
    "/healthz": { GET: (_req, res) => json(res, 200, { status: "ok" }) },
    "/readyz": {
      GET: (_req, res) => {
        const problem = readiness();
        if (problem === undefined) json(res, 200, { status: "ready" });
        else json(res, 503, { status: "not_ready", ...problem });
      },
    },
    "/v1/local/report": {
      PUT: async (req, res) => {
        requireWriter(req);
        const parsed = LocalReportSchema.safeParse(await readJson(req));
        if (!parsed.success) {
          const problems = describeIssues(parsed.error);
          const first = problems[0];
          throw new HttpError(
            400,
            "invalid_input",
            problems.map((p) => `${p.path || "body"}: ${p.message}`).join("; "),
            first?.path ?? "",
          );
        }
        scaling.setReport(parsed.data);
        json(res, 200, scaling.status(tunnels(), ready()));
      },
    },
    "/v1/local/status": {
      GET: (req, res) => {
        requireLocal(req);
        json(res, 200, scaling.status(tunnels(), ready()));
      },
    },
    "/v1/local/owners": {
      GET: (req, res) => owners(req, res),
      POST: (req, res) => owners(req, res),
    },
    // Polled every few seconds by a hook controller for as long as the pod
    // holds state: constant work, no I/O, same answer for the same state.
    "/v1/hooks/pre-delete": { GET: (_req, res) => json(res, 200, scaling.preDelete(tunnels(), true)) },
  };

  // Header and request timeouts are checked every second rather than Node's default 30 s.
  const server = createServer({ connectionsCheckingInterval: 1_000 }, async (req, res) => {
    try {
      const path = new URL(req.url ?? "/", "http://admin").pathname;
      const route = routes[path];
      if (!route) throw new HttpError(404, "not_found", `no such path: ${path}`);
      const method = req.method === "HEAD" ? "GET" : (req.method ?? "GET");
      const handler = route[method];
      if (!handler) {
        const allowed = Object.keys(route);
        if (allowed.includes("GET")) allowed.push("HEAD");
        res.setHeader("allow", allowed.join(", "));
        throw new HttpError(405, "method_not_allowed", `${req.method} is not allowed on ${path}`);
      }
      await handler(req, res);
    } catch (err) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof HttpError) {
        const body: ErrorBody = {
          error: { code: err.code, message: err.message, ...(err.path !== undefined ? { path: err.path } : {}) },
        };
        json(res, err.status, body);
      } else {
        const body: ErrorBody = { error: { code: "internal", message: "internal error" } };
        json(res, 500, body);
      }
    }
  });
  // Slow or stuck clients must not pin sockets: probes and scrapes are tiny.
  server.headersTimeout = 5_000;
  server.requestTimeout = 10_000;
  server.keepAliveTimeout = 5_000;
  server.maxHeadersCount = 64;
  // Probes and scrapes send one request per connection, or a few in keep-alive; Node parses and
  // answers every request of a pipelined write before it reads on, so a caller that pipelines
  // thousands of /metrics requests would make the agent hold thousands of answers (it ran out of
  // heap with 0.5 MB of them). Past this, Node answers 503 and the connection closes.
  server.maxRequestsPerSocket = 16;
  // The timeouts above start with a request: a connection that never sends one is closed too,
  // and no one source may hold more than its share, so the kubelet's probes and Prometheus's
  // scrapes always find room (docs/agent.md, "Admin server").
  server.setTimeout(opts.idleTimeoutMs ?? 10_000);
  server.maxConnections = opts.maxConnections ?? 256;
  const perSource = opts.maxConnectionsPerSource ?? 32;
  const bySource = new Map<string, number>();
  server.on("connection", (socket: Socket) => {
    // One caller is one source whether a dual-stack listener reports it as IPv4 or IPv4-mapped.
    const from = normalizeIp(socket.remoteAddress ?? "");
    const n = bySource.get(from) ?? 0;
    if (n >= perSource) {
      socket.destroy();
      return;
    }
    bySource.set(from, n + 1);
    socket.once("close", () => {
      const left = (bySource.get(from) ?? 1) - 1;
      if (left <= 0) bySource.delete(from);
      else bySource.set(from, left);
    });
  });

  const { host, port } = parseListen(opts.listen);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const urlHost = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  return {
    address: { host: addr.address, port: addr.port },
    url: `http://${urlHost}:${addr.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        // A scrape in progress gets a moment to finish; then everything goes.
        setTimeout(() => server.closeAllConnections(), 1_000).unref();
      }),
  };
}
