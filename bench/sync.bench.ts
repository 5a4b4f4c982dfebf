// What following the edge costs an agent, route-table mode against records mode:
//   1. bytes an agent downloads per change (one record changed) in a 10,000-record realm,
//      against the real local edge, with the agent's real EdgeClient in each mode
//      (plus the one-off initial load), raw and gzip-compressed;
//   2. agent CPU time to rebuild its table after one change at 10,000 and 50,000
//      records (records mode), next to what route-table mode spends parsing and
//      validating the downloaded table (the reference in the same run);
//   3. RSS of an agent process holding a 50,000-record realm plus its computed table,
//      in a fresh child process, against the same child holding only the table.
// BENCH_SYNC_RECORDS (default 10000) and BENCH_SYNC_BIG (default 50000) scale it down for a smoke run.
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { EdgeClient } from "../k8s-agent/src/edge/client.ts";
import { computeTable } from "../k8s-agent/src/edge/records-sync.ts";
import type { HopwayRecord } from "../src/core/schema.ts";
import { generateTopology } from "../src/core/testing/generate.ts";
import { RouteTableSchema } from "../src/core/wire.ts";

const HERE = dirname(fileURLToPath(import.meta.url));
const RECORDS = Number(process.env.BENCH_SYNC_RECORDS ?? 10_000);
const BIG = Number(process.env.BENCH_SYNC_BIG ?? 50_000);
const AGENTS = 1_000;
const MiB = 1024 * 1024;
const mib = (b: number) => `${(b / MiB).toFixed(2)} MiB`;
const kib = (b: number) => `${(b / 1024).toFixed(1)} KiB`;

type NodeRecord = Exclude<HopwayRecord, { type: "group" }>;
const relayOf = (records: HopwayRecord[]) =>
  (records.find((r) => r.type !== "group" && r.metadata?.kind === "relay") as NodeRecord).name;
const appsOf = (records: HopwayRecord[]) =>
  records.filter((r): r is NodeRecord => r.type !== "group" && r.metadata?.kind === "app");

/** A fetch that counts the body bytes the agent receives (raw, and what gzip would make of them). */
function countingFetch() {
  const counts = { raw: 0, gzip: 0, requests: 0 };
  const f: typeof fetch = async (input, init) => {
    const res = await fetch(input, init);
    const buf = new Uint8Array(await res.arrayBuffer());
    counts.requests++;
    counts.raw += buf.byteLength;
    if (buf.byteLength > 0) counts.gzip += gzipSync(buf).byteLength;
    return new Response(buf.byteLength > 0 ? buf : null, { status: res.status, headers: res.headers });
  };
  return { f, counts };
}

async function until(pred: () => boolean, ms: number, what: string): Promise<void> {
  const end = performance.now() + ms;
  while (!pred()) {
    if (performance.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function cpuMs<T>(fn: () => T): { ms: number; value: T } {
  const a = process.cpuUsage();
  const value = fn();
  const d = process.cpuUsage(a);
  return { ms: (d.user + d.system) / 1000, value };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

async function bytesPerChange(): Promise<void> {
  const records = generateTopology({ records: RECORDS, seed: 7 });
  const node = relayOf(records);
  // Imported here so the RSS child below does not load wrangler.
  const { createRealm, startLocalEdge } = await import("../test/support/local-edge.ts");
  const edge = await startLocalEdge();
  await createRealm(edge, "sync-bench");
  const agents: EdgeClient[] = [];
  try {
    const auth = { authorization: `Bearer ${edge.adminToken}`, "content-type": "application/json" };
    const base = `${edge.url}/v1/realms/sync-bench`;
    const imp = await fetch(`${base}/import`, { method: "POST", headers: auth, body: JSON.stringify(records) });
    if (!imp.ok) throw new Error(`import: ${imp.status} ${await imp.text()}`);
    const modes = ["route-table", "records"] as const;
    const counters = new Map<string, ReturnType<typeof countingFetch>>();
    for (const sync of modes) {
      const c = countingFetch();
      counters.set(sync, c);
      const agent = new EdgeClient({
        url: edge.url,
        realm: "sync-bench",
        token: edge.adminToken,
        node,
        records: [],
        leaseSeconds: 30,
        waitSeconds: 30,
        sync,
        onTable: () => {},
        fetch: c.f,
      });
      agents.push(agent);
      await agent.start();
    }
    await until(() => agents.every((a) => a.version !== undefined), 120_000, "initial tables");
    const initial = modes.map((m) => ({ ...(counters.get(m)?.counts ?? { raw: 0, gzip: 0, requests: 0 }) }));
    console.log(`sync bench: ${records.length} records, agent node ${node}, local edge ${edge.url}`);
    for (const [i, m] of modes.entries()) {
      console.log(`  initial load, ${m.padEnd(11)}: ${mib(initial[i]?.raw ?? 0)} (gzip ${mib(initial[i]?.gzip ?? 0)})`);
    }
    const rounds = 5;
    const apps = appsOf(records);
    let version = 0;
    for (let k = 0; k < rounds; k++) {
      const app = apps[k * 7] as NodeRecord;
      const res = await fetch(`${base}/nodes/${app.name}`, {
        method: "PUT",
        headers: auth,
        body: JSON.stringify({ ...app, host: { hostname: `moved-${k}` } }),
      });
      version = ((await res.json()) as { version: number }).version;
      await until(() => agents.every((a) => (a.version ?? 0) >= version), 30_000, `version ${version}`);
      await new Promise((r) => setTimeout(r, 50)); // let the next long-poll go out
    }
    const per = modes.map((m, i) => {
      const c = counters.get(m)?.counts ?? { raw: 0, gzip: 0 };
      return { raw: (c.raw - (initial[i]?.raw ?? 0)) / rounds, gzip: (c.gzip - (initial[i]?.gzip ?? 0)) / rounds };
    });
    const [rt, rec] = per as [{ raw: number; gzip: number }, { raw: number; gzip: number }];
    console.log(`per change (one record changed, mean of ${rounds}), per agent:`);
    console.log(
      `  route-table: ${mib(rt.raw)} (gzip ${kib(rt.gzip)}); ${AGENTS} agents: ${((rt.raw * AGENTS) / 1e9).toFixed(2)} GB`,
    );
    console.log(
      `  records    : ${kib(rec.raw)} (gzip ${kib(rec.gzip)}); ${AGENTS} agents: ${((rec.raw * AGENTS) / 1e6).toFixed(2)} MB`,
    );
    console.log(
      `  ratio route-table / records: ${(rt.raw / rec.raw).toFixed(0)}× raw, ${(rt.gzip / rec.gzip).toFixed(0)}× gzip`,
    );
  } finally {
    await Promise.allSettled(agents.map((a) => a.stop(false)));
    await edge.stop();
  }
}

function rebuildCpu(n: number): void {
  const records = generateTopology({ records: n, seed: 7 });
  const node = relayOf(records);
  const replica = new Map(records.map((r) => [r.name, r]));
  const apps = appsOf(records);
  computeTable(replica.values(), node, 0); // warm the JIT
  const rebuild: number[] = [];
  let table = computeTable(replica.values(), node, 0);
  for (let k = 0; k < 3; k++) {
    const app = apps[k * 11] as NodeRecord;
    replica.set(app.name, { ...app, host: { hostname: `moved-${k}` } });
    const r = cpuMs(() => computeTable(replica.values(), node, k + 1));
    rebuild.push(r.ms);
    table = r.value;
  }
  // Route-table mode's own per-change work on the agent: parse and validate the downloaded table.
  const text = JSON.stringify(table);
  const parse: number[] = [];
  for (let k = 0; k < 3; k++) parse.push(cpuMs(() => RouteTableSchema.parse(JSON.parse(text))).ms);
  // Records mode also rewrites its snapshot after a rebuild (coalesced): the serialisation runs on the event loop.
  const snap = cpuMs(() => JSON.stringify({ epoch: "0", version: 1, records: [...replica.values()] }));
  console.log(
    `  records snapshot at ${records.length} records: ${mib(snap.value.length)}, serialised in ${snap.ms.toFixed(0)} ms CPU`,
  );
  console.log(
    `rebuild after one change at ${records.length} records (records mode): median ${median(rebuild).toFixed(0)} ms CPU ` +
      `(runs ${rebuild.map((x) => x.toFixed(0)).join(", ")}); route-table mode parses+validates its ${mib(text.length)} table in ` +
      `${median(parse).toFixed(0)} ms: ratio ${(median(rebuild) / median(parse)).toFixed(1)}×`,
  );
}

/** What the agent keeps between changes in each mode (built in its own frame so no temporaries stay live). */
function load(n: number, what: "records" | "table"): unknown[] {
  const records = generateTopology({ records: n, seed: 7 });
  const node = relayOf(records);
  // As the agent holds it: records parsed from JSON (edge pages or the snapshot) in a Map, and the table.
  const replica = new Map<string, HopwayRecord>(
    (JSON.parse(JSON.stringify(records)) as HopwayRecord[]).map((r) => [r.name, r]),
  );
  const table = computeTable(replica.values(), node, 1);
  return what === "records" ? [replica, table] : [JSON.parse(JSON.stringify(table))];
}

let kept: unknown[] = [];

/** Child mode: hold a realm (or only its table) and print the RSS. */
function holdAndReport(n: number, what: "records" | "table"): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const before = process.memoryUsage();
  kept = load(n, what);
  gc?.();
  gc?.();
  const after = process.memoryUsage();
  console.log(
    JSON.stringify({ before: before.rss, rss: after.rss, heap: after.heapUsed - before.heapUsed, held: kept.length }),
  );
}

function rssOf(n: number, what: "records" | "table"): { before: number; rss: number; heap: number } {
  const r = spawnSync(
    process.execPath,
    ["--import", "tsx", "--expose-gc", join(HERE, "sync.bench.ts"), "--hold", String(n), what],
    { encoding: "utf8", timeout: 300_000 },
  );
  if (r.status !== 0) throw new Error(`rss child failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").at(-1) ?? "{}") as { before: number; rss: number; heap: number };
}

const argv = process.argv.slice(2);
if (argv[0] === "--hold") {
  holdAndReport(Number(argv[1]), argv[2] === "table" ? "table" : "records");
} else {
  await bytesPerChange();
  rebuildCpu(RECORDS);
  rebuildCpu(BIG);
  const withRecords = rssOf(BIG, "records");
  const tableOnly = rssOf(BIG, "table");
  console.log(
    `agent RSS at ${BIG} records: records mode (replica + table) ${mib(withRecords.rss)} (held heap ${mib(withRecords.heap)}), ` +
      `route-table mode (table only) ${mib(tableOnly.rss)} (held heap ${mib(tableOnly.heap)}); empty process ${mib(withRecords.before)}`,
  );
}
