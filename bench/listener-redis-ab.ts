// Relay CPU per redis request through a listener, for two builds of the relay side by side:
// `BASE_TREE` (another checkout, e.g. an export of an older commit with node_modules linked)
// and this tree, against HAProxy (TCP mode, 1 thread) and the bench's bare Node forwarder
// (test/support/bench-floor-relay.ts "plain": accept, connect, pipe). One redis-server; each lane
// runs `redis-benchmark -n N -c 20 -t set,get` in turn, ROUNDS rounds in alternating order, and
// the proxy's CPU time comes from /proc. Not a `*.bench.ts`: `npm run bench` does not run it.
//   BASE_TREE=/tmp/base ROUNDS=4 node --import tsx bench/listener-redis-ab.ts
// STRACE=1 adds one run of this tree's relay under `strace -c -f` (system calls per request).
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
  forkProxy,
  hop,
  IMAGE_ENV,
  load,
  ROOT,
  redisBenchmark,
  runBench,
  startHaproxy,
  startRedis,
  work,
} from "./support.ts";

const N = Number(process.env.N ?? 100_000);
const ROUNDS = Number(process.env.ROUNDS ?? 4);
const trees: Array<[string, string]> = [
  ...(process.env.BASE_TREE ? [["base", process.env.BASE_TREE] as [string, string]] : []),
  ["this", ROOT],
];

const redisBench = (port: number) => redisBenchmark(port, N);

async function main(): Promise<void> {
  const redisPort = await freePort("127.0.0.1");
  await startRedis(redisPort);
  const hr = await freePort("127.0.0.1");
  const hp = await startHaproxy("hr", [{ port: hr, to: redisPort }]);
  bundleWorker();
  const floor = await forkProxy(FLOOR_BUNDLE, [String(redisPort), "plain"]);
  const lanes: Array<[string, number, number | undefined]> = [
    ["haproxy", hr, hp.pid],
    ["node pipe()", floor.port, floor.child.pid],
  ];
  for (const [label, dir] of trees) {
    const bundle = join(work, `worker-${label}.mjs`);
    bundleAgent(join(dir, "test", "support", "relay-worker.ts"), bundle);
    const name = `relay-${label}`;
    const tls = writeRelayTls(join(work, "tls", name), "bench", name);
    const routes = [{ from: name, to: "redis", hops: [hop("redis", redisPort)] }];
    const env = { ...IMAGE_ENV, HOPWAY_BENCH_LISTENERS: JSON.stringify(["redis:0"]) };
    const w = await forkProxy(bundle, [name, tls, JSON.stringify(routes), "relay-a"], env, ["--expose-gc"]);
    lanes.push([`relay (${label})`, w.listeners[0] as number, w.child.pid]);
  }
  for (const [, port] of lanes) await redisBench(port); // warm-up: JIT, connections
  const cpu = new Map<string, number[]>();
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? lanes : [...lanes].reverse();
    const line: string[] = [];
    for (const [label, port, pid] of order) {
      const c0 = cpuMs(pid);
      const r = await redisBench(port);
      const us = ((cpuMs(pid) - c0) * 1000) / (2 * N);
      cpu.set(label, [...(cpu.get(label) ?? []), us]);
      line.push(`${label} SET ${r.set.toFixed(0)} GET ${r.get.toFixed(0)} ${us.toFixed(1)} µs`);
    }
    console.log(`round ${round + 1}: ${line.join(" | ")}   load ${load()}`);
  }
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? 0;
  for (const [label] of lanes) {
    const all = cpu.get(label) ?? [];
    console.log(`${label}: median ${median(all).toFixed(1)} µs/request (${all.map((v) => v.toFixed(1)).join(", ")})`);
  }
  if (process.env.STRACE === "1") {
    const [, port, pid] = lanes[lanes.length - 1] as [string, number, number | undefined];
    const out = join(work, "strace.txt");
    const st = spawn("strace", ["-c", "-f", "-p", String(pid), "-o", out], { stdio: "ignore" });
    await new Promise((r) => setTimeout(r, 500));
    await redisBench(port);
    st.kill("SIGINT");
    await once(st, "exit");
    console.log(`strace -c -f of relay (this) over ${2 * N} requests:\n${readFileSync(out, "utf8")}`);
  }
}

runBench("listener-redis-ab", main);
