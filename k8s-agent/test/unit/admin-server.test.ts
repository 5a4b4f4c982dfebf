// The admin server over real HTTP on loopback, driven through the typed client
// where the client has a method and with raw fetch for the error paths.
import { once } from "node:events";
import { connect } from "node:net";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { NOT_READY_REASONS, type NotReady } from "../../src/admin/readiness.ts";
import { type AdminServer, isLoopback, parseListen, startAdminServer } from "../../src/admin/server.ts";
import { AgentApiError, AgentClient } from "../../src/client/index.ts";
import { ScalingConfigSchema } from "../../src/scaling/config.ts";
import { ScalingSignals } from "../../src/scaling/signals.ts";

let server: AdminServer;
let signals: ScalingSignals;
let client: AgentClient;
let openTunnels = 0;
let isReady = true;
const TOKEN = "local-api-token-0123456789";

beforeEach(async () => {
  const registry = new Registry();
  signals = new ScalingSignals({
    config: ScalingConfigSchema.parse({ workload: "hopway-agent", undrain_after_seconds: 0 }),
    podName: "hopway-agent-2",
    registry,
  });
  openTunnels = 0;
  isReady = true;
  server = await startAdminServer({
    listen: "127.0.0.1:0",
    registry,
    scaling: signals,
    tunnels: () => openTunnels,
    ready: () => isReady,
    localApiToken: TOKEN,
  });
  client = new AgentClient({ baseUrl: server.url, token: TOKEN });
});
afterEach(async () => {
  await server.close();
});

describe("probes and metrics", () => {
  it("healthz is 200; readyz follows ready()", async () => {
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
    isReady = false;
    const r = await fetch(`${server.url}/readyz`);
    expect(r.status).toBe(503);
    expect(await r.json()).toEqual({ status: "not_ready", reason: "starting", message: "starting or shutting down" });
  });

  it("hopway_not_ready says the reason /readyz gives, one series per reason of the fixed set", async () => {
    let problem: NotReady | undefined;
    const registry = new Registry();
    const probe = await startAdminServer({
      listen: "127.0.0.1:0",
      registry,
      scaling: new ScalingSignals({
        config: ScalingConfigSchema.parse({ workload: "hopway-agent" }),
        podName: "hopway-agent-0",
        registry,
      }),
      tunnels: () => 0,
      ready: () => isReady,
      notReadyReason: () => problem,
    });
    const gauge = async () => {
      const text = await (await fetch(`${probe.url}/metrics`)).text();
      const series = [...text.matchAll(/^hopway_not_ready\{reason="(\w+)"\} (\d+)$/gm)];
      expect(series.map((m) => m[1])).toEqual([...NOT_READY_REASONS]);
      return series.filter((m) => m[2] === "1").map((m) => m[1]);
    };
    const readyz = async () => ((await (await fetch(`${probe.url}/readyz`)).json()) as { reason?: string }).reason;
    try {
      expect(await gauge()).toEqual([]);
      expect(await readyz()).toBeUndefined();
      problem = { reason: "record_refused", message: "namespace at its record limit" };
      expect(await gauge()).toEqual(["record_refused"]);
      expect(await readyz()).toBe("record_refused");
      isReady = false;
      expect(await gauge()).toEqual(["starting"]);
      expect(await readyz()).toBe("starting");
    } finally {
      await probe.close();
    }
  });

  it("closes connections that send nothing, and keeps one source to its share of connections", async () => {
    const small = await startAdminServer({
      listen: "127.0.0.1:0",
      registry: new Registry(),
      scaling: signals,
      tunnels: () => 0,
      ready: () => true,
      maxConnectionsPerSource: 4,
      idleTimeoutMs: 300,
    });
    const { port } = small.address;
    const open = async () => {
      const s = connect({ host: "127.0.0.1", port });
      s.on("error", () => {});
      await once(s, "connect");
      return s;
    };
    try {
      // Four idle connections from one source: the fifth is closed at once.
      const idle = await Promise.all([open(), open(), open(), open()]);
      const fifth = await open();
      await once(fifth, "close");
      // The idle ones go after the idle timeout, so the source has room again.
      const t0 = performance.now();
      await Promise.all(idle.map((s) => once(s, "close")));
      expect(performance.now() - t0).toBeLessThan(3_000);
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      // A request that never finishes its head is closed too.
      const partial = await open();
      partial.write("GET /metrics HTTP/1.1\r\n");
      await once(partial, "close");
    } finally {
      await small.close();
    }
  });

  it("serves the registry in the Prometheus text format", async () => {
    await client.report({ load: 0.42, holds_state: true, state_items: 7 });
    const r = await fetch(`${server.url}/metrics`);
    expect(r.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await r.text();
    expect(text).toMatch(/^hopway_load_factor 0\.42$/m);
    expect(text).toMatch(/^hopway_state_floor 3$/m); // ordinal 2 + 1
    expect(text).toMatch(/^hopway_state_items 7$/m);
    expect(text).toMatch(/^# TYPE hopway_draining gauge$/m);
  });

  it("unknown paths are 404 and wrong methods 405 with Allow, in the error format", async () => {
    const r = await fetch(`${server.url}/nope`);
    expect(r.status).toBe(404);
    expect(await r.json()).toEqual({ error: { code: "not_found", message: "no such path: /nope" } });
    const m = await fetch(`${server.url}/v1/local/report`, { method: "POST", body: "{}" });
    expect(m.status).toBe(405);
    expect(m.headers.get("allow")).toBe("PUT");
    expect(((await m.json()) as { error: { code: string } }).error.code).toBe("method_not_allowed");
    const g = await fetch(`${server.url}/metrics`, { method: "DELETE" });
    expect(g.status).toBe(405);
    expect(g.headers.get("allow")).toBe("GET, HEAD");
  });

  it("a caller that pipelines thousands of scrapes in one write gets a few rendered, the rest 503", async () => {
    const { port } = server.address;
    const socket = connect(port, "127.0.0.1");
    await once(socket, "connect");
    let received = "";
    const statuses = () => [...received.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => m[1]);
    const all = new Promise<void>((resolve) => {
      socket.on("data", (d: Buffer) => {
        received += d.toString("latin1");
        if (statuses().length === 2_000) resolve();
      });
    });
    socket.write("GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n".repeat(2_000));
    await all;
    socket.destroy();
    // What the agent renders and holds for this caller is bounded, not one registry per request.
    const got = statuses();
    expect(got.filter((s) => s === "200")).toHaveLength(16);
    expect(got.filter((s) => s === "503")).toHaveLength(2_000 - 16);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });
});

describe("local API", () => {
  it("report → status, including the draining answer taken from the edge", async () => {
    const s = await client.report({ load: 0.5, holds_state: true, state_items: 10 });
    expect(s).toMatchObject({
      pod: "hopway-agent-2",
      workload: "hopway-agent",
      ordinal: 2,
      load: 0.5,
      state_floor: 3,
      draining: false,
      desired_replicas: null,
      may_delete: false,
    });
    expect(s.reported_at).not.toBeNull();
    signals.applyEdgeScaling({
      workload: "hopway-agent",
      desired_by_load: 2,
      state_floor: 3,
      draining: [2],
      desired_replicas: 3,
    });
    const after = await client.status();
    expect(after).toMatchObject({ draining: true, desired_replicas: 3, desired_by_load: 2, workload_state_floor: 3 });
    expect(await client.draining()).toBe(true);
    // An answer for another workload does not touch this pod.
    signals.applyEdgeScaling({ workload: "other", desired_by_load: 9, state_floor: 0, draining: [] });
    expect(await client.draining()).toBe(true);
    signals.applyEdgeScaling({ workload: "hopway-agent", desired_by_load: 3, state_floor: 0, draining: [] });
    expect(await client.draining()).toBe(false);
  });

  it("rejects bad input with 400 naming the field", async () => {
    const bad = async (body: string) => {
      const r = await fetch(`${server.url}/v1/local/report`, {
        method: "PUT",
        body,
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      return { status: r.status, body: (await r.json()) as { error: { code: string; path?: string } } };
    };
    expect(await bad("{")).toMatchObject({ status: 400, body: { error: { code: "invalid_json" } } });
    expect(await bad(JSON.stringify({ load: -1, holds_state: true }))).toMatchObject({
      status: 400,
      body: { error: { code: "invalid_input", path: "load" } },
    });
    expect(await bad(JSON.stringify({ load: 1 }))).toMatchObject({
      body: { error: { code: "invalid_input", path: "holds_state" } },
    });
    expect(await bad(JSON.stringify({ load: 1, holds_state: false, extra: 1 }))).toMatchObject({
      body: { error: { code: "invalid_input" } },
    });
    expect(await bad(JSON.stringify({ load: 1, holds_state: false, pad: "x".repeat(20_000) }))).toMatchObject({
      status: 413,
      body: { error: { code: "body_too_large" } },
    });
    // Nothing of the above reached the signals.
    expect((await client.status()).reported_at).toBeNull();
  });

  it("the client validates before sending and surfaces server errors as AgentApiError", async () => {
    await expect(client.report({ load: Number.NaN, holds_state: false })).rejects.toThrow();
    const broken = new AgentClient({ baseUrl: `${server.url}/v1/does-not-exist` });
    await expect(broken.status()).rejects.toMatchObject({ name: "AgentApiError", status: 404, code: "not_found" });
    await expect(broken.status()).rejects.toBeInstanceOf(AgentApiError);
  });
});

describe("pre-delete hook", () => {
  it("goes 0 → 1 only when no state is left and no tunnel is open", async () => {
    const seen: Array<[0 | 1, string[]]> = [];
    const poll = async () => {
      const p = await client.preDelete();
      seen.push([p.may_delete, p.blockers]);
      return p.may_delete;
    };
    expect(await poll()).toBe(1); // nothing reported, nothing open
    await client.report({ load: 0.3, holds_state: true, state_items: 5 });
    openTunnels = 2;
    expect(await poll()).toBe(0);
    await client.report({ load: 0.1, holds_state: false, state_items: 0 });
    expect(await poll()).toBe(0); // state moved, tunnels still open
    openTunnels = 0;
    expect(await poll()).toBe(1);
    // holds_state false but items left over: still not safe.
    await client.report({ load: 0, holds_state: false, state_items: 1 });
    expect(await poll()).toBe(0);
    expect(seen.map((s) => s[1])).toEqual([
      [],
      ["holds_state", "state_items", "open_tunnels"],
      ["open_tunnels"],
      [],
      ["state_items"],
    ]);
  });

  it("is idempotent and fast under polling", async () => {
    await client.report({ load: 0.2, holds_state: true });
    const bodies = new Set<string>();
    const started = performance.now();
    for (let i = 0; i < 200; i++) bodies.add(await (await fetch(`${server.url}/v1/hooks/pre-delete`)).text());
    const perCall = (performance.now() - started) / 200;
    expect(bodies.size).toBe(1);
    expect(JSON.parse([...bodies][0] ?? "")).toMatchObject({ may_delete: 0, blockers: ["holds_state"] });
    // Generous bound (shared 2-core CI); the hook controller polls every 2 s.
    expect(perCall).toBeLessThan(50);
  });
});

describe("local API access", () => {
  it("writes need the bearer token even from loopback; reads do not", async () => {
    const put = async (headers: Record<string, string>) => {
      const r = await fetch(`${server.url}/v1/local/report`, {
        method: "PUT",
        headers,
        body: JSON.stringify({ load: 9, holds_state: true, state_items: 99 }),
      });
      return { status: r.status, code: ((await r.json()) as { error?: { code: string } }).error?.code };
    };
    expect(await put({})).toEqual({ status: 401, code: "unauthorized" });
    expect(await put({ authorization: "Bearer wrong-token-0123456789" })).toEqual({
      status: 401,
      code: "unauthorized",
    });
    expect(await put({ authorization: `Bearer ${TOKEN}x` })).toEqual({ status: 401, code: "unauthorized" });
    expect(await put({ authorization: `Basic ${TOKEN}` })).toEqual({ status: 401, code: "unauthorized" });
    // Nothing reached the signals or the metrics the HPA reads.
    const status = await new AgentClient({ baseUrl: server.url }).status();
    expect(status).toMatchObject({ load: 0, reported_at: null });
    expect(await (await fetch(`${server.url}/metrics`)).text()).toMatch(/^hopway_load_factor 0$/m);
    expect((await fetch(`${server.url}/v1/hooks/pre-delete`)).status).toBe(200);
    expect(await put({ authorization: `Bearer ${TOKEN}` })).toMatchObject({ status: 200 });
  });

  it("without a configured token, writes are refused", async () => {
    const registry = new Registry();
    const scaling = new ScalingSignals({ config: ScalingConfigSchema.parse({}), podName: "p-0", registry });
    const open = await startAdminServer({
      listen: "127.0.0.1:0",
      registry,
      scaling,
      tunnels: () => 0,
      ready: () => true,
    });
    try {
      const r = await fetch(`${open.url}/v1/local/report`, {
        method: "PUT",
        headers: { authorization: "Bearer anything-at-all-0123456789" },
        body: JSON.stringify({ load: 9, holds_state: true }),
      });
      expect(r.status).toBe(403);
      expect(((await r.json()) as { error: { code: string; message: string } }).error).toMatchObject({
        code: "forbidden",
        message: expect.stringMatching(/local_api_token/),
      });
      expect(scaling.status(0, true).reported_at).toBeNull();
    } finally {
      await open.close();
    }
  });

  it("only loopback peers count as inside the pod", () => {
    for (const a of ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"]) expect(isLoopback(a), a).toBe(true);
    for (const a of ["10.0.0.7", "::ffff:10.0.0.7", "fe80::1", "1127.0.0.1", undefined]) {
      expect(isLoopback(a), String(a)).toBe(false);
    }
  });
});

describe("listen address", () => {
  it("parses the forms the config accepts", () => {
    expect(parseListen(":9090")).toEqual({ host: "0.0.0.0", port: 9090 });
    expect(parseListen("127.0.0.1:0")).toEqual({ host: "127.0.0.1", port: 0 });
    expect(parseListen("[::1]:9090")).toEqual({ host: "::1", port: 9090 });
    expect(() => parseListen("9090")).toThrow(RangeError);
    expect(() => parseListen("host:70000")).toThrow(RangeError);
  });
});
