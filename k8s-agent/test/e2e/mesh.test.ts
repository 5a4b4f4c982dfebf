// The agent end to end on loopback: the edge under workerd, three hopway-agent
// processes laid out like cross-region.yaml, real applications and real
// clients (curl, redis-benchmark) through the relays.
import { spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, type Mesh, startEchoApp, startMesh } from "../../../test/support/loopback-mesh.ts";
import { openTunnel } from "../../../test/support/tunnel.ts";
import { likeApp1, metricsOf as metricsOfMesh, metricValue, run } from "../support/mesh-apps.ts";

const workDir = mkdtempSync(join(tmpdir(), "hopway-agent-e2e-"));
let mesh: Mesh;
const servers: Array<Server | HttpServer> = [];
let redis: ReturnType<typeof spawn> | undefined;

const metricsOf = (relay: string) => metricsOfMesh(mesh, relay);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  mesh = await startMesh({
    workDir,
    extra: { ...likeApp1("web1", "ipv4://10.0.0.2:80"), ...likeApp1("redis1", "ipv4://10.0.0.3:6379") },
    appsOf: { relaysvr1: ["app1", "web1", "redis1"], relaysvr2: ["app2"] },
  });
  const a1 = mesh.appAddress("app1");
  servers.push(await startEchoApp(a1.host, a1.port));
  const w = mesh.appAddress("web1");
  const web = createHttpServer((req, res) => res.end(`hello from web1, you asked for ${req.url}\n`));
  web.listen(w.port, w.host);
  await once(web, "listening");
  servers.push(web);
}, 120_000);

afterAll(async () => {
  redis?.kill("SIGTERM");
  for (const s of servers) s.close();
  await mesh?.stop();
  rmSync(workDir, { recursive: true, force: true });
});

describe("hopway-agent mesh on loopback", () => {
  it("app2 reaches app1 through relaysvr2 → relaysvr3 → relaysvr1", async () => {
    const app1 = mesh.appAddress("app1");
    const t = await openTunnel(mesh.clientAddress("relaysvr2"), `app1:${app1.port}`);
    expect(t.status).toBe(200);
    expect(t.headers.get("hopway-path")).toBe("relaysvr2, relaysvr3, relaysvr1");
    t.socket.resume();
    t.socket.end("over three relays");
    const chunks: Buffer[] = [];
    t.socket.on("data", (c: Buffer) => chunks.push(c));
    await once(t.socket, "end");
    expect(Buffer.concat(chunks).toString()).toBe("over three relays");
    // Each relay counted the tunnel with the right roles: client→relay, relay→relay, relay→target.
    const m2 = await metricsOf("relaysvr2");
    const m3 = await metricsOf("relaysvr3");
    const m1 = await metricsOf("relaysvr1");
    expect(metricValue(m2, 'hopway_relay_tunnels_opened_total{peer="client",next="relay"}')).toBeGreaterThanOrEqual(1);
    expect(metricValue(m3, 'hopway_relay_tunnels_opened_total{peer="relay",next="relay"}')).toBeGreaterThanOrEqual(1);
    expect(metricValue(m1, 'hopway_relay_tunnels_opened_total{peer="relay",next="target"}')).toBeGreaterThanOrEqual(1);
    expect(metricValue(m1, "hopway_edge_reachable")).toBe(1);
    expect(metricValue(m1, "hopway_route_table_version")).toBeGreaterThan(0);
  });

  it("the relays report their links with their heartbeats, as the topology page shows them", async () => {
    // The tunnel above rode a link relaysvr2 → relaysvr3 → relaysvr1; a heartbeat (a third of
    // the 15 s lease) carries each relay's link state to the edge, which serves it at GET /links.
    const url = `${mesh.edge.url}/v1/realms/${mesh.realm}/links`;
    const headers = { authorization: `Bearer ${mesh.edge.adminToken}` };
    let links: Array<{ from: string; peer: string; up: boolean }> = [];
    const deadline = Date.now() + 15_000;
    const has = (from: string, peer: string) => links.some((l) => l.from === from && l.peer === peer && l.up);
    while (Date.now() < deadline && !(has("relaysvr2", "relaysvr3") && has("relaysvr3", "relaysvr1"))) {
      links = ((await (await fetch(url, { headers })).json()) as { links: typeof links }).links;
      if (!(has("relaysvr2", "relaysvr3") && has("relaysvr3", "relaysvr1"))) await sleep(250);
    }
    expect(has("relaysvr2", "relaysvr3")).toBe(true);
    expect(has("relaysvr3", "relaysvr1")).toBe(true);
    // The accepting side reports the same link from its end.
    expect(links.some((l) => l.from === "relaysvr3" && l.peer === "relaysvr2")).toBe(true);
    expect(links.every((l) => l.up)).toBe(true);
  });

  it("carries 100 MiB each way intact (sha256 at both ends)", async () => {
    const app1 = mesh.appAddress("app1");
    const t = await openTunnel(mesh.clientAddress("relaysvr2"), `app1:${app1.port}`);
    expect(t.status).toBe(200);
    const total = 100 * 1024 * 1024;
    const block = randomBytes(1024 * 1024);
    const sent = createHash("sha256");
    const got = createHash("sha256");
    let received = 0;
    t.socket.on("data", (c: Buffer) => {
      got.update(c);
      received += c.length;
    });
    t.socket.resume();
    const done = once(t.socket, "end");
    const started = performance.now();
    for (let i = 0; i < total / block.length; i++) {
      // Every MiB differs (its index in front), so a reordered or repeated block changes the digest.
      const chunk = Buffer.from(block);
      chunk.writeUInt32BE(i, 0);
      sent.update(chunk);
      if (!t.socket.write(chunk)) await once(t.socket, "drain");
    }
    t.socket.end();
    await done;
    const seconds = (performance.now() - started) / 1000;
    console.log(
      `100 MiB echoed over 3 relays in ${seconds.toFixed(2)} s (${((2 * 100) / seconds).toFixed(0)} MiB/s both ways)`,
    );
    expect(received).toBe(total);
    expect(got.digest("hex")).toBe(sent.digest("hex"));
  });

  it("works for curl -p -x against an HTTP server", async () => {
    const relay = mesh.clientAddress("relaysvr2");
    const web = mesh.appAddress("web1");
    // Asynchronously: the HTTP server runs in this process.
    const r = await run("curl", [
      "-sS",
      "--max-time",
      "10",
      "-p",
      "-x",
      `http://${relay.host}:${relay.port}`,
      `http://web1:${web.port}/curl-test`,
    ]);
    console.log(`curl -p -x http://${relay.host}:${relay.port} http://web1:${web.port}/curl-test → ${r.stdout.trim()}`);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("hello from web1, you asked for /curl-test\n");
  });

  it("runs redis-benchmark through a tunnel per connection", async () => {
    const addr = mesh.appAddress("redis1");
    redis = spawn(
      "redis-server",
      ["--port", String(addr.port), "--bind", addr.host, "--save", "", "--appendonly", "no"],
      {
        stdio: "ignore",
      },
    );
    for (let i = 0; i < 50; i++) {
      if (
        spawnSync("redis-cli", ["-h", addr.host, "-p", String(addr.port), "ping"], {
          encoding: "utf8",
        }).stdout.trim() === "PONG"
      )
        break;
      await new Promise((r) => setTimeout(r, 100));
    }
    // A local helper listener: each connection redis-benchmark opens becomes one CONNECT tunnel.
    const relay = mesh.clientAddress("relaysvr2");
    const sockets = new Set<Socket>();
    const helper = createServer((local) => {
      sockets.add(local);
      local.setNoDelay(true);
      local.pause();
      openTunnel(relay, `redis1:${addr.port}`).then(
        (t) => {
          if (t.status !== 200) return local.destroy();
          t.socket.pipe(local).pipe(t.socket);
          t.socket.resume();
          local.resume();
          t.socket.on("error", () => local.destroy());
          local.on("error", () => t.socket.destroy());
        },
        () => local.destroy(),
      );
    });
    const port = await freePort("127.0.0.1");
    helper.listen(port, "127.0.0.1");
    await once(helper, "listening");
    servers.push(helper);
    const bench = async (p: number, host: string) =>
      (await run("redis-benchmark", ["-h", host, "-p", String(p), "-n", "10000", "-c", "20", "-t", "set,get", "-q"]))
        .stdout;
    const through = await bench(port, "127.0.0.1");
    const direct = await bench(addr.port, addr.host);
    const rps = (text: string, op: string) =>
      Number(new RegExp(`${op}: ([\\d.]+) requests per second`).exec(text.replace(/\r/g, "\n"))?.[1]);
    console.log(
      `redis-benchmark -n 10000 -c 20 through 3 relays: SET ${rps(through, "SET")} rps, GET ${rps(through, "GET")} rps; direct: SET ${rps(direct, "SET")}, GET ${rps(direct, "GET")}`,
    );
    expect(rps(through, "SET")).toBeGreaterThan(0);
    expect(rps(through, "GET")).toBeGreaterThan(0);
    for (const s of sockets) s.destroy();
  });

  it("keeps routing with the edge stopped, also after a relay restarts from its persisted table", async () => {
    await mesh.stopEdge();
    const app1 = mesh.appAddress("app1");
    const before = await openTunnel(mesh.clientAddress("relaysvr2"), `app1:${app1.port}`);
    expect(before.status).toBe(200);
    before.socket.destroy();
    // relaysvr1 restarts while the edge is down: it must come back from its data directory.
    const old = mesh.agents.get("relaysvr1");
    expect(await old?.stop()).toBe(0);
    const again = await mesh.startAgent("relaysvr1");
    const loaded = await again.waitFor((l) => l.msg === "route table applied");
    expect(loaded.source).toBe("disk");
    await again.waitFor((l) => l.msg === "edge unreachable", 10_000, "edge unreachable");
    const after = await openTunnel(mesh.clientAddress("relaysvr2"), `app1:${app1.port}`);
    expect(after.status).toBe(200);
    expect(after.headers.get("hopway-path")).toBe("relaysvr2, relaysvr3, relaysvr1");
    after.socket.resume();
    after.socket.write("still routed");
    expect(String((await once(after.socket, "data"))[0])).toBe("still routed");
    after.socket.destroy();
    const m = await metricsOf("relaysvr2");
    expect(metricValue(m, "hopway_edge_reachable")).toBe(0);
  });

  it("a stopped relay makes new tunnels fail cleanly with 502 naming the failed hop", async () => {
    const relay3 = mesh.agents.get("relaysvr3");
    expect(await relay3?.stop()).toBe(0);
    const app1 = mesh.appAddress("app1");
    const t = await openTunnel(mesh.clientAddress("relaysvr2"), `app1:${app1.port}`);
    expect(t.status).toBe(502);
    expect(t.headers.get("hopway-failed-at")).toBe("relaysvr2");
    // Refused outright, or, within the short backoff its drained link left (docs/links.md), said
    // with that link's early close.
    expect(t.headers.get("hopway-reason")).toMatch(
      /relaysvr3.*(ECONNREFUSED|backing off after a failed dial \(closed_early: link closed \d+ ms after its handshake)/,
    );
    t.socket.resume();
    await once(t.socket, "end");
    // relaysvr2 itself is fine: a direct neighbour still answers.
    const m = await metricsOf("relaysvr2");
    expect(metricValue(m, 'hopway_relay_tunnels_failed_total{reason="next_hop_failed"}')).toBeGreaterThanOrEqual(1);
  });
});
