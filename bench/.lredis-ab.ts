// Scratch A/B harness (not committed): relay CPU per redis request, base tree vs this tree, interleaved.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { bundleAgent, cpuMs, forkProxy, hop, IMAGE_ENV, load, startHaproxy, track, work } from "./support.ts";
import { freePort } from "../test/support/loopback-mesh.ts";
import { writeRelayTls } from "../test/support/identity.ts";

const trees = { base: "/tmp/lredis-base", new: "/work/wt/lredis" };
const N = Number(process.env.N ?? 100000);
const ROUNDS = Number(process.env.ROUNDS ?? 4);
async function main() {
  const redisPort = await freePort("127.0.0.1");
  track(spawn("redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" }));
  await new Promise((r) => setTimeout(r, 300));
  const hr = await freePort("127.0.0.1");
  const hp = await startHaproxy("hr", [{ port: hr, to: redisPort }]);
  const lanes: Array<[string, number, number | undefined]> = [["haproxy", hr, hp.pid]];
  for (const [k, dir] of Object.entries(trees)) {
    const bundle = join(work, `worker-${k}.mjs`);
    bundleAgent(join(dir, "test/support/relay-worker.ts"), bundle);
    const name = `relay-${k}`;
    const tls = writeRelayTls(join(work, "tls", name), "bench", name);
    const routes = [{ from: name, to: "redis", hops: [hop("redis", redisPort)] }];
    const w = await forkProxy(bundle, [name, tls, JSON.stringify(routes), "relay-a"], { ...IMAGE_ENV, HOPWAY_BENCH_LISTENERS: JSON.stringify(["redis:0"]) }, ["--expose-gc"]);
    lanes.push([k, w.listeners[0] as number, w.child.pid]);
  }
  const bench = async (port: number) => {
    const child = spawn("redis-benchmark", ["-h", "127.0.0.1", "-p", String(port), "-n", String(N), "-c", "20", "-t", "set,get", "-q"]);
    let text = "";
    child.stdout.on("data", (d: Buffer) => { text += d.toString(); });
    await once(child, "exit");
    const get = (op: string) => Number(new RegExp(`${op}: ([\\d.]+) requests per second`).exec(text.replace(/\r/g, "\n"))?.[1] ?? 0);
    return { set: get("SET"), get: get("GET") };
  };
  for (const [, port] of lanes) await bench(port); // warm-up
  const cpu: Record<string, number[]> = {};
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? lanes : [...lanes].reverse();
    const line: string[] = [];
    for (const [k, port, pid] of order) {
      const c0 = cpuMs(pid);
      const x = await bench(port);
      const us = ((cpuMs(pid) - c0) * 1000) / (2 * N);
      (cpu[k] ??= []).push(us);
      line.push(`${k} SET ${x.set.toFixed(0)} GET ${x.get.toFixed(0)} ${us.toFixed(1)}µs`);
    }
    console.log(`round ${r}: ${line.join(" | ")}  load ${load()}`);
  }
  const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? 0;
  for (const k of Object.keys(cpu)) console.log(`${k}: median ${med(cpu[k] ?? []).toFixed(2)} µs/request, all ${(cpu[k] ?? []).map((v) => v.toFixed(1)).join(" ")}`);
  process.exit(0);
}
void main();
