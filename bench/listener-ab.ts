// Relay CPU through a listener, for two builds of the relay side by side: `BASE_TREE` (another
// checkout, e.g. an export of an older commit with node_modules linked) and this tree, against
// HAProxy (TCP mode, 1 thread) and the bench's bare Node forwarders (test/support/bench-floor-relay.ts
// "plain": accept, connect, pipe; and "handles": the same on libuv's handles, no net.Socket).
// Each lane takes the load in turn, ROUNDS rounds in alternating order, and the proxy's CPU time
// comes from /proc. Not a `*.bench.ts`: `npm run bench` does not run it.
//   LOAD=redis (default): one redis-server; `redis-benchmark -n N -c 20 -t set,get` per lane;
//     CPU per request.
//   LOAD=cps: an echo server; the relay bench's connection client (connect, 16 bytes each way,
//     close; 16 concurrent, CPS_SECONDS (default 3) per lane); CPU per connection.
//   BASE_TREE=/tmp/base ROUNDS=4 node --import tsx bench/listener-ab.ts
//   LOAD=cps BASE_TREE=/tmp/base ROUNDS=10 node --import tsx bench/listener-ab.ts
// SPLICE_AB=1 adds this tree's relay with the native splice off (HOPWAY_NATIVE_SPLICE=0; docs/relay.md,
// "Native splice") and prints the splice's ratio by round: one build with and without it.
//   LOAD=cps SPLICE_AB=1 ROUNDS=10 node --import tsx bench/listener-ab.ts
// STRACE=1 adds one run of HAProxy and one of this tree's relay under `strace -c -f` (system calls per unit).
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { writeRelayTls } from "../test/support/identity.ts";
import { freePort } from "../test/support/loopback-mesh.ts";
import {
  bundleAgent,
  bundleWorker,
  cpuMs,
  FLOOR_BUNDLE,
  firstJsonLine,
  forkProxy,
  hop,
  IMAGE_ENV,
  load,
  peer,
  ROOT,
  redisBenchmark,
  runBench,
  runPeer,
  startHaproxy,
  startRedis,
  work,
} from "./support.ts";

const LOAD = process.env.LOAD ?? "redis";
const N = Number(process.env.N ?? 100_000);
const SECONDS = Number(process.env.CPS_SECONDS ?? 3);
const ROUNDS = Number(process.env.ROUNDS ?? 4);
/** Relay builds to run: a label, the tree it is built from, and whether the native splice is on. */
const relays: Array<[string, string, boolean]> = [
  ...(process.env.BASE_TREE ? [["base", process.env.BASE_TREE, true] as [string, string, boolean]] : []),
  ...(process.env.SPLICE_AB === "1" ? [["this, JavaScript", ROOT, false] as [string, string, boolean]] : []),
  ["this", ROOT, true],
];

/** The target every lane forwards to, and one measured run against a lane: units done and a line. */
interface Load {
  unit: string;
  target: () => Promise<number>;
  run: (port: number, seconds: number) => Promise<{ units: number; line: string }>;
}

const loads: Record<string, Load> = {
  redis: {
    unit: "request",
    target: async () => {
      const port = await freePort("127.0.0.1");
      await startRedis(port);
      return port;
    },
    run: async (port) => {
      const r = await redisBenchmark(port, N);
      return { units: 2 * N, line: `SET ${r.set.toFixed(0)} GET ${r.get.toFixed(0)}` };
    },
  },
  cps: {
    unit: "connection",
    target: async () => (await firstJsonLine(peer(["serve"]))).echo as number,
    run: async (port, seconds) => {
      const r = await runPeer(["cps", "127.0.0.1", String(port), String(seconds), "16"]);
      if ((r.failed as number) > 0) throw new Error(`${r.failed} connections failed`);
      const done = r.done as number;
      return { units: done, line: `${(done / (r.seconds as number)).toFixed(0)}/s` };
    },
  },
};

async function main(): Promise<void> {
  const measure = loads[LOAD];
  if (measure === undefined) throw new Error(`LOAD: '${LOAD}' is not one of ${Object.keys(loads)}`);
  const target = await measure.target();
  const hp = await freePort("127.0.0.1");
  const haproxy = await startHaproxy("h", [{ port: hp, to: target }]);
  bundleWorker();
  const pipeFwd = await forkProxy(FLOOR_BUNDLE, [String(target), "plain"]);
  const handlesFwd = await forkProxy(FLOOR_BUNDLE, [String(target), "handles"]);
  const lanes: Array<[string, number, number | undefined]> = [
    ["haproxy", hp, haproxy.pid],
    ["node pipe()", pipeFwd.port, pipeFwd.child.pid],
    ["node handles", handlesFwd.port, handlesFwd.child.pid],
  ];
  for (const [label, dir, splice] of relays) {
    const bundle = join(work, `worker-${dir === ROOT ? "this" : label}.mjs`);
    bundleAgent(join(dir, "test", "support", "relay-worker.ts"), bundle);
    const name = `relay-${label.replace(/\W+/g, "-")}`;
    const tls = writeRelayTls(join(work, "tls", name), "bench", name);
    const routes = [{ from: name, to: "target", hops: [hop("target", target)] }];
    const env = {
      ...IMAGE_ENV,
      HOPWAY_BENCH_LISTENERS: JSON.stringify(["target:0"]),
      HOPWAY_NATIVE_SPLICE: splice ? "1" : "0",
      // Each build with its own native code (beside the bundle is this tree's).
      ...(dir === ROOT ? {} : { HOPWAY_SPLICE_ADDON: join(dir, "k8s-agent/native/build/hopway-splice.node") }),
    };
    const w = await forkProxy(bundle, [name, tls, JSON.stringify(routes), "relay-a"], env, ["--expose-gc"]);
    lanes.push([`relay (${label})`, w.listeners[0] as number, w.child.pid]);
  }
  for (const [, port] of lanes) await measure.run(port, 1); // warm-up: JIT, connections
  const cpu = new Map<string, number[]>();
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? lanes : [...lanes].reverse();
    const line: string[] = [];
    for (const [label, port, pid] of order) {
      const c0 = cpuMs(pid);
      const r = await measure.run(port, SECONDS);
      const us = ((cpuMs(pid) - c0) * 1000) / r.units;
      cpu.set(label, [...(cpu.get(label) ?? []), us]);
      line.push(`${label} ${r.line} ${us.toFixed(1)} µs`);
    }
    console.log(`round ${round + 1}: ${line.join(" | ")}   load ${load()}`);
  }
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? 0;
  for (const [label] of lanes) {
    const all = cpu.get(label) ?? [];
    console.log(
      `${label}: median ${median(all).toFixed(1)} µs/${measure.unit} (${all.map((v) => v.toFixed(1)).join(", ")})`,
    );
  }
  const mine = cpu.get("relay (this)") ?? [];
  const pairs: Array<[string, string]> = [
    ["relay (base)", "this/base"],
    ["relay (this, JavaScript)", "native splice/JavaScript"],
  ];
  for (const [other, title] of pairs) {
    const theirs = cpu.get(other);
    if (theirs === undefined) continue;
    const byRound = mine.map((v, i) => v / (theirs[i] ?? v));
    console.log(
      `${title} by round: ${byRound.map((r) => r.toFixed(2)).join(" ")}, median ${median(byRound).toFixed(2)}`,
    );
  }
  if (process.env.STRACE === "1") {
    for (const [label, port, pid] of [lanes[0], lanes[lanes.length - 1]] as Array<[string, number, number]>) {
      const out = join(work, "strace.txt");
      const st = spawn("strace", ["-c", "-f", "-p", String(pid), "-o", out], { stdio: "ignore" });
      await new Promise((r) => setTimeout(r, 500));
      const r = await measure.run(port, SECONDS);
      st.kill("SIGINT");
      await once(st, "exit");
      console.log(`strace -c -f of ${label} over ${r.units} ${measure.unit}s:\n${readFileSync(out, "utf8")}`);
    }
  }
}

runBench("listener-ab", main);
