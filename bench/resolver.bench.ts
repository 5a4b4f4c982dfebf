// Resolver benchmark: the indexed realm against the plain reference resolver,
// on generated realms of 1,000 / 10,000 / 50,000 records (about 5% relays,
// several regions, relay services of 3 pods; see src/core/testing/generate.ts).
// Prints absolute figures, the targets it was built to meet, and ratios
// measured in this same run. Timings on a shared 2-core machine are noisy: medians of repeats.
import { loadavg } from "node:os";
import {
  buildRealm,
  type HopwayRecord,
  type Realm,
  type RouteResolver,
  referenceResolver,
  resolveRoute,
  routeTable,
} from "../src/core/index.ts";
import { generateTopology, prng } from "../src/core/testing/generate.ts";

const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
const now = () => performance.now();
const fmt = (ms: number) => (ms < 1 ? `${(ms * 1000).toFixed(1)} µs` : `${ms.toFixed(ms < 10 ? 2 : 1)} ms`);
const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
const median = (xs: number[]) =>
  quantile(
    [...xs].sort((a, b) => a - b),
    0.5,
  );

function pairs(names: string[], count: number, seed: number): Array<[string, string]> {
  const rnd = prng(seed);
  const out: Array<[string, string]> = [];
  while (out.length < count) {
    const a = names[Math.floor(rnd() * names.length)]!;
    const b = names[Math.floor(rnd() * names.length)]!;
    if (a !== b) out.push([a, b]);
  }
  return out;
}

function lookups(resolve: (a: string, b: string) => unknown, list: Array<[string, string]>, budgetMs: number) {
  const times: number[] = [];
  const stop = now() + budgetMs;
  for (const [a, b] of list) {
    const t = now();
    resolve(a, b);
    times.push(now() - t);
    if (now() > stop) break;
  }
  times.sort((x, y) => x - y);
  return { p50: quantile(times, 0.5), p99: quantile(times, 0.99), n: times.length };
}

/** Median wall time and median CPU time (user+system) of one table: CPU time is less skewed by other load. */
function tables(table: (s: string) => unknown[], sources: string[]): { wall: number; cpu: number } {
  const wall: number[] = [];
  const cpu: number[] = [];
  for (const s of sources) {
    gc();
    const c0 = process.cpuUsage();
    const t = now();
    table(s);
    wall.push(now() - t);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
  }
  return { wall: median(wall), cpu: median(cpu) };
}

interface Row {
  size: number;
  relays: number;
  build: number;
  p50: number;
  p99: number;
  table: number;
  tableCpu: number;
}
const rows: Row[] = [];
const lines: string[] = [];
const say = (s: string) => {
  console.log(s);
  lines.push(s);
};

say(
  `load average at start: ${loadavg()
    .map((x) => x.toFixed(1))
    .join(" ")} (2 cores: above 2, every figure is inflated)`,
);
for (const size of [1_000, 10_000, 50_000]) {
  const records: HopwayRecord[] = generateTopology({ records: size, seed: 42 });
  const names = records.filter((r) => r.type !== "group").map((r) => r.name);
  const relays = records.filter((r) => r.type === "node" && r.metadata?.kind === "relay").length;
  gc();
  const builds: number[] = [];
  let realm: Realm | undefined;
  for (let i = 0; i < 3; i++) {
    const t = now();
    realm = buildRealm(records);
    builds.push(now() - t);
  }
  const r = realm!;
  const build = median(builds);
  // Warm the lazily filled dial-class memo the way a serving edge would be warm.
  routeTable(r, names[0]!);
  const look = lookups((a, b) => resolveRoute(r, a, b), pairs(names, 20_000, size), 3_000);
  const sources = pairs(names, 7, size + 1).map(([a]) => a);
  const { wall: table, cpu: tableCpu } = tables((s) => routeTable(r, s), sources);
  rows.push({ size, relays, build, p50: look.p50, p99: look.p99, table, tableCpu });
  say(
    `${String(size).padStart(6)} records (${relays} relays): build ${fmt(build)} | one lookup p50 ${fmt(look.p50)} p99 ${fmt(look.p99)} (${look.n} lookups) | one node's table ${fmt(table)} wall, ${fmt(tableCpu)} CPU (${names.length - 1} routes)`,
  );

  if (size === 1_000) {
    const ref: RouteResolver = referenceResolver(records);
    const refLook = lookups((a, b) => ref.resolveRoute(a, b), pairs(names, 2_000, 7), 3_000);
    const refTable = tables((s) => ref.routeTable(s), sources.slice(0, 3)).wall;
    gc();
    const t = now();
    let count = 0;
    for (const s of names) count += routeTable(r, s).length;
    const all = now() - t;
    say(
      `        all ${count} routes of the 1,000 realm: ${fmt(all)} (indexed); reference: one lookup p50 ${fmt(refLook.p50)} p99 ${fmt(refLook.p99)}, one table ${fmt(refTable)}`,
    );
    say(
      `        speed-up over the reference: lookup p50 ×${(refLook.p50 / look.p50).toFixed(0)}, table ×${(refTable / table).toFixed(0)}, all routes ≈ ×${((refTable * names.length) / all).toFixed(0)} (reference all-routes extrapolated from its table time)`,
    );
  }
  if (size === 10_000) {
    const ref = referenceResolver(records);
    const refLook = lookups((a, b) => ref.resolveRoute(a, b), pairs(names, 200, 9), 4_000);
    say(
      `        reference at 10,000: one lookup p50 ${fmt(refLook.p50)} p99 ${fmt(refLook.p99)} (${refLook.n} lookups); one table ≈ ${fmt(refLook.p50 * (names.length - 1))} (extrapolated: a search per destination)`,
    );
  }
}

const by = (n: number) => rows.find((r) => r.size === n)!;
const r10 = by(10_000);
const r50 = by(50_000);
const r1 = by(1_000);
say("");
say("targets (2-core machine):");
say(`  one lookup in a 10k realm, p99 < 1 ms:      ${fmt(r10.p99)}  ${r10.p99 < 1 ? "OK" : "MISSED"}`);
say(
  `  one node's full table in a 10k realm < 50 ms: ${fmt(r10.table)} wall ${r10.table < 50 ? "OK" : "MISSED"}, ${fmt(r10.tableCpu)} CPU ${r10.tableCpu < 50 ? "OK" : "MISSED"}`,
);
const growth = r50.tableCpu / r10.tableCpu;
say(
  `  table CPU time 50k / 10k = ${growth.toFixed(2)} for a record ratio of ${(50_000 / 10_000).toFixed(1)}  ${growth <= 5 * 1.25 ? "OK (no worse than linear, 25% noise allowance)" : "MISSED (superlinear)"}`,
);
say(`  table CPU time 10k / 1k = ${(r10.tableCpu / r1.tableCpu).toFixed(2)} for a record ratio of 10.0`);
say(`  build time 50k / 10k = ${(r50.build / r10.build).toFixed(2)}`);
