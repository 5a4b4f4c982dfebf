// Edge benchmark, through wrangler dev (workerd, real Durable Objects) via startLocalEdge:
//  1. time to import a realistic 10,000-record realm (one atomic import);
//  2. route lookups per second (/routes and /route-tables, served from the isolate's cache)
//     against GET /healthz of the same Worker in the same run (same router and middleware, no
//     storage, no auth): the ratio is the figure, since the absolute numbers mostly measure this
//     machine and wrangler's proxy;
//  3. how fast waiting agents learn of a change (long-poll wake-up after a PUT), on a
//     1,000-record realm so the figure is the notification path, not table size.
// Every loop is bounded by count and by time.
import { generateTopology } from "../src/core/testing/generate.ts";
import { createRealm, startLocalEdge } from "../test/support/local-edge.ts";

const RECORDS = Number(process.env.EDGE_BENCH_RECORDS ?? 10_000);
const PHASE_MS = Number(process.env.EDGE_BENCH_PHASE_MS ?? 4_000);
const PHASE_MAX = 40_000;
/** A 10,000-record route table is ~5 MB of JSON: bound that phase by count as well. */
const TABLE_MAX = 64;
const CONCURRENCY = 16;

const edge = await startLocalEdge();
for (const realm of ["bench-0", "bench-1", "bench-2", "bench-small"]) await createRealm(edge, realm);
const auth = { authorization: `Bearer ${edge.adminToken}` };

async function must(res: Response, what: string): Promise<unknown> {
  const text = await res.text();
  if (!res.ok && res.status !== 304) throw new Error(`${what}: HTTP ${res.status} ${text.slice(0, 300)}`);
  return text === "" ? null : JSON.parse(text);
}

/** Runs `one` from CONCURRENCY workers until PHASE_MS or `max` requests; returns requests/second. */
async function rate(label: string, one: (i: number) => Promise<void>, max = PHASE_MAX): Promise<number> {
  let n = 0;
  const started = performance.now();
  const deadline = started + PHASE_MS;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < deadline && n < max) await one(n++);
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const perSecond = n / seconds;
  console.log(
    `  ${label.padEnd(36)} ${String(n).padStart(6)} requests in ${seconds.toFixed(2)} s = ${perSecond.toFixed(0)}/s`,
  );
  return perSecond;
}

try {
  const records = generateTopology({ records: RECORDS, seed: 7 });
  const body = JSON.stringify(records);
  console.log(
    `edge bench: ${records.length} generated records (${(body.length / 1024 / 1024).toFixed(1)} MiB JSON), ${edge.url}`,
  );

  // 1. Import.
  const importMs: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    const r = (await must(
      await fetch(`${edge.url}/v1/realms/bench-${i}/import`, {
        method: "POST",
        headers: { ...auth, "content-type": "application/json" },
        body,
      }),
      "import",
    )) as { version: number; records: number };
    importMs.push(performance.now() - t);
    if (r.records !== records.length) throw new Error(`import stored ${r.records} of ${records.length}`);
  }
  importMs.sort((a, b) => a - b);
  console.log(
    `import of ${records.length} records: median ${importMs[1]!.toFixed(0)} ms (runs: ${importMs.map((m) => m.toFixed(0)).join(", ")} ms)`,
  );

  const realm = `${edge.url}/v1/realms/bench-0`;
  const nodes = records.filter((r) => r.type === "node").map((r) => r.name);
  const pick = (i: number, salt: number) => nodes[(i * 7919 + salt * 104_729) % nodes.length]!;

  // First lookup after the import builds the realm in the isolate; the first table is computed cold.
  let t = performance.now();
  await must(await fetch(`${realm}/routes?from=${pick(1, 1)}&to=${pick(2, 2)}`, { headers: auth }), "first route");
  console.log(
    `first lookup after import (isolate loads and builds the realm): ${(performance.now() - t).toFixed(0)} ms`,
  );
  t = performance.now();
  const cold = await fetch(`${realm}/route-tables/${pick(3, 3)}`, { headers: auth });
  const coldText = await cold.text();
  if (!cold.ok) throw new Error(`cold table: HTTP ${cold.status}`);
  const coldRoutes = (JSON.parse(coldText) as { routes: unknown[] }).routes.length;
  console.log(
    `one route table computed cold: ${(performance.now() - t).toFixed(0)} ms (${coldRoutes} routes, ${(coldText.length / 1024).toFixed(0)} KiB)`,
  );

  // 2. Throughput against the /healthz reference, same Worker, same path through wrangler dev.
  const PAIRS = 256;
  const TABLES = 16;
  for (let i = 0; i < TABLES; i++)
    await must(await fetch(`${realm}/route-tables/${pick(i, 5)}`, { headers: auth }), "warm");
  // Warm the pairs: the phase below measures lookups at an unchanged version (served from the cache).
  t = performance.now();
  for (let k = 0; k < PAIRS; k++) {
    await must(await fetch(`${realm}/routes?from=${pick(k, 11)}&to=${pick(k, 13)}`, { headers: auth }), "warm route");
  }
  console.log(
    `${PAIRS} distinct routes resolved cold, one at a time: ${((performance.now() - t) / PAIRS).toFixed(1)} ms each`,
  );
  console.log(`throughput (${CONCURRENCY} concurrent clients, ${PHASE_MS} ms per phase):`);
  const reference = await rate("GET /healthz (reference)", async () => {
    await must(await fetch(`${edge.url}/healthz`), "healthz");
  });
  const routes = await rate(`GET /routes (${PAIRS} pairs)`, async (i) => {
    const k = i % PAIRS;
    await must(await fetch(`${realm}/routes?from=${pick(k, 11)}&to=${pick(k, 13)}`, { headers: auth }), "route");
  });
  const tables = await rate(
    `GET /route-tables (${TABLES} nodes)`,
    async (i) => {
      await must(await fetch(`${realm}/route-tables/${pick(i % TABLES, 5)}`, { headers: auth }), "table");
    },
    TABLE_MAX,
  );
  // The ETag names the realm version, so one value is current for every node's table.
  const probe = await fetch(`${realm}/route-tables/${pick(0, 5)}`, { headers: auth });
  const etag = probe.headers.get("etag") ?? "";
  await probe.text();
  const conditional = await rate("GET /route-tables, If-None-Match (304)", async (i) => {
    await must(
      await fetch(`${realm}/route-tables/${pick(i % TABLES, 5)}`, { headers: { ...auth, "if-none-match": etag } }),
      "304",
    );
  });
  console.log(`RATIO /routes vs /healthz:           ${(routes / reference).toFixed(2)}`);
  console.log(`RATIO /route-tables vs /healthz:     ${(tables / reference).toFixed(2)}`);
  console.log(`RATIO conditional (304) vs /healthz: ${(conditional / reference).toFixed(2)}`);

  // 3. Long-poll wake-up on a realm of 1,000 records: how soon waiting agents learn of a change
  //    (route tables recomputed for the new version), and how soon /changes followers do.
  const small = `${edge.url}/v1/realms/bench-small`;
  const smallRecords = generateTopology({ records: 1_000, seed: 9 });
  await must(
    await fetch(`${small}/import`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: JSON.stringify(smallRecords),
    }),
    "small import",
  );
  const smallNodes = smallRecords.filter((r) => r.type === "node").map((r) => r.name);
  const WAITERS = 50;
  let serial = 0;
  async function wakeUp(label: string, url: (i: number, etag: string, version: number) => string): Promise<void> {
    const head = await fetch(`${small}/route-tables/${smallNodes[0]}`, { headers: auth });
    const etag = head.headers.get("etag") ?? "";
    const version = ((await head.json()) as { version: number }).version;
    const woke: number[] = [];
    const waiting = Array.from({ length: WAITERS }, async (_, i) => {
      const res = await fetch(url(i, etag, version), { headers: { ...auth, "if-none-match": etag } });
      await res.text();
      woke.push(performance.now());
      return res.status;
    });
    await new Promise((r) => setTimeout(r, 500));
    const changedAt = performance.now();
    await must(
      await fetch(`${small}/nodes/bench-new-${serial++}`, {
        method: "PUT",
        headers: { ...auth, "content-type": "application/json" },
        body: JSON.stringify({
          metadata: { namespace_name: "bench" },
          gateway: [{ priority: 1, address: "ipv4://10.200.0.1:1" }],
        }),
      }),
      "put",
    );
    const statuses = await Promise.all(waiting);
    const lag = woke.map((w) => w - changedAt).sort((a, b) => a - b);
    console.log(
      `  ${label.padEnd(44)} ${statuses.filter((st) => st === 200).length}/${WAITERS} woke; after the PUT was sent: median ${lag[Math.floor(lag.length / 2)]!.toFixed(0)} ms, max ${lag[lag.length - 1]!.toFixed(0)} ms`,
    );
  }
  console.log(`long-poll wake-up, ${WAITERS} waiters, realm of ${smallRecords.length} records:`);
  await wakeUp(
    "route-tables?wait (50 distinct nodes)",
    (i) => `${small}/route-tables/${smallNodes[i % smallNodes.length]}?wait=30`,
  );
  const epoch = ((await (await fetch(`${small}/changes`, { headers: auth })).json()) as { epoch: string }).epoch;
  await wakeUp("changes?wait (record delta)", (_i, _e, v) => `${small}/changes?since=${v}&epoch=${epoch}&wait=30`);
} finally {
  await edge.stop();
}
