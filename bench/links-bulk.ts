// Scratch A/B for the bulk lane of bench/links.bench.ts without the rest of it: Hopway chains of
// three relay workers over hopway-mux/1 links (the bench's worker and node flags), one per
// checkout given (this one, plus any BENCH_AB directories holding another checkout, e.g. an
// unpacked `git archive`), one stream of BENCH_BULK_MIB (default 128) per round, rounds
// interleaved across the chains (BENCH_AB_FLAGS="…": this checkout again, its relays with those
// node flags added); prints each relay's CPU per MiB (a first, b middle, c last)
// for each chain's round with the least total. BENCH_CPS=SECONDS measures connections/s and CPU
// per connection instead; BENCH_PERF=FILE records the first chain's relays with perf (cpu-clock).
// BENCH_FLOOR=1 adds the node TLS floor lane (test/support/bench-tls-floor.ts, as in the links
// bench) to the rounds and prints each chain's CPU per MiB per position against it.
// Not part of `npm run bench`:
//   BENCH_AB=/tmp/base node --import tsx --expose-gc bench/links-bulk.ts [rounds, default 5]
import { spawn } from "node:child_process";
import { join } from "node:path";
import { buildSync } from "esbuild";
import type { Route } from "../src/core/schema.ts";
import { writeRelayTls } from "../test/support/identity.ts";
import {
  bundleAgent,
  cpuMs,
  firstJsonLine,
  forkProxy,
  hop,
  IMAGE_ENV,
  load,
  mib,
  peer,
  ROOT,
  runBench,
  runPeer,
  TLS_FLOOR_BUNDLE,
  work,
} from "./support.ts";

const BYTES = Number(process.env.BENCH_BULK_MIB ?? 128) * 1024 * 1024;
const ROUNDS = Number(process.argv[2] ?? 5);
/** Chains to run: a checkout and extra node flags for its relays (BENCH_AB_FLAGS: this checkout again, with them). */
const CHECKOUTS: Array<[string, string[]]> = [
  [ROOT, []],
  ...(process.env.BENCH_AB ?? "")
    .split(",")
    .filter(Boolean)
    .map((d): [string, string[]] => [d, []]),
  ...(process.env.BENCH_AB_FLAGS ? [[ROOT, process.env.BENCH_AB_FLAGS.split(" ")] as [string, string[]]] : []),
];

runBench("links-bulk", async () => {
  const serve = peer(["serve"]);
  const targets = await firstJsonLine(serve);
  const sink = targets.bulk as number;
  const env = { ...IMAGE_ENV, HOPWAY_LINK_PROTOCOL: process.env.HOPWAY_LINK_PROTOCOL ?? "mux" };
  const chains: Array<{
    label: string;
    port: number;
    procs: ReturnType<typeof forkProxy> extends Promise<infer P> ? P[] : never;
  }> = [];
  for (const [i, [dir, flags]] of CHECKOUTS.entries()) {
    const bundle = join(work, `worker-${i}.mjs`);
    bundleAgent(join(dir, "test/support/relay-worker.ts"), bundle);
    const n = (x: string) => `x${i}-${x}`;
    const names = [n("a"), n("b"), n("c")];
    const r = (from: string, path: Array<{ node: string; port: number }>): Route[] => [
      { from, to: "bulk", hops: [...path.map((p) => hop(p.node, p.port)), hop("bulk", sink)] },
      { from, to: "echo", hops: [...path.map((p) => hop(p.node, p.port)), hop("echo", targets.echo as number)] },
    ];
    const start = (name: string, routes: Route[]) =>
      forkProxy(
        bundle,
        [name, writeRelayTls(join(work, "tls", name), "bench", name), JSON.stringify(routes), names.join(",")],
        // Each checkout with its own native code, as the image keeps it beside the bundle.
        { ...env, HOPWAY_SPLICE_ADDON: join(dir, "k8s-agent/native/build/hopway-splice.node") },
        ["--expose-gc", ...flags, ...(process.env.BENCH_PERF ? ["--perf-basic-prof-only-functions"] : [])],
      );
    const c = await start(n("c"), r(n("c"), []));
    const b = await start(n("b"), r(n("b"), [{ node: n("c"), port: c.port }]));
    const a = await start(
      n("a"),
      r(n("a"), [
        { node: n("b"), port: b.port },
        { node: n("c"), port: c.port },
      ]),
    );
    chains.push({ label: [dir, ...flags].join(" "), port: a.port, procs: [a, b, c] });
    // Warm-up: opens the links, JIT.
    await runPeer(["send", "127.0.0.1", String(a.port), String(32 * 1024 * 1024), "bulk:0"]);
  }
  if (process.env.BENCH_FLOOR === "1") {
    buildSync({
      entryPoints: [join(ROOT, "test/support/bench-tls-floor.ts")],
      bundle: true,
      platform: "node",
      format: "esm",
      outfile: TLS_FLOOR_BUNDLE,
      logLevel: "warning",
    });
    const tls = (name: string) => writeRelayTls(join(work, "tls", name), "bench", name);
    const c = await forkProxy(TLS_FLOOR_BUNDLE, ["tls", "plain", String(sink), tls("floor-c")]);
    const b = await forkProxy(TLS_FLOOR_BUNDLE, ["tls", "tls", String(c.port), tls("floor-b"), "floor-c"]);
    const a = await forkProxy(TLS_FLOOR_BUNDLE, ["plain", "tls", String(b.port), tls("floor-a"), "floor-b"]);
    chains.push({ label: FLOOR, port: a.port, procs: [a, b, c] });
    await runPeer(["send", "127.0.0.1", String(a.port), String(32 * 1024 * 1024)]);
  }
  // BENCH_PERF=FILE: samples the relays of the first chain with perf (cpu-clock) during the rounds.
  const perfOut = process.env.BENCH_PERF;
  const perf =
    perfOut && chains[0]
      ? spawn(
          "perf",
          [
            "record",
            "-e",
            "cpu-clock",
            "-F",
            "499",
            "-g",
            "-o",
            perfOut,
            "-p",
            chains[0].procs.map((p) => p.child.pid).join(","),
          ],
          { stdio: "ignore" },
        )
      : undefined;
  if (perf) await new Promise((r) => setTimeout(r, 1000));
  const stopPerf = async () => {
    if (!perf) return;
    perf.kill("SIGINT");
    await new Promise((r) => perf.once("exit", r));
  };
  // BENCH_CPS=SECONDS: connections/s instead (the bench's connection-rate client, 32 concurrent), CPU per connection (all three relays, then a/b/c).
  const cpsSeconds = Number(process.env.BENCH_CPS ?? 0);
  if (cpsSeconds > 0) {
    const lines = new Map<string, string[]>();
    for (let i = 0; i < ROUNDS; i++) {
      for (const ch of chains) {
        const cpu0 = ch.procs.map((p) => cpuMs(p.child.pid));
        const res = await runPeer(["cps", "127.0.0.1", String(ch.port), String(cpsSeconds), "32", "echo:0", "200000"]);
        const per = ch.procs.map(
          (p, j) => ((cpuMs(p.child.pid) - (cpu0[j] as number)) * 1000) / Math.max(1, res.done as number),
        );
        const us = per.reduce((sum, x) => sum + x, 0);
        const rate = (res.done as number) / (res.seconds as number);
        lines.set(ch.label, [
          ...(lines.get(ch.label) ?? []),
          `${rate.toFixed(0)}/s ${us.toFixed(0)} µs (${per.map((x) => x.toFixed(0)).join("/")})`,
        ]);
      }
    }
    await stopPerf();
    for (const ch of chains) console.log(`${ch.label}: ${(lines.get(ch.label) ?? []).join("; ")}`);
    for (const ch of chains) for (const p of ch.procs) p.child.kill("SIGKILL");
    console.log(`load ${load()}`);
    serve.stdin?.end();
    return;
  }
  const best = new Map<string, { total: number; per: number[]; rate: number }>();
  const all = new Map<string, string[]>();
  const perRound = new Map<string, number[][]>();
  for (let i = 0; i < ROUNDS; i++) {
    for (const ch of chains) {
      const cpu0 = ch.procs.map((p) => cpuMs(p.child.pid));
      // The floor moves the bytes as they come: no CONNECT.
      const target = ch.label === FLOOR ? [] : ["bulk:0"];
      const res = await runPeer(["send", "127.0.0.1", String(ch.port), String(BYTES), ...target]);
      const m = (res.bytes as number) / 1024 / 1024;
      if ((res.bytes as number) !== BYTES) throw new Error(`${ch.label}: ${res.bytes} bytes of ${BYTES}`);
      const per = ch.procs.map((p, j) => (cpuMs(p.child.pid) - (cpu0[j] as number)) / m);
      perRound.set(ch.label, [...(perRound.get(ch.label) ?? []), per]);
      const total = per.reduce((s, x) => s + x, 0);
      const rate = mib(res.bytes as number, res.seconds as number);
      all.set(ch.label, [...(all.get(ch.label) ?? []), `${rate.toFixed(0)}/${total.toFixed(2)}`]);
      const prev = best.get(ch.label);
      if (prev === undefined || total < prev.total) best.set(ch.label, { total, per, rate });
    }
  }
  await stopPerf();
  for (const ch of chains) {
    const bb = best.get(ch.label) as { total: number; per: number[]; rate: number };
    console.log(`${ch.label}: rounds (MiB/s / ms/MiB) ${(all.get(ch.label) ?? []).join(" ")}`);
    const totals = (all.get(ch.label) ?? []).map((x) => Number(x.split("/")[1])).sort((x, y) => x - y);
    console.log(`  median ${(totals[Math.floor(totals.length / 2)] ?? 0).toFixed(2)} ms/MiB`);
    console.log(
      `  best ${bb.rate.toFixed(0)} MiB/s, ${bb.total.toFixed(2)} ms/MiB (a / b / c: ${bb.per.map((x) => x.toFixed(2)).join(" / ")})`,
    );
    for (const p of ch.procs) p.child.kill("SIGKILL");
  }
  // Per position, each chain's CPU per MiB over the floor's, from the medians of the rounds.
  const floor = perRound.get(FLOOR);
  if (floor !== undefined) {
    const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? 0;
    const fm = [0, 1, 2].map((j) => med(floor.map((r) => r[j] as number)));
    for (const ch of chains) {
      if (ch.label === FLOOR) continue;
      const rs = perRound.get(ch.label) ?? [];
      const m = [0, 1, 2].map((j) => med(rs.map((r) => r[j] as number)));
      console.log(
        `${ch.label}: median ms/MiB a / b / c ${m.map((x) => x.toFixed(2)).join(" / ")}; floor ${fm.map((x) => x.toFixed(2)).join(" / ")}; over the floor ${m.map((x, j) => (x - (fm[j] as number)).toFixed(2)).join(" / ")}, ratio ${(m.reduce((s, x) => s + x, 0) / fm.reduce((s, x) => s + x, 0)).toFixed(2)}`,
      );
    }
  }
  console.log(`load ${load()}`);
  serve.stdin?.end();
});

const FLOOR = "node TLS floor";
