// Faults between the agents and the edge, on loopback with the real edge
// (workerd through wrangler, SQLite state on disk) and the agent's real edge
// client and relay: the edge disappears while a fleet of agents follows it,
// an agent restarts during the outage, the edge comes back on the same
// storage, and leases expire on time. Time is compressed (backoff cap 1 s
// instead of 30 s) so the outage takes seconds; `npm run soak` runs it longer.
import { createHash } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRealm, type LocalEdge, startLocalEdge } from "../../../test/support/local-edge.ts";
import { freePort } from "../../../test/support/loopback-mesh.ts";
import { type TunnelAttempt, tryTunnel } from "../../../test/support/tunnel.ts";
import { EdgeClient } from "../../src/edge/client.ts";
import { Relay } from "../../src/relay/relay.ts";
import { RoutingTable } from "../../src/relay/table.ts";

const OUTAGE_MS = Number(process.env.HOPWAY_FAULTS_OUTAGE_MS ?? 8_000);
const AGENTS = Number(process.env.HOPWAY_FAULTS_AGENTS ?? 12);
const BACKOFF = {
  backoffBaseMs: Number(process.env.HOPWAY_FAULTS_BACKOFF_BASE_MS ?? 100),
  backoffCapMs: Number(process.env.HOPWAY_FAULTS_BACKOFF_CAP_MS ?? 1_000),
};

const workDir = mkdtempSync(join(tmpdir(), "hopway-faults-"));
const realm = "faults";
let edge: LocalEdge;
let edgePort: number;
const servers: Server[] = [];
let app1Port: number;
let app2Port: number;

interface Agent {
  name: string;
  client: EdgeClient;
  relay: Relay;
  server: Server;
  port: number;
  /** Versions in the order the agent applied them. */
  applied: Array<{ version: number; source: string; at: number }>;
  /** When each request to the edge started (ms, performance clock). */
  attempts: number[];
}
const agents: Agent[] = [];

async function admin(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${edge.url}/v1/realms/${realm}${path}`, {
    method,
    headers: { authorization: `Bearer ${edge.adminToken}`, "content-type": "application/json" },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

const app = (name: string, port: number) => ({
  name,
  metadata: { namespace_name: "apps" },
  gateway: [{ priority: 1, address: `ipv4://127.0.0.1:${port}` }],
});
const relayRecord = (name: string) => ({ name, metadata: { namespace_name: "relays", kind: "relay" }, gateway: [] });

async function echo(): Promise<number> {
  const s = createServer((c) => {
    c.on("error", () => {});
    c.pipe(c);
  });
  s.listen(0, "127.0.0.1");
  await once(s, "listening");
  servers.push(s);
  return (s.address() as { port: number }).port;
}

async function startAgent(name: string): Promise<Agent> {
  const table = new RoutingTable(name);
  const relay = new Relay({ name, table });
  const server = createServer({ allowHalfOpen: true }, (s) => relay.handle(s));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const a: Agent = {
    name,
    relay,
    server,
    port: (server.address() as { port: number }).port,
    applied: [],
    attempts: [],
    client: undefined as unknown as EdgeClient,
  };
  a.client = new EdgeClient({
    url: `http://127.0.0.1:${edgePort}`,
    realm,
    token: edge.adminToken,
    node: name,
    records: [],
    leaseSeconds: 30,
    waitSeconds: 2,
    dataDir: join(workDir, name),
    onTable: (t, source) => {
      table.set(t);
      a.applied.push({ version: t.version, source, at: performance.now() });
    },
    fetch: (input, init) => {
      a.attempts.push(performance.now());
      return fetch(input, init);
    },
    ...BACKOFF,
  });
  await a.client.start();
  return a;
}

async function stopAgent(a: Agent): Promise<void> {
  await a.client.stop(false);
  a.relay.destroyAll();
  a.server.close();
}

/** CONNECT through an agent's relay; status 0 when the relay gave no answer. */
async function open(a: Agent, target: string): Promise<TunnelAttempt> {
  const t = await tryTunnel({ host: "127.0.0.1", port: a.port }, target);
  // Relays are stopped under open tunnels here: a reset must not become an uncaught error.
  t.socket.on("error", () => {});
  return t;
}

async function echoOnce(socket: Socket, text: string): Promise<string> {
  socket.resume();
  socket.write(text);
  let got = "";
  while (got.length < text.length) got += String((await once(socket, "data"))[0]);
  return got;
}

const waitUntil = async (pred: () => boolean, ms: number) => {
  const end = Date.now() + ms;
  while (Date.now() < end && !pred()) await new Promise((r) => setTimeout(r, 25));
  return pred();
};

beforeAll(async () => {
  app1Port = await echo();
  app2Port = await echo();
  edgePort = await freePort("127.0.0.1");
  edge = await startLocalEdge({ persistDir: join(workDir, "edge"), port: edgePort });
  await createRealm(edge, realm);
  expect((await admin("PUT", "/nodes/app1", app("app1", app1Port))).status).toBe(201);
  for (let i = 0; i < AGENTS; i++) expect((await admin("PUT", `/nodes/r${i}`, relayRecord(`r${i}`))).status).toBe(201);
  for (let i = 0; i < AGENTS; i++) agents.push(await startAgent(`r${i}`));
  const v = ((await admin("GET", "/nodes")).body as { version: number }).version;
  expect(await waitUntil(() => agents.every((a) => (a.client.version ?? 0) >= v), 20_000)).toBe(true);
}, 120_000);

afterAll(async () => {
  for (const a of agents) await stopAgent(a);
  for (const s of servers) s.close();
  await edge?.stop();
  rmSync(workDir, { recursive: true, force: true });
});

describe("faults: the edge goes away", () => {
  it("tunnels keep flowing and opening, agents back off with spread, restart from disk, and catch up", {
    timeout: OUTAGE_MS + 120_000,
  }, async () => {
    const [a0, a1] = agents as [Agent, Agent];
    // A long-lived tunnel streaming numbered lines through the whole outage.
    const stream = await open(a0, `app1:${app1Port}`);
    expect(stream.status).toBe(200);
    const sent = createHash("sha256");
    const got = createHash("sha256");
    let sentBytes = 0;
    let gotBytes = 0;
    stream.socket.on("data", (d: Buffer) => {
      got.update(d);
      gotBytes += d.length;
    });
    stream.socket.resume();
    let seq = 0;
    const writer = setInterval(() => {
      const line = Buffer.from(`line ${seq++} ${"x".repeat(seq % 900)}\n`);
      sent.update(line);
      sentBytes += line.length;
      stream.socket.write(line);
    }, 10);

    const vBefore = a0.client.version as number;
    const tDown = performance.now();
    await edge.stop();

    // During the outage: new tunnels through every relay, from the last good table.
    const during: number[] = [];
    let refused = 0;
    let restartMs = Number.NaN;
    let restartSource = "";
    while (performance.now() - tDown < OUTAGE_MS) {
      for (const a of agents) {
        const t = await open(a, "app1");
        during.push(t.ms);
        if (t.status !== 200 || (await echoOnce(t.socket, "hi")) !== "hi") refused++;
        t.socket.destroy();
      }
      if (Number.isNaN(restartMs) && performance.now() - tDown > OUTAGE_MS / 2) {
        // An agent restarts while the edge is still down: it must route again from its data directory.
        const idx = agents.indexOf(a1);
        await stopAgent(a1);
        const t0 = performance.now();
        const again = await startAgent(a1.name);
        const t = await open(again, "app1");
        restartMs = performance.now() - t0;
        restartSource = again.applied[0]?.source ?? "none";
        expect(t.status).toBe(200);
        t.socket.destroy();
        agents[idx] = again;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(refused).toBe(0);
    expect(restartSource).toBe("disk");
    expect(restartMs).toBeLessThan(3_000);

    // Backoff: capped (no gap between attempts far beyond the cap) and not in lockstep.
    const tUp = performance.now();
    const windows = agents.map((a) => a.attempts.filter((t) => t >= tDown && t <= tUp));
    const gaps = windows.flatMap((w) => w.slice(1).map((t, k) => t - (w[k] as number)));
    const maxGap = Math.max(...gaps);
    // Lockstep would put every agent's k-th retry at the same instant; full jitter spreads them.
    const spreads: number[] = [];
    // (The agent restarted mid-outage started its count later: it is left out of this one.)
    const steady = windows.filter((_, i) => agents[i]?.name !== a1.name);
    for (let k = 3; k < 8; k++) {
      const ts = steady.map((w) => w[k]).filter((t): t is number => t !== undefined);
      if (ts.length >= AGENTS / 2) spreads.push(Math.max(...ts) - Math.min(...ts));
    }
    const all = windows.flat().sort((x, y) => x - y);
    let together = 0;
    for (let i = 1; i < all.length; i++) if ((all[i] as number) - (all[i - 1] as number) < 5) together++;
    const perAgent = windows.map((w) => w.length);

    // The edge comes back on the same storage and port: state kept, and a change reaches everyone.
    edge = await startLocalEdge({
      persistDir: join(workDir, "edge"),
      port: edgePort,
      adminToken: edge.adminToken,
      tokenKey: edge.tokenKey,
    });
    const startMs = performance.now() - tUp;
    const kept = (await admin("GET", "/nodes")).body as { version: number; records: unknown[] };
    expect(kept.version).toBe(vBefore);
    expect(kept.records).toHaveLength(AGENTS + 1);
    const put = await admin("PUT", "/nodes/app2", app("app2", app2Port));
    expect(put.status).toBe(201);
    const v2 = (put.body as { version: number }).version;
    const tChange = performance.now();
    expect(
      await waitUntil(() => agents.every((a) => (a.client.version ?? 0) >= v2), BACKOFF.backoffCapMs + 15_000),
    ).toBe(true);
    const catchUpMs = performance.now() - tChange;
    for (const a of agents) {
      const t = await open(a, "app2");
      expect(t.status).toBe(200);
      expect(await echoOnce(t.socket, "new")).toBe("new");
      t.socket.destroy();
    }

    // The streaming tunnel never noticed: every byte came back, in order.
    clearInterval(writer);
    await waitUntil(() => gotBytes >= sentBytes, 5_000);
    expect(gotBytes).toBe(sentBytes);
    expect(got.digest("hex")).toBe(sent.digest("hex"));
    stream.socket.destroy();
    // Versions only ever moved forward in every agent.
    for (const a of agents) {
      const vs = a.applied.map((x) => x.version);
      expect(vs).toEqual([...vs].sort((x, y) => x - y));
      expect(new Set(vs).size).toBe(vs.length);
    }

    console.log(
      `edge outage ${(OUTAGE_MS / 1000).toFixed(0)} s, ${AGENTS} agents, backoff base ${BACKOFF.backoffBaseMs} ms cap ${BACKOFF.backoffCapMs} ms: ${during.length} new tunnels opened during it (p50 ${quantile(during, 0.5).toFixed(1)} ms, max ${quantile(during, 1).toFixed(0)} ms, 0 refused); stream carried ${sentBytes} bytes with none lost; retries per agent ${Math.min(...perAgent)}-${Math.max(...perAgent)}, max gap ${maxGap.toFixed(0)} ms, spread of the k-th retry across agents ${spreads.map((s) => s.toFixed(0)).join("/")} ms, ${together} of ${all.length} retries within 5 ms of another; agent restart to first tunnel ${restartMs.toFixed(0)} ms (table from ${restartSource}); edge restart ${startMs.toFixed(0)} ms, version kept ${kept.version}; all agents at v${v2} ${catchUpMs.toFixed(0)} ms after the change`,
    );
    // Capped: the longest pause between two attempts is the cap plus the failing request itself.
    expect(maxGap).toBeLessThan(BACKOFF.backoffCapMs + 1_000);
    // Every agent kept retrying through the outage.
    expect(Math.min(...perAgent)).toBeGreaterThanOrEqual(3);
    // Spread: retries are not synchronised across the fleet.
    expect(spreads.length).toBeGreaterThan(0);
    expect(Math.min(...spreads)).toBeGreaterThan(200);
    expect(together / all.length).toBeLessThan(0.5);
  });
});

describe("faults: leases", () => {
  it("a lease is removed between its TTL and TTL + a few seconds, never before", async () => {
    const ttl = 2;
    const put = await admin("PUT", "/nodes/shortlived", { ...relayRecord("shortlived"), ttl_seconds: ttl });
    expect(put.status).toBe(201);
    // The edge's own deadline (same host clock as ours).
    const expiresAt = Date.parse((put.body as { expires_at: string }).expires_at);
    let goneAt = Number.NaN;
    while (Date.now() < expiresAt + 5_000) {
      const r = await admin("GET", "/nodes/shortlived");
      const answeredAt = Date.now();
      if (r.status === 404) {
        goneAt = answeredAt;
        break;
      }
      expect(r.status).toBe(200);
      await new Promise((res) => setTimeout(res, 100));
    }
    const late = goneAt - expiresAt;
    console.log(`lease ttl ${ttl} s: gone ${late} ms after its expiry time (first 404 seen by a 100 ms poll)`);
    // Never before its TTL: an answer that already says 404 came after the deadline. At most a few seconds after.
    expect(late).toBeGreaterThanOrEqual(0);
    expect(late).toBeLessThan(3_000);
  });
});

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] as number;
}
