// A tenant churning its own records, against another tenant of the same realm, through wrangler
// dev (workerd, real Durable Objects) via startLocalEdge (docs/contract/edge-api.md §14.1):
//   - the tenant's token rewrites one of its records (custom_data, in no route) from
//     CHURN_WORKERS concurrent loops, as fast as the edge answers;
//   - the victim's WAITERS agents each hold a route-table long-poll for their node and poll again
//     at each answer, as agents do, and one victim loop renews a lease (heartbeat) after another.
// Three phases of PHASE_MS: no churn; churn with the tenant's budgets off (`tokens: {ID:
// {writes_per_second: 0, changes_per_second: 0}}`); churn under a change budget of CHANGES_PER_S
// (burst CHANGE_BURST). (The default change budget, 10/s with a burst of 500, is above what this
// machine's wrangler dev takes, so the last phase sets a smaller one to show what the bound does.)
// Figures: the tenant's changes accepted per second; the victim's route-table long-polls answered
// before their wait ended (each is a table the victim downloads again: its table never changes
// here, so every one is woken by the tenant); and the victim's heartbeat latency, as a ratio
// against the phase without churn. Targets: no early answer at all; the tenant's accepted changes
// within the budget.
// Every loop is bounded by count and by time; everything is on 127.0.0.1.
import { loadavg } from "node:os";
import { adminApi, createRealm, startLocalEdge } from "../test/support/local-edge.ts";

const PHASE_MS = Number(process.env.EDGE_TENANT_PHASE_MS ?? 10_000);
const WAITERS = 50;
const CHURN_WORKERS = 8;
const CHANGES_PER_S = 2;
const CHANGE_BURST = 10;
const CHURN_AFTER_MS = 1_000;
/** Per loop and phase: bounds every loop in count as well as time. */
const MAX_PER_LOOP = 100_000;
const REALM = "tenant-bench";

const edge = await startLocalEdge();
await createRealm(edge, REALM);
const base = `${edge.url}/v1/realms/${REALM}`;

const mint = async (namespace: string) => {
  const t = await adminApi(edge, REALM, "POST", "/tokens", { role: "agent", namespaces: [namespace] });
  return { token: String(t.token), id: String(t.id) };
};
const tenant = await mint("tenant");
const victim = await mint("victim");
const as = (token: string, extra: Record<string, string> = {}) => ({
  authorization: `Bearer ${token}`,
  "content-type": "application/json",
  ...extra,
});
const record = (name: string, namespace: string, extra: Record<string, unknown> = {}) => ({
  name,
  metadata: { namespace_name: namespace, kind: "relay", labels: { app: name } },
  gateway: [{ priority: 1, address: "ipv4://127.0.0.1:1234" }],
  ...extra,
});

async function put(token: string, name: string, body: unknown): Promise<number> {
  const res = await fetch(`${base}/nodes/${name}`, { method: "PUT", headers: as(token), body: JSON.stringify(body) });
  await res.body?.cancel();
  return res.status;
}

for (let i = 0; i < WAITERS; i++) {
  const s = await put(victim.token, `v-${i}`, { ...record(`v-${i}`, "victim"), ttl_seconds: 300 });
  if (s !== 201 && s !== 200) throw new Error(`victim record v-${i}: ${s}`);
}
if ((await put(tenant.token, "t-0", record("t-0", "tenant"))) >= 300) throw new Error("tenant record");

function quantile(sorted: number[], q: number): number {
  return sorted.length === 0 ? Number.NaN : (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0);
}

interface Phase {
  label: string;
  accepted: number;
  refused: number;
  early: number;
  heartbeats: number[];
  seconds: number;
}

async function phase(label: string, churn: boolean): Promise<Phase> {
  const ac = new AbortController();
  const started = performance.now();
  const deadline = started + PHASE_MS;
  let accepted = 0;
  let refused = 0;
  let early = 0;
  const heartbeats: number[] = [];
  const etags: string[] = [];
  for (let i = 0; i < WAITERS; i++) {
    const res = await fetch(`${base}/route-tables/v-${i}`, { headers: as(victim.token) });
    etags.push(res.headers.get("etag") ?? "");
    await res.body?.cancel();
  }
  const waiter = async (i: number) => {
    for (let n = 0; n < MAX_PER_LOOP && performance.now() < deadline; n++) {
      const left = Math.ceil((deadline - performance.now()) / 1000);
      if (left <= 0) break;
      try {
        const wait = Math.min(30, left);
        const asked = performance.now();
        const res = await fetch(`${base}/route-tables/v-${i}?wait=${wait}`, {
          headers: as(victim.token, { "if-none-match": etags[i] ?? "" }),
          signal: ac.signal,
        });
        if (res.status === 200) {
          if (performance.now() - asked < wait * 1000 - 500) early++;
          etags[i] = res.headers.get("etag") ?? "";
        }
        await res.body?.cancel();
      } catch {
        return;
      }
    }
  };
  const churner = async (w: number) => {
    // After the victim's polls are waiting: a poll that arrives after a change holds an older
    // version than the realm, and is answered at once (its agent was behind), which is not a wake.
    await new Promise((r) => setTimeout(r, CHURN_AFTER_MS));
    for (let n = 0; churn && n < MAX_PER_LOOP && performance.now() < deadline; n++) {
      const s = await put(tenant.token, "t-0", record("t-0", "tenant", { custom_data: `${w}.${n}` }));
      if (s === 429) refused++;
      else if (s < 300) accepted++;
      else throw new Error(`churn write: ${s}`);
    }
  };
  const renewer = async () => {
    for (let n = 0; n < MAX_PER_LOOP && performance.now() < deadline; n++) {
      const t = performance.now();
      const res = await fetch(`${base}/nodes/v-0/heartbeat`, {
        method: "POST",
        headers: as(victim.token),
        body: JSON.stringify({ ttl_seconds: 300 }),
      });
      await res.body?.cancel();
      if (res.status !== 200) throw new Error(`victim heartbeat: ${res.status}`);
      heartbeats.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const timer = setTimeout(() => ac.abort(), PHASE_MS + 2_000);
  await Promise.all([
    ...Array.from({ length: WAITERS }, (_, i) => waiter(i)),
    ...Array.from({ length: CHURN_WORKERS }, (_, w) => churner(w)),
    renewer(),
  ]);
  clearTimeout(timer);
  ac.abort();
  const seconds = (performance.now() - started) / 1000;
  heartbeats.sort((a, b) => a - b);
  return { label, accepted, refused, early, heartbeats, seconds };
}

try {
  console.log(
    `edge tenant bench: ${WAITERS} victim route-table long-polls, ${CHURN_WORKERS} tenant write loops, ${PHASE_MS / 1000} s per phase, ${edge.url}`,
  );
  const quiet = await phase("no churn", false);
  const off = { writes_per_second: 0, changes_per_second: 0 };
  await adminApi(edge, REALM, "PUT", "/limits", { tokens: { [tenant.id]: off } });
  const open = await phase("churn, budgets off", true);
  const bound = { changes_per_second: CHANGES_PER_S, change_burst: CHANGE_BURST };
  await adminApi(edge, REALM, "PUT", "/limits", { tokens: { [tenant.id]: bound } });
  const bounded = await phase(`churn, ${CHANGES_PER_S} changes/s`, true);
  const per = (n: number, p: Phase) => n / p.seconds;
  for (const p of [quiet, open, bounded]) {
    console.log(
      `  ${p.label.padEnd(20)} tenant changes ${per(p.accepted, p).toFixed(1).padStart(5)}/s accepted, ${per(p.refused, p).toFixed(0).padStart(4)}/s refused; ` +
        `victim polls woken early ${p.early}; victim heartbeat p50 ${quantile(p.heartbeats, 0.5).toFixed(1)} ms, p99 ${quantile(p.heartbeats, 0.99).toFixed(1)} ms (${p.heartbeats.length})`,
    );
  }
  const ratio = (a: number, b: number) => a / b;
  const p99 = (p: Phase) => quantile(p.heartbeats, 0.99);
  console.log(
    `  victim heartbeat p99 under churn / without: budgets off ${ratio(p99(open), p99(quiet)).toFixed(2)}, ${CHANGES_PER_S} changes/s ${ratio(p99(bounded), p99(quiet)).toFixed(2)} (load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")})`,
  );
  const allowed = CHANGES_PER_S + CHANGE_BURST / bounded.seconds;
  const changesOk = per(bounded.accepted, bounded) <= allowed * 1.05;
  console.log(
    `  tenant changes accepted under the budget: ${per(bounded.accepted, bounded).toFixed(1)}/s (target ≤ ${allowed.toFixed(1)}/s: the rate + the burst over the phase) ${changesOk ? "MET" : "MISSED"}`,
  );
  const earlyOk = open.early === 0 && bounded.early === 0;
  console.log(
    `  victim route-table polls answered before their wait ended, with churn: ${open.early} (budgets off), ${bounded.early} (budget) (target 0: the tenant's writes leave the victim's tables alone) ${earlyOk ? "MET" : "MISSED"}`,
  );
} finally {
  await edge.stop();
}
