// The pod-deletion-cost patcher through the agent's Kubernetes API client
// (src/k8s/api.ts) against a local HTTP server that speaks the two Kubernetes API calls
// involved (GET and PATCH of one pod). No cluster is available here (no
// kind/k3s, no network), so this server stands in for the API server; it
// applies JSON merge patches to a pod object the way the API server does for
// metadata.annotations and can be told to fail.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { KubeApi } from "../../src/k8s/api.ts";
import {
  DELETION_COST_ANNOTATION,
  DELETION_COST_RBAC,
  DeletionCostPatcher,
  type Timers,
} from "../../src/k8s/deletion-cost.ts";

interface Call {
  method: string;
  path: string;
  contentType: string | undefined;
  auth: string | undefined;
  body: unknown;
}

class FakeApiServer {
  server: Server;
  calls: Call[] = [];
  annotations: Record<string, string> = {};
  /** Status codes to answer the next PATCHes with, in order; empty = succeed. */
  failures: Array<{ status: number; retryAfter?: string }> = [];
  constructor() {
    this.server = createServer((req, res) => {
      let data = "";
      req.on("data", (c: Buffer) => {
        data += c.toString();
      });
      req.on("end", () => {
        const body = data ? (JSON.parse(data) as unknown) : undefined;
        this.calls.push({
          method: req.method ?? "",
          path: req.url ?? "",
          contentType: req.headers["content-type"],
          auth: req.headers.authorization,
          body,
        });
        const send = (status: number, obj: unknown, headers: Record<string, string> = {}) => {
          res.writeHead(status, { "content-type": "application/json", ...headers });
          res.end(JSON.stringify(obj));
        };
        const url = new URL(req.url ?? "/", "http://x");
        if (url.pathname !== "/api/v1/namespaces/relay/pods/hopway-agent-1") {
          return send(404, { kind: "Status", apiVersion: "v1", status: "Failure", reason: "NotFound", code: 404 });
        }
        if (req.method === "GET") return send(200, this.pod());
        if (req.method === "PATCH") {
          const fail = this.failures.shift();
          if (fail) {
            return send(
              fail.status,
              { kind: "Status", apiVersion: "v1", status: "Failure", code: fail.status },
              fail.retryAfter ? { "retry-after": fail.retryAfter } : {},
            );
          }
          if (req.headers["content-type"] !== "application/merge-patch+json") {
            return send(415, { kind: "Status", code: 415 });
          }
          const patch = body as { metadata?: { annotations?: Record<string, string | null> } };
          for (const [k, v] of Object.entries(patch.metadata?.annotations ?? {})) {
            if (v === null) delete this.annotations[k];
            else this.annotations[k] = v;
          }
          return send(200, this.pod());
        }
        send(405, { kind: "Status", code: 405 });
      });
    });
  }
  pod() {
    return {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "hopway-agent-1", namespace: "relay", annotations: { ...this.annotations } },
    };
  }
  patches() {
    return this.calls.filter((c) => c.method === "PATCH");
  }
  async listen(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
}

/** A manual clock: timers fire only when the test advances time. */
class ManualTimers implements Timers {
  t = 1_000_000;
  private pending: Array<{ at: number; fn: () => void; id: number }> = [];
  private nextId = 1;
  now() {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number) {
    const id = this.nextId++;
    this.pending.push({ at: this.t + ms, fn, id });
    return id;
  }
  clearTimeout(h: unknown) {
    this.pending = this.pending.filter((p) => p.id !== h);
  }
  /** Moves time forward, firing due timers in order. */
  advance(ms: number) {
    const end = this.t + ms;
    for (;;) {
      this.pending.sort((a, b) => a.at - b.at);
      const next = this.pending[0];
      if (!next || next.at > end) break;
      this.pending.shift();
      this.t = Math.max(this.t, next.at);
      next.fn();
    }
    this.t = end;
  }
  nextDue(): number | undefined {
    return this.pending.length ? Math.min(...this.pending.map((p) => p.at)) - this.t : undefined;
  }
}

let api: FakeApiServer;
let timers: ManualTimers;
let patcher: DeletionCostPatcher;
let registry: Registry;

const makePatcher = async (annotations: Record<string, string> = {}) => {
  api.annotations = annotations;
  const url = await api.listen();
  registry = new Registry();
  patcher = new DeletionCostPatcher({
    api: new KubeApi({ server: url, token: () => "service-account-token\n" }),
    namespace: "relay",
    podName: "hopway-agent-1",
    timers,
    random: () => 0.5, // no jitter: exact spacing
    registry,
  });
  await patcher.start();
};

/** Fires due timers and waits for the resulting HTTP round trip. */
const advance = async (ms: number) => {
  timers.advance(ms);
  await patcher.idle();
};

beforeEach(() => {
  api = new FakeApiServer();
  timers = new ManualTimers();
});
afterEach(async () => {
  await patcher?.close();
  await new Promise((r) => api.server.close(r));
});

describe("DeletionCostPatcher", () => {
  it("writes a JSON merge patch of the annotation with the service account token", async () => {
    await makePatcher();
    patcher.set(4);
    await advance(0);
    expect(api.annotations[DELETION_COST_ANNOTATION]).toBe("4");
    const [patch] = api.patches();
    expect(patch?.contentType).toBe("application/merge-patch+json");
    expect(patch?.auth).toBe("Bearer service-account-token");
    expect(patch?.body).toEqual({ metadata: { annotations: { [DELETION_COST_ANNOTATION]: "4" } } });
    expect(patch?.path).toContain("fieldManager=hopway-agent");
    expect(patcher.current()).toBe(4);
    expect(await registry.getSingleMetricAsString("hopway_pod_deletion_cost")).toMatch(/ 4$/m);
  });

  it("writes only when the value changes and at most once every 30 s", async () => {
    await makePatcher();
    patcher.set(2);
    await advance(0);
    patcher.set(2);
    patcher.set(3);
    patcher.set(5);
    await advance(10_000);
    expect(api.patches()).toHaveLength(1); // still inside the 30 s
    await advance(19_999);
    expect(api.patches()).toHaveLength(1);
    await advance(1);
    expect(api.patches()).toHaveLength(2);
    expect(api.annotations[DELETION_COST_ANNOTATION]).toBe("5"); // the latest value, intermediate ones skipped
    // Back and forth inside the window with no net change: no write at all.
    patcher.set(1);
    patcher.set(5);
    await advance(60_000);
    expect(api.patches()).toHaveLength(2);
  });

  it("a restarted agent does not rewrite the value already on the pod", async () => {
    await makePatcher({ [DELETION_COST_ANNOTATION]: "3" });
    expect(api.calls[0]).toMatchObject({ method: "GET", path: "/api/v1/namespaces/relay/pods/hopway-agent-1" });
    patcher.set(3);
    await advance(60_000);
    expect(api.patches()).toHaveLength(0);
  });

  it("backs off exponentially on failures and honours Retry-After", async () => {
    await makePatcher();
    api.failures = [{ status: 503 }, { status: 500 }, { status: 429, retryAfter: "200" }];
    patcher.set(7);
    await advance(0);
    expect(api.patches()).toHaveLength(1);
    expect(timers.nextDue()).toBe(30_000); // 30 s × 2^0
    await advance(30_000);
    expect(api.patches()).toHaveLength(2);
    expect(timers.nextDue()).toBe(60_000); // 30 s × 2^1
    await advance(60_000);
    expect(api.patches()).toHaveLength(3);
    expect(timers.nextDue()).toBe(200_000); // Retry-After: 200 beats 120 s
    await advance(200_000);
    expect(api.patches()).toHaveLength(4);
    expect(api.annotations[DELETION_COST_ANNOTATION]).toBe("7");
    expect(timers.nextDue()).toBeUndefined(); // nothing left to do
    const text = await registry.getSingleMetricAsString("hopway_pod_deletion_cost_patches_total");
    expect(text).toMatch(/result="ok"} 1$/m);
    expect(text).toMatch(/result="error"} 3$/m);
  });

  it("a permission error waits the maximum backoff instead of retrying soon", async () => {
    await makePatcher();
    api.failures = [{ status: 403 }];
    patcher.set(1);
    await advance(0);
    expect(timers.nextDue()).toBe(300_000);
  });

  it("no attempt is ever closer than 30 s to the previous one (failures included)", async () => {
    await makePatcher();
    api.failures = Array.from({ length: 6 }, (_, i) => ({ status: i % 2 ? 500 : 503 }));
    const attempts: number[] = [];
    api.server.prependListener("request", () => attempts.push(timers.now()));
    // The application changes its state every 7 s for 84 s; time moves in 1 s
    // steps, so each request is stamped within 1 s of when it was sent.
    for (let s = 0; s < 1_200; s++) {
      if (s % 7 === 0 && s / 7 < 12) patcher.set(s / 7 + 1);
      await advance(1_000);
    }
    const patchTimes = attempts; // the GET happened before the listener was added
    expect(patchTimes.length).toBeGreaterThanOrEqual(7); // 6 failures, then success(es)
    for (let i = 1; i < patchTimes.length; i++) {
      expect((patchTimes[i] ?? 0) - (patchTimes[i - 1] ?? 0)).toBeGreaterThanOrEqual(29_000);
    }
    expect(api.annotations[DELETION_COST_ANNOTATION]).toBe("12");
  });

  it("rejects values that are not int32", async () => {
    await makePatcher();
    expect(() => patcher.set(1.5)).toThrow(RangeError);
    expect(() => patcher.set(2 ** 31)).toThrow(RangeError);
  });

  it("uses exactly the API verbs the Role grants", async () => {
    await makePatcher();
    patcher.set(2);
    await advance(0);
    const verbs = new Set(api.calls.map((c) => (c.method === "GET" ? "get" : c.method.toLowerCase())));
    expect([...verbs].sort()).toEqual([...DELETION_COST_RBAC.verbs].sort());
    expect(api.calls.every((c) => c.path.startsWith("/api/v1/namespaces/relay/pods/"))).toBe(true);
  });
});
