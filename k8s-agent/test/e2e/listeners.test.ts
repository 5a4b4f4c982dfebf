// Listeners end to end on loopback: the edge under workerd, three hopway-agent processes laid out
// like cross-region.yaml, listeners declared at the edge for relaysvr2, and unmodified clients
// (redis-benchmark, curl without -x) reaching applications behind relaysvr1 over three relays.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { connect, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, type Mesh, startEchoApp, startMesh } from "../../../test/support/loopback-mesh.ts";
import { likeApp1, metricsOf, metricValue, run } from "../support/mesh-apps.ts";

const workDir = mkdtempSync(join(tmpdir(), "hopway-listeners-e2e-"));
let mesh: Mesh;
const servers: Server[] = [];
let redis: ChildProcess | undefined;
/** Listener addresses on relaysvr2's side, all on loopback. */
const LISTEN_HOST = "127.88.0.1";

async function admin(method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${mesh.edge.url}/v1/realms/${mesh.realm}${path}`, {
    method,
    headers: { authorization: `Bearer ${mesh.edge.adminToken}`, "content-type": "application/json" },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
}

/** Declares a listener on relaysvr2 and waits until its agent reports it open. */
async function declare(name: string, port: number, target: string): Promise<void> {
  const agent = mesh.agents.get("relaysvr2");
  const before = agent?.lines.length ?? 0;
  const r = await admin("PUT", `/listeners/${name}`, {
    relays: { name: "relaysvr2" },
    listen: `${LISTEN_HOST}:${port}`,
    target,
  });
  expect(r.status, await r.clone().text()).toBeLessThan(300);
  await agent?.waitFor(
    (l) =>
      agent.lines.indexOf(l) >= before &&
      (l.msg === "listener open" || l.msg === "listener retargeted") &&
      (l.listener === name || l.to === target),
    15_000,
    `listener ${name} applied`,
  );
}

async function metric(relay: string, series: string): Promise<number> {
  return metricValue(await metricsOf(mesh, relay), series);
}

async function dial(port: number): Promise<Socket> {
  const s = connect({ host: LISTEN_HOST, port, allowHalfOpen: true });
  s.on("error", () => {});
  await once(s, "connect");
  return s;
}

/** Streams `mib` MiB of numbered blocks through an echo and checks the digest both ways. */
async function echoThrough(s: Socket, mib: number): Promise<{ sent: string; got: string; bytes: number }> {
  const block = randomBytes(1024 * 1024);
  const sent = createHash("sha256");
  const got = createHash("sha256");
  let bytes = 0;
  s.on("data", (c: Buffer) => {
    got.update(c);
    bytes += c.length;
  });
  const done = once(s, "end");
  for (let i = 0; i < mib; i++) {
    const chunk = Buffer.from(block);
    chunk.writeUInt32BE(i, 0);
    sent.update(chunk);
    if (!s.write(chunk)) await once(s, "drain");
  }
  s.end();
  await done;
  return { sent: sent.digest("hex"), got: got.digest("hex"), bytes };
}

beforeAll(async () => {
  mesh = await startMesh({
    workDir,
    realm: "listeners",
    extra: { ...likeApp1("web1", "ipv4://10.0.0.2:80"), ...likeApp1("redis1", "ipv4://10.0.0.3:6379") },
    appsOf: { relaysvr1: ["app1", "web1", "redis1"], relaysvr2: ["app2"] },
  });
  const a1 = mesh.appAddress("app1");
  servers.push(await startEchoApp(a1.host, a1.port));
  const w = mesh.appAddress("web1");
  const web = createHttpServer((req, res) => res.end(`hello from web1, you asked for ${req.url}\n`));
  web.listen(w.port, w.host);
  await once(web, "listening");
  servers.push(web as unknown as Server);
}, 120_000);

afterAll(async () => {
  redis?.kill("SIGTERM");
  for (const s of servers) s.close();
  await mesh?.stop();
  rmSync(workDir, { recursive: true, force: true });
});

describe("listeners through three relays", () => {
  it("curl reaches an HTTP server with no proxy option", async () => {
    const port = await freePort(LISTEN_HOST);
    await declare("web", port, `web1:${mesh.appAddress("web1").port}`);
    const r = await run("curl", ["-sS", "--max-time", "10", `http://${LISTEN_HOST}:${port}/via-listener`]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("hello from web1, you asked for /via-listener\n");
    expect(await metric("relaysvr2", 'hopway_listener_connections_total{result="carried"}')).toBeGreaterThanOrEqual(1);
    expect(await metric("relaysvr2", "hopway_listeners_open")).toBeGreaterThanOrEqual(1);
  });

  it("redis-benchmark runs against a real redis-server with no forwarder", async () => {
    const addr = mesh.appAddress("redis1");
    redis = spawn(
      "redis-server",
      ["--bind", addr.host, "--port", String(addr.port), "--save", "", "--appendonly", "no"],
      {
        stdio: "ignore",
      },
    );
    for (let i = 0; i < 50; i++) {
      const ping = spawnSync("redis-cli", ["-h", addr.host, "-p", String(addr.port), "ping"], { encoding: "utf8" });
      if (ping.stdout.trim() === "PONG") break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const port = await freePort(LISTEN_HOST);
    await declare("redis", port, `redis1:${addr.port}`);
    const r = await run("redis-benchmark", [
      "-h",
      LISTEN_HOST,
      "-p",
      String(port),
      "-n",
      "5000",
      "-c",
      "20",
      "-t",
      "set,get",
      "-q",
    ]);
    expect(r.code).toBe(0);
    const rps = (name: string) => Number(new RegExp(`${name}: ([\\d.]+) requests per second`).exec(r.stdout)?.[1]);
    console.log(
      `redis-benchmark -n 5000 -c 20 through a listener and 3 relays: SET ${rps("SET")} rps, GET ${rps("GET")} rps`,
    );
    expect(rps("SET")).toBeGreaterThan(0);
    expect(rps("GET")).toBeGreaterThan(0);
  });

  it("carries 100 MiB each way intact (sha256 at both ends)", async () => {
    const port = await freePort(LISTEN_HOST);
    await declare("bulk", port, `app1:${mesh.appAddress("app1").port}`);
    const s = await dial(port);
    const started = performance.now();
    const r = await echoThrough(s, 100);
    const seconds = (performance.now() - started) / 1000;
    console.log(`100 MiB echoed through a listener and 3 relays in ${seconds.toFixed(2)} s`);
    expect(r.bytes).toBe(100 * 1024 * 1024);
    expect(r.got).toBe(r.sent);
  });

  it("listeners added, retargeted and removed at the edge leave tunnels through other listeners intact", async () => {
    const app1 = `app1:${mesh.appAddress("app1").port}`;
    const steady = await freePort(LISTEN_HOST);
    await declare("steady", steady, app1);
    const s = await dial(steady);
    // 48 MiB streamed while the declarations change under it.
    const traffic = echoThrough(s, 48);
    const extra = await freePort(LISTEN_HOST);
    await declare("extra", extra, app1);
    await declare("extra", extra, `web1:${mesh.appAddress("web1").port}`);
    const curl = await run("curl", ["-sS", "--max-time", "10", `http://${LISTEN_HOST}:${extra}/retargeted`]);
    expect(curl.stdout).toBe("hello from web1, you asked for /retargeted\n");
    expect((await admin("DELETE", "/listeners/extra")).status).toBe(200);
    const agent = mesh.agents.get("relaysvr2");
    await agent?.waitFor((l) => l.msg === "listener closed" && l.listener === "extra", 15_000, "extra closed");
    const gone = connect({ host: LISTEN_HOST, port: extra });
    const [err] = (await once(gone, "error")) as [NodeJS.ErrnoException];
    expect(err.code).toBe("ECONNREFUSED");
    const r = await traffic;
    expect(r.bytes).toBe(48 * 1024 * 1024);
    expect(r.got).toBe(r.sent);
  });

  it("a target with no route is refused at once, logged and counted, and carried once a route appears", async () => {
    const port = await freePort(LISTEN_HOST);
    const echo = await freePort("127.77.0.200");
    await declare("late", port, `late1:${echo}`);
    // Closed by the listener: a FIN, or a reset (which may even arrive before "connect" is seen).
    const t0 = performance.now();
    const s = connect({ host: LISTEN_HOST, port, allowHalfOpen: true });
    s.on("error", () => {});
    s.resume();
    await new Promise((r) => {
      s.once("end", r);
      s.once("close", r);
    });
    expect(performance.now() - t0).toBeLessThan(2_000);
    const agent = mesh.agents.get("relaysvr2");
    const logged = await agent?.waitFor((l) => l.msg === "listener refused a connection" && l.listener === "late");
    expect(logged).toMatchObject({ status: 404, reason: "unknown_node" });
    expect(
      await metric("relaysvr2", 'hopway_listener_connections_total{result="unknown_node"}'),
    ).toBeGreaterThanOrEqual(1);

    servers.push(await startEchoApp("127.77.0.200", echo));
    const put = await admin("PUT", "/nodes/late1", likeApp1("late1", `ipv4://127.77.0.200:${echo}`).late1?.discovery);
    expect(put.status).toBe(201);
    // The route reaches every relay's table by long-poll: retry until the listener carries.
    let answer = "";
    for (let i = 0; i < 50 && answer !== "late hello"; i++) {
      // Refused until the route arrives: closed at once, with a reset as the request was unread.
      answer = await new Promise<string>((done) => {
        const c = connect({ host: LISTEN_HOST, port, allowHalfOpen: true });
        const chunks: Buffer[] = [];
        c.on("data", (b: Buffer) => chunks.push(b));
        c.on("error", () => done(""));
        c.on("end", () => done(Buffer.concat(chunks).toString()));
        c.end("late hello");
      });
      if (answer !== "late hello") await new Promise((r) => setTimeout(r, 200));
    }
    expect(answer).toBe("late hello");
  });
});
