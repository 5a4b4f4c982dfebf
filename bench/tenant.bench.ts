// A tenant against a shared relay's memory (docs/security/relay.md, "What tunnels hold together is
// bounded"): one relay process (the bench's relay worker, with the image's node flags) whose route
// table names `t1` a tenant's relay; t1, certified by the bench realm's CA, opens TUNNELS tunnels
// over hopway-mux/1 links to a target that accepts and never reads, and sends BYTES into each. The
// relay's RSS (from /proc, as a container limit sees it, no forced GC) is sampled while it holds
// them, once with limits.max_buffered_bytes off and once at its default (64 MiB). Then the same
// relay carries a tunnel of the operator's relay to an echo server: the attack must not cost it
// that. Figures: the relay's largest RSS, and its growth from before the attack, in each run, and
// what its check last measured (hopway_relay_buffered_bytes). The tenant holds its whole default
// share of the relay (2,500 places: 10 links and 2,480 tunnels). Target: with the bound, the
// relay's largest RSS stays under the 256 Mi memory limit of the shipped manifests.
//   npm run bench tenant      (BENCH_TENANT_TUNNELS, default 2,480; BENCH_TENANT_MIB, default 2)
import { once } from "node:events";
import { createServer, type Server, type Socket } from "node:net";
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

async function link(port: number, asRelay: string): Promise<MuxSession> {
  const raw = await dialLinkForTest(port, "bench", asRelay, ALPN_MUX);
  const s = new MuxSession(raw, "client", { maxConcurrentStreams: 1_000, streamWindowBytes: 2 * 1024 * 1024 });
  s.on("error", () => {});
  return s;
}

async function run(bound: number, stalledPort: number, echoPort: number) {
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
  for (let opened = 0; opened < TUNNELS; ) {
    const s = await link(relay.port, "t1");
    sessions.push(s);
    const batch: MuxStream[] = [];
    for (let i = 0; i < PER_LINK && opened < TUNNELS; i++, opened++) {
      const st = s.request({ ":method": "CONNECT", ":authority": "stalled", "hopway-hops": "t1" });
      st.on("error", () => {});
      batch.push(st);
    }
    await Promise.all(batch.map((st) => once(st, "response")));
    streams.push(...batch);
  }
  const chunk = Buffer.alloc(BYTES, 7);
  for (const st of streams) st.write(chunk);
  let most = before;
  const until = Date.now() + HOLD_MS;
  while (Date.now() < until) {
    most = Math.max(most, vmRss(pid));
    await new Promise((r) => setTimeout(r, 50));
  }
  const reading = (await rssOf(relay.child)) as { rss: number; tunnels: number; buffered?: number };
  const reset = streams.filter((st) => st.rstCode !== undefined && st.rstCode !== 0).length;
  // The operator's relay, once the attack has had its effect.
  const r1 = await link(relay.port, "r1");
  const op = r1.request({ ":method": "CONNECT", ":authority": "echo", "hopway-hops": "r1" });
  op.on("error", () => {});
  await once(op, "response");
  op.resume();
  const echoed = once(op, "data");
  op.write("still carried");
  const carried = String((await echoed)[0]) === "still carried";
  for (const s of [...sessions, r1]) s.destroy();
  relay.child.kill();
  return { before, most, reset, carried, buffered: reading.buffered ?? 0, tunnels: reading.tunnels };
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
    `tenant bench: ${TUNNELS} tunnels of a tenant's relay to a target that never reads, ${BYTES / 1024 / 1024} MiB sent into each; load average ${load()}`,
  );
  const results: Array<[string, Awaited<ReturnType<typeof run>>]> = [];
  for (const [label, bound] of [
    ["max_buffered_bytes off", 0],
    [`max_buffered_bytes ${BOUND / 1024 / 1024} MiB`, BOUND],
  ] as const) {
    const r = await run(bound, stalledPort, echoPort);
    for (const s of held.splice(0)) s.destroy();
    results.push([label, r]);
    console.log(
      `  ${label.padEnd(26)} relay RSS ${MB(r.before)} → at most ${MB(r.most)} MB (+${MB(r.most - r.before)} MB); ` +
        `held at the last check ${MB(r.buffered)} MB; tenant tunnels reset ${r.reset} of ${TUNNELS}; ` +
        `the operator's tunnel ${r.carried ? "carried" : "NOT carried"}`,
    );
  }
  const bounded = results[1]?.[1];
  if (bounded === undefined) throw new Error("no bounded run");
  if (!bounded.carried) throw new Error("the operator's tunnel was not carried");
  console.log(
    `  largest RSS with the bound: ${MB(bounded.most)} MB (target < the manifests' 256 Mi, ${MB(POD_LIMIT)} MB) ${bounded.most < POD_LIMIT ? "MET" : "MISSED"}`,
  );
  stalled.close();
  echo.close();
});
