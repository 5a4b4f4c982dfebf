// `npm run soak:slots`: the full-size version of the admission test
// (k8s-agent/test/unit/relay/admission.test.ts): 10,000 idle sockets from
// unauthenticated sources held against relay B, each reopened
// HOPWAY_SLOTS_REOPEN_MS (2000) after the relay drops it, while relay hops from relay A, local clients and token clients keep
// opening tunnels for 30 s. The flood runs in a child process, so the RSS
// reported is the relays' process (relays A and B, the echo app and the
// legitimate clients), and each process stays far below 20,000 open files.
// Everything is on loopback.
//
// Knobs: HOPWAY_SLOTS_SOCKETS (10000), HOPWAY_SLOTS_SOURCES (64; 1 = the
// single-source probe), HOPWAY_SLOTS_SECONDS (30), HOPWAY_SLOTS_REOPEN_MS (2000),
// HOPWAY_SLOTS_RSS_MIB (bound, 400).
// Exit 1 when fewer than 99 % of the legitimate tunnels got through or the
// RSS bound was passed.
import { fork } from "node:child_process";
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { countingRelay } from "../k8s-agent/test/unit/hardening/support.ts";
import { hop, readAnswer, route, startEcho } from "../k8s-agent/test/unit/relay/helpers.ts";

const SOCKETS = Number(process.env.HOPWAY_SLOTS_SOCKETS ?? 10_000);
const SOURCES = Number(process.env.HOPWAY_SLOTS_SOURCES ?? 64);
const SECONDS = Number(process.env.HOPWAY_SLOTS_SECONDS ?? 30);
const REOPEN_MS = Number(process.env.HOPWAY_SLOTS_REOPEN_MS ?? 2_000);
const RSS_BOUND_MIB = Number(process.env.HOPWAY_SLOTS_RSS_MIB ?? 400);
const TOKEN = "client-token-for-the-slots-soak";

if (process.argv[2] === "--flood") {
  // The child: hold SOCKETS connections to host:port, never sending a byte. Bounded in
  // time (SECONDS + 10) and in count (at most 50 connects per socket slot).
  const [host, portText] = (process.argv[3] as string).split(":") as [string, string];
  const port = Number(portText);
  const deadline = Date.now() + (SECONDS + 10) * 1000;
  const maxConnects = SOCKETS * 50;
  let opened = 0;
  let open = 0;
  const sources = Array.from({ length: SOURCES }, (_, i) => `127.0.${120 + (i >> 6)}.${(i % 64) + 1}`);
  const dial = (source: string) => {
    if (Date.now() > deadline || opened >= maxConnects) return;
    opened++;
    const s: Socket = connect({ host, port, localAddress: source });
    let connected = false;
    s.on("error", () => {});
    s.on("connect", () => {
      connected = true;
      open++;
    });
    s.on("close", () => {
      if (connected) open--;
      setTimeout(() => dial(source), REOPEN_MS);
    });
  };
  for (let i = 0; i < SOCKETS; i++) dial(sources[i % sources.length] as string);
  const report = setInterval(() => process.send?.({ opened, open }), 1000);
  process.on("message", () => {
    clearInterval(report);
    process.send?.({ opened, open });
    process.exit(0);
  });
} else {
  const app = await startEcho();
  const appAddr = `ipv4://127.0.0.1:${app.port}`;
  const b = await countingRelay(
    {
      name: "relay-b",
      clientCidrs: ["127.0.0.2/32"],
      clientTokens: [TOKEN],
      routes: [route("relay-b", "app", [hop("app", appAddr)])],
    },
    "127.0.0.62",
  );
  const a = await countingRelay(
    {
      name: "relay-a",
      routes: [route("relay-a", "app", [hop("relay-b", `ipv4://${b.host}:${b.port}`), hop("app", appAddr)])],
    },
    "127.0.0.61",
  );
  const limits = b.relay.limits;
  console.log(
    `slots soak: ${SOCKETS} unauthenticated sockets from ${SOURCES} source(s) against relay B ` +
      `(handshake pool ${limits.maxHandshakes}, ${limits.maxHandshakesPerSource} per source, ` +
      `deadline ${limits.handshakeTimeoutMs} ms; tunnel pool ${limits.maxConnections}) for ${SECONDS} s`,
  );
  const baselineRss = process.memoryUsage().rss;
  const child = fork(fileURLToPath(import.meta.url), ["--flood", `${b.host}:${b.port}`], {
    execArgv: ["--import", "tsx"],
  });
  let flood = { opened: 0, open: 0 };
  let peakOpen = 0;
  const latencies: number[] = [];
  child.on("message", (m) => {
    flood = m as typeof flood;
    peakOpen = Math.max(peakOpen, flood.open);
  });
  await new Promise((r) => setTimeout(r, 3_000)); // let the flood build up

  const attempt = async (via: typeof a, extra: string, localAddress?: string): Promise<boolean> => {
    const s = connect({ host: via.host, port: via.port, ...(localAddress ? { localAddress } : {}) });
    s.on("error", () => {});
    const timer = setTimeout(() => s.destroy(), 10_000);
    const t0 = performance.now();
    try {
      s.write(`CONNECT app:${app.port} HTTP/1.1\r\n${extra}\r\n`);
      const ans = await readAnswer(s);
      latencies.push(performance.now() - t0);
      if (ans.status !== 200) return false;
      s.resume();
      s.write("ping");
      const [back] = (await once(s, "data")) as [Buffer];
      return back.toString() === "ping";
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
      s.destroy();
    }
  };
  let peakRss = process.memoryUsage().rss;
  let peakHeap = 0;
  let peakHandshakes = 0;
  const sampler = setInterval(() => {
    const m = process.memoryUsage();
    peakRss = Math.max(peakRss, m.rss);
    peakHeap = Math.max(peakHeap, m.heapUsed);
    peakHandshakes = Math.max(peakHandshakes, b.relay.pendingHandshakes);
  }, 100);
  const kinds: Record<string, () => Promise<boolean>> = {
    "hop via relay A": () => attempt(a, ""),
    "local client of B": () => attempt(b, "", "127.0.0.2"),
    "token client of B": () => attempt(b, `Proxy-Authorization: Bearer ${TOKEN}\r\n`, "127.0.0.3"),
  };
  const results: Record<string, { ok: number; failed: number }> = {};
  const end = Date.now() + SECONDS * 1000;
  await Promise.all(
    Object.entries(kinds).map(async ([kind, run]) => {
      const r = { ok: 0, failed: 0 };
      results[kind] = r;
      while (Date.now() < end) {
        if (await run()) r.ok++;
        else r.failed++;
        await new Promise((res) => setTimeout(res, 50));
      }
    }),
  );
  clearInterval(sampler);
  child.send("stop");
  await once(child, "exit");
  const ok = Object.values(results).reduce((n, r) => n + r.ok, 0);
  const total = Object.values(results).reduce((n, r) => n + r.ok + r.failed, 0);
  const rssMiB = peakRss / (1024 * 1024);
  latencies.sort((x, y) => x - y);
  const pct = (q: number) =>
    (latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0).toFixed(0);
  console.log(
    `slots soak: ${ok}/${total} legitimate tunnels (${((100 * ok) / Math.max(1, total)).toFixed(2)} %) ` +
      `${JSON.stringify(results)}, answer p50/p99 ${pct(0.5)}/${pct(0.99)} ms; flood ${flood.opened} connects, up to ${peakOpen} connected at once; ` +
      `handshake pool peak ${peakHandshakes}; relays' peak RSS ${rssMiB.toFixed(0)} MiB (bound ${RSS_BOUND_MIB}; ` +
      `${(baselineRss / 2 ** 20).toFixed(0)} MiB before the flood), peak heap ${(peakHeap / 2 ** 20).toFixed(0)} MiB`,
  );
  await a.close();
  await b.close();
  app.server.close();
  process.exit(ok / Math.max(1, total) >= 0.99 && rssMiB < RSS_BOUND_MIB ? 0 : 1);
}
