// A/B of the native splice (docs/relay.md, "Native splice") on one build: two relay workers with
// a listener each, one with the splice and one without (HOPWAY_NATIVE_SPLICE=0), under the relay
// bench's connection load (connect, 16 bytes each way, close; 16 at a time), in interleaved rounds
// (order reversed every other round). Prints each round and the medians of the rate and of the
// relay's CPU per connection, which is the figure to read on a machine whose load moves single
// rounds. Everything on 127.0.0.1, ROUNDS × 2 runs of CPS_SECONDS.
//   node --import tsx bench/native-ab.ts        (ROUNDS=6, CPS_SECONDS=3)
import { bundleWorker, cpuMs, firstJsonLine, hop, IMAGE_ENV, peer, runPeer, startWorker } from "./support.ts";

const ROUNDS = Number(process.env.ROUNDS ?? 6);
const SECONDS = String(process.env.CPS_SECONDS ?? 3);

bundleWorker();
const targets = await firstJsonLine(peer(["serve"]), 10_000);
const echo = targets.echo as number;
const relay = (name: string, native: "1" | "0") =>
  startWorker(name, [{ from: name, to: "echo", hops: [hop("echo", echo)] }], {
    ...IMAGE_ENV,
    HOPWAY_NATIVE_SPLICE: native,
    HOPWAY_BENCH_LISTENERS: JSON.stringify(["echo:0"]),
  });
const lanes = [
  { label: "native splice", worker: await relay("relay-native", "1"), rates: [] as number[], us: [] as number[] },
  { label: "JavaScript", worker: await relay("relay-js", "0"), rates: [] as number[], us: [] as number[] },
];
// Warm-up (JIT, port reuse), not counted.
for (const l of lanes) await runPeer(["cps", "127.0.0.1", String(l.worker.listeners[0]), "1", "16"]);
for (let round = 0; round < ROUNDS; round++) {
  for (const l of round % 2 === 0 ? lanes : [...lanes].reverse()) {
    const pid = l.worker.child.pid;
    const cpu0 = cpuMs(pid);
    const r = await runPeer(["cps", "127.0.0.1", String(l.worker.listeners[0]), SECONDS, "16"]);
    const done = r.done as number;
    const us = ((cpuMs(pid) - cpu0) * 1000) / done;
    l.rates.push(done / (r.seconds as number));
    l.us.push(us);
    console.log(
      `round ${round + 1} ${l.label.padEnd(13)} ${Math.round(done / (r.seconds as number))}/s  ${us.toFixed(1)} µs/connection`,
    );
  }
}
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? 0;
for (const l of lanes) {
  console.log(
    `${l.label.padEnd(13)} median ${Math.round(median(l.rates))}/s, ${median(l.us).toFixed(1)} µs of relay CPU per connection`,
  );
}
console.log(
  `relay CPU per connection, native splice / JavaScript: ${(median(lanes[0]?.us ?? []) / median(lanes[1]?.us ?? [1])).toFixed(2)}`,
);
process.exit(0);
