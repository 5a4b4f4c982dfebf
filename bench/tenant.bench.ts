// A tenant against a shared relay's memory (docs/security/relay.md, "What tunnels hold together is
// bounded"): one relay process (the bench's relay worker, with the image's node flags) whose route
// table names `t1` a tenant's relay. t1, certified by the bench realm's CA, holds the tenant's whole
// default share (2,500 places: 10 hopway-mux/1 links and 2,480 tunnels) in two attacks: tunnels to
// a target that accepts and never reads, BYTES sent into each (`stalled`); and tunnels to an echo
// server, each sent its first window, while t1 reads nothing from its links (`unread`). Each runs
// with limits.max_buffered_bytes off and at its default (64 MiB). The relay's RSS is sampled from
// /proc (as a container limit sees it, no forced GC) while the attack is held; then the same relay
// must carry a tunnel of the operator's relay to the echo server. Printed: the largest RSS, what
// the relay's check last measured, and what it reset (its metrics). Target: with the bound, the
// largest RSS stays under the 256 Mi memory limit of the shipped manifests.
//   npm run bench tenant      (BENCH_TENANT_TUNNELS, default 2,480; BENCH_TENANT_MIB, default 2)
import { once } from "node:events";
import { createServer, type Server, type Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { ALPN_MUX } from "../k8s-agent/src/relay/links/mux/frame.ts";
import { MuxSession, type MuxStream } from "../k8s-agent/src/relay/links/mux/session.ts";
import { DEFAULT_LIMITS } from "../k8s-agent/src/relay/relay.ts";
import type { Route } from "../src/core/schema.ts";
import { dialLinkForTest } from "../test/support/identity.ts";
import { bundleWorker, hop, IMAGE_ENV, load, MB, rssOf, runBench, startWorker, vmRss } from "./support.ts";

const TUNNELS = Number(process.env.BENCH_TENANT_TUNNELS ?? 2_480);
const BYTES = Number(process.env.BENCH_TENANT_MIB ?? 2) * 1024 * 1024;
/** Streams per link: the relay's default max_concurrent_streams is 1,000; t1 opens this many per link. */
const PER_LINK = 250;
const BOUND = DEFAULT_LIMITS.maxBufferedBytes;
/** The memory limit of the shipped manifests (k8s-agent/deploy/base/statefulset.yaml). */
const POD_LIMIT = 256 * 1024 * 1024;
/** How long the attack is held while the relay's RSS is sampled. */
const HOLD_MS = 6_000;

async function listenOn(server: Server): Promise<number> {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const a = server.address();
  return typeof a === "object" && a ? a.port : 0;
}

async function link(port: number, asRelay: string): Promise<{ s: MuxSession; raw: TLSSocket }> {
  const raw = await dialLinkForTest(port, "bench", asRelay, ALPN_MUX);
  const s = new MuxSession(raw, "client", { maxConcurrentStreams: 1_000, streamWindowBytes: 2 * 1024 * 1024 });
  s.on("error", () => {});
  return { s, raw };
}

/**
 * The two ways a tenant makes a relay hold bytes for it: its tunnels end at a target that never
 * reads (`stalled`), or its relay reads nothing from its own links while an echo server sends
 * every byte back towards it (`unread`: each tunnel sends its first window, 256 KiB, the most it
 * may without reading the relay's credit).
 */
type Attack = "stalled" | "unread";

/** A counter of the relay's /metrics text, 0 when absent. */
function counter(text: string, series: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

async function run(attack: Attack, bound: number, stalledPort: number, echoPort: number) {
  const routes: Route[] = [
    { from: "shared", to: "stalled", hops: [hop("stalled", stalledPort)] },
    { from: "shared", to: "echo", hops: [hop("echo", echoPort)] },
  ];
  const relay = await startWorker(
    "shared",
    routes,
    {
      ...IMAGE_ENV,
      HOPWAY_MAX_BUFFERED_BYTES: String(bound),
      HOPWAY_BENCH_TENANTS: JSON.stringify([{ namespace: "tenant-a", nodes: ["t1"] }]),
    },
    ["t1", "r1"],
  );
  const pid = relay.child.pid;
  const before = vmRss(pid);
  const sessions: MuxSession[] = [];
  const streams: MuxStream[] = [];
  const authority = attack === "stalled" ? "stalled" : "echo";
  for (let opened = 0; opened < TUNNELS; ) {
    const { s, raw } = await link(relay.port, "t1");
    sessions.push(s);
    const batch: MuxStream[] = [];
    for (let i = 0; i < PER_LINK && opened < TUNNELS; i++, opened++) {
      const st = s.request({ ":method": "CONNECT", ":authority": authority, "hopway-hops": "t1" });
      st.on("error", () => {});
      batch.push(st);
    }
    await Promise.all(batch.map((st) => once(st, "response")));
    if (attack === "unread") raw.pause();
    streams.push(...batch);
  }
  const chunk = Buffer.alloc(attack === "stalled" ? BYTES : 256 * 1024, 7);
  for (const st of streams) st.write(chunk);
  let most = before;
  const until = Date.now() + HOLD_MS;
  while (Date.now() < until) {
    most = Math.max(most, vmRss(pid));
    await new Promise((r) => setTimeout(r, 50));
  }
  const reading = (await rssOf(relay.child)) as { rss: number; tunnels: number; buffered?: number };
  relay.child.send({ cmd: "metrics" });
  const [{ text }] = (await once(relay.child, "message")) as [{ text: string }];
  const reset = counter(text, 'hopway_relay_buffer_resets_total{kind="tunnel",holder="tenant"}');
  const linksClosed = counter(text, 'hopway_relay_buffer_resets_total{kind="link",holder="tenant"}');
  // The operator's relay, once the attack has had its effect.
  const { s: r1 } = await link(relay.port, "r1");
  const op = r1.request({ ":method": "CONNECT", ":authority": "echo", "hopway-hops": "r1" });
  op.on("error", () => {});
  await once(op, "response");
  op.resume();
  const echoed = once(op, "data");
  op.write("still carried");
  const carried = String((await echoed)[0]) === "still carried";
  for (const s of [...sessions, r1]) s.destroy();
  relay.child.kill();
  return { before, most, reset, linksClosed, carried, buffered: reading.buffered ?? 0, tunnels: reading.tunnels };
}

runBench("tenant", async () => {
  bundleWorker();
  const held: Socket[] = [];
  const stalled = createServer((s) => {
    s.on("error", () => {});
    s.pause();
    held.push(s);
  });
  const echo = createServer((s) => {
    s.on("error", () => {});
    s.pipe(s);
  });
  const stalledPort = await listenOn(stalled);
  const echoPort = await listenOn(echo);
  console.log(
    `tenant bench: a tenant's relay with ${TUNNELS} tunnels on ${Math.ceil(TUNNELS / PER_LINK)} links (its whole default share); load average ${load()}`,
  );
  let worst = 0;
  for (const [attack, what] of [
    ["stalled", `to a target that never reads, ${BYTES / 1024 / 1024} MiB sent into each`],
    ["unread", "to an echo server, its relay reading nothing from its links, 256 KiB sent into each"],
  ] as const) {
    console.log(`  ${what}:`);
    for (const [label, bound] of [
      ["max_buffered_bytes off", 0],
      [`max_buffered_bytes ${BOUND / 1024 / 1024} MiB`, BOUND],
    ] as const) {
      const r = await run(attack, bound, stalledPort, echoPort);
      for (const s of held.splice(0)) s.destroy();
      if (!r.carried) throw new Error(`${attack}, ${label}: the operator's tunnel was not carried`);
      if (bound > 0) worst = Math.max(worst, r.most);
      console.log(
        `    ${label.padEnd(26)} relay RSS ${MB(r.before)} → at most ${MB(r.most)} MB (+${MB(r.most - r.before)} MB); ` +
          `held at the last check ${MB(r.buffered)} MB; reset ${r.reset} tunnels and ${r.linksClosed} links of the tenant; ` +
          `the operator's tunnel carried`,
      );
    }
  }
  console.log(
    `  largest RSS with the bound: ${MB(worst)} MB (target < the manifests' 256 Mi, ${MB(POD_LIMIT)} MB) ${worst < POD_LIMIT ? "MET" : "MISSED"}`,
  );
  stalled.close();
  echo.close();
});
