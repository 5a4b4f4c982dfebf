// `npm run demo`: the whole path on one machine. Starts the edge (workerd),
// imports a loopback copy of the cross-region example, starts the three relay
// agents and app1 (an echo service), then, as app2, sends a message to app1
// through relaysvr2 → relaysvr3 → relaysvr1 and checks what comes back.
// Every process it starts is stopped before it exits.
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import type { Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Mesh, startEchoApp, startMesh } from "../test/support/loopback-mesh.ts";
import { openTunnel } from "../test/support/tunnel.ts";

const workDir = mkdtempSync(join(tmpdir(), "hopway-demo-"));
let mesh: Mesh | undefined;
let app1: Server | undefined;
const say = (text: string) => console.log(`demo: ${text}`);

async function cleanup(): Promise<void> {
  app1?.close();
  await mesh?.stop();
  rmSync(workDir, { recursive: true, force: true });
}

async function run(): Promise<string> {
  say("starting the edge (workerd) and three relay agents on loopback …");
  const t0 = performance.now();
  mesh = await startMesh({ workDir, realm: "demo", appsOf: { relaysvr1: ["app1"], relaysvr2: ["app2"] } });
  say(`edge at ${mesh.edge.url}; agents up in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const a1 = mesh.appAddress("app1");
  app1 = await startEchoApp(a1.host, a1.port);
  say(`app1 (echo) listening on ${a1.host}:${a1.port}`);

  const res = await fetch(`${mesh.edge.url}/v1/realms/demo/routes?from=app2&to=app1`, {
    headers: { authorization: `Bearer ${mesh.edge.adminToken}` },
  });
  const route = (await res.json()) as { hops: Array<{ node: string; address: string; priority: number }> | null };
  say(`route the edge computed for app2 → app1:`);
  for (const h of route.hops ?? []) console.log(`        → ${h.node.padEnd(10)} ${h.address} (priority ${h.priority})`);

  const relay = mesh.clientAddress("relaysvr2");
  say(`app2 opens CONNECT app1:${a1.port} on relaysvr2 (${relay.host}:${relay.port})`);
  const tStart = performance.now();
  const tunnel = await openTunnel(relay, `app1:${a1.port}`);
  const setupMs = performance.now() - tStart;
  if (tunnel.status !== 200)
    throw new Error(`relay answered ${tunnel.status} ${tunnel.headers.get("hopway-reason") ?? ""}`);
  const path = tunnel.headers.get("hopway-path") ?? "?";
  say(`tunnel up in ${setupMs.toFixed(1)} ms through: ${path}`);

  const message = Buffer.concat([Buffer.from("hello app1, this is app2\n"), randomBytes(1024 * 1024)]);
  const sent = createHash("sha256").update(message).digest("hex");
  const chunks: Buffer[] = [];
  let received = 0;
  tunnel.socket.on("data", (c: Buffer) => {
    chunks.push(c);
    received += c.length;
  });
  tunnel.socket.resume();
  const tSend = performance.now();
  tunnel.socket.end(message);
  await once(tunnel.socket, "end");
  const rttMs = performance.now() - tSend;
  const back = Buffer.concat(chunks);
  const got = createHash("sha256").update(back).digest("hex");
  say(
    `round trip of ${message.length} bytes: ${rttMs.toFixed(1)} ms; sha256 sent ${sent.slice(0, 16)}…, received ${got.slice(0, 16)}…`,
  );
  if (received !== message.length || got !== sent) throw new Error("checksum mismatch");
  const expected = (route.hops ?? [])
    .slice(0, -1)
    .map((h) => h.node)
    .join(", ");
  if (path !== expected) throw new Error(`path ${path} differs from the edge's route ${expected}`);
  // Where the relays really went: every relay logs each address it dials (debug level).
  const dialed = [...mesh.agents.values()].flatMap((a) =>
    a.lines.filter((l) => l.msg === "dialing").map((l) => String(l.address)),
  );
  const offLoopback = dialed.filter((a) => !/^ipv4:\/\/127\.\d+\.\d+\.\d+:\d+$/.test(a));
  say(`the relays dialled ${dialed.length} addresses: ${dialed.join(", ")}`);
  if (offLoopback.length > 0) throw new Error(`a relay dialled outside loopback: ${offLoopback.join(", ")}`);
  return `OK: ${message.length} bytes went app2 → ${path.replace(/, /g, " → ")} → app1 and back in ${rttMs.toFixed(1)} ms; sha256 checksum matched`;
}

let code = 0;
let last = "";
try {
  last = await run();
} catch (err) {
  code = 1;
  last = `FAILED: ${err instanceof Error ? err.message : String(err)}`;
}
await cleanup();
console.log(last);
process.exit(code);
