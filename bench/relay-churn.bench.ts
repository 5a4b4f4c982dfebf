// A tenant's stream churn against a shared relay (docs/contract/relay-protocol.md §3.2, `namespace_rate`): one relay process
// (the bench's relay worker, with the image's node flags) whose route table names `t1` a tenant's
// relay and `r1` the operator's. In a process of its own, t1 opens streams on one hopway-mux/1 link
// to an echo server as fast as the relay answers them (BENCH_CHURN_INFLIGHT at a time) and resets
// each once answered: a tunnel costs the shared relay a route look-up, a dial and a close, and the
// tenant nothing it would not spend anyway. Meanwhile r1 carries tunnels to the same echo server,
// BENCH_CHURN_VICTIMS at a time, each a 16-byte round trip. Three phases on a fresh relay each:
// no churn, churn with the tenant's stream rate off, churn at the default rate. Printed: r1's
// tunnels/s and setup p50/p99, the streams t1 got answered, and the relay's CPU.
// Target: at the default rate, r1's tunnel rate under churn is at least 0.7 of its quiet rate (the
// relay's one thread then still spends most of its time on other namespaces' tunnels).
//   npm run bench relay-churn      (BENCH_CHURN_SECONDS, default 5; BENCH_CHURN_INFLIGHT, 990;
//                                   BENCH_CHURN_VICTIMS, 8)

import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { fileURLToPath } from "node:url";
import { ALPN_MUX } from "../k8s-agent/src/relay/links/mux/frame.ts";
import { MuxSession, type MuxStream } from "../k8s-agent/src/relay/links/mux/session.ts";
import type { Route } from "../src/core/schema.ts";
import { writeRelayTls } from "../test/support/identity.ts";
import {
  bundleWorker,
  cpuMs,
  firstJsonLine,
  hop,
  IMAGE_ENV,
  load,
  peer,
  runBench,
  startWorker,
  track,
  work,
} from "./support.ts";

const SECONDS = Number(process.env.BENCH_CHURN_SECONDS ?? 5);
/** Just under a link's default stream limit (1,000). */
const INFLIGHT = Number(process.env.BENCH_CHURN_INFLIGHT ?? 990);
const VICTIMS = Number(process.env.BENCH_CHURN_VICTIMS ?? 8);

/** A hopway-mux/1 link to the relay on `port` as the relay whose files are in `dir`. */
async function link(port: number, dir: string): Promise<MuxSession> {
  const raw = tlsConnect({
    host: "127.0.0.1",
    port,
    key: readFileSync(join(dir, "tls.key")),
    cert: readFileSync(join(dir, "tls.crt")),
    ca: readFileSync(join(dir, "ca.crt")),
    checkServerIdentity: () => undefined,
    ALPNProtocols: [ALPN_MUX],
    minVersion: "TLSv1.3",
  });
  raw.on("error", () => {});
  await once(raw, "secureConnect");
  const s = new MuxSession(raw, "client", { maxConcurrentStreams: 1_000, streamWindowBytes: 256 * 1024 });
  s.on("error", () => {});
  return s;
}

function open(s: MuxSession, from: string): MuxStream {
  const st = s.request({ ":method": "CONNECT", ":authority": "echo", "hopway-hops": from });
  st.on("error", () => {});
  return st;
}

interface Churned {
  opened: number;
  answered: number;
  refused: number;
  linkUp: boolean;
}

/** The tenant: churns streams for SECONDS, then prints {opened, answered, refused, linkUp}. */
async function churn(port: number, dir: string): Promise<void> {
  const s = await link(port, dir);
  const until = Date.now() + SECONDS * 1000;
  let opened = 0;
  let answered = 0;
  let refused = 0;
  let linkUp = true;
  s.once("close", () => {
    linkUp = false;
  });
  const one = (): void => {
    if (Date.now() >= until || !linkUp) return;
    opened++;
    const st = open(s, "t1");
    let answer = false;
    st.once("response", (h: Record<string, unknown>) => {
      answer = true;
      if (h[":status"] === 200) answered++;
      else refused++;
      st.destroy();
      setImmediate(one);
    });
    st.once("close", () => {
      if (!answer) setImmediate(one);
    });
  };
  for (let i = 0; i < INFLIGHT; i++) one();
  await new Promise((r) => setTimeout(r, SECONDS * 1000 + 200));
  process.stdout.write(`${JSON.stringify({ opened, answered, refused, linkUp })}\n`);
  s.destroy();
  process.exit(0);
}

/** The operator's relay: VICTIMS loops of one tunnel at a time, each a 16-byte round trip. */
async function victim(port: number, dir: string) {
  const s = await link(port, dir);
  const until = Date.now() + SECONDS * 1000;
  const setups: number[] = [];
  let failed = 0;
  const loop = async () => {
    while (Date.now() < until) {
      const t0 = performance.now();
      const st = open(s, "r1");
      const [h] = (await once(st, "response")) as [Record<string, unknown>];
      if (h[":status"] !== 200) {
        failed++;
        st.destroy();
        continue;
      }
      setups.push(performance.now() - t0);
      const echoed = once(st, "data");
      st.resume();
      st.write("0123456789abcdef");
      await echoed;
      st.end();
    }
  };
  await Promise.all(Array.from({ length: VICTIMS }, loop));
  s.destroy();
  setups.sort((a, b) => a - b);
  const q = (p: number) => setups[Math.min(setups.length - 1, Math.floor(p * setups.length))] ?? Number.NaN;
  return { rate: setups.length / SECONDS, p50: q(0.5), p99: q(0.99), failed };
}

async function phase(label: string, echoPort: number, tenantRate: string | undefined, churning: boolean) {
  const routes: Route[] = [{ from: "shared", to: "echo", hops: [hop("echo", echoPort)] }];
  const env: NodeJS.ProcessEnv = {
    ...IMAGE_ENV,
    HOPWAY_BENCH_TENANTS: JSON.stringify([{ namespace: "tenant-a", nodes: ["t1"] }]),
  };
  if (tenantRate !== undefined) env.HOPWAY_NAMESPACE_STREAMS_PER_SECOND = tenantRate;
  const relay = await startWorker("shared", routes, env, ["t1", "r1"]);
  const t1 = writeRelayTls(join(work, "tls", "t1"), "bench", "t1");
  const r1 = writeRelayTls(join(work, "tls", "r1"), "bench", "r1");
  const cpu0 = cpuMs(relay.child.pid);
  const attacker = churning
    ? track(
        spawn(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), "churn", String(relay.port), t1], {
          stdio: ["ignore", "pipe", "inherit"],
        }),
      )
    : undefined;
  const tenant = attacker === undefined ? undefined : firstJsonLine(attacker, (SECONDS + 30) * 1000);
  // The tenant's process needs a moment to load and dial.
  if (attacker !== undefined) await new Promise((r) => setTimeout(r, 1_000));
  const v = await victim(relay.port, r1);
  const t = tenant === undefined ? undefined : ((await tenant) as unknown as Churned);
  const cpu = cpuMs(relay.child.pid) - cpu0;
  relay.child.kill();
  console.log(
    `  ${label.padEnd(30)} operator tunnels/s ${v.rate.toFixed(0).padStart(6)}  setup p50 ${v.p50.toFixed(2)} ms, p99 ${v.p99.toFixed(2)} ms` +
      (t === undefined
        ? ""
        : `; tenant answered 200 ${(t.answered / SECONDS).toFixed(0)}/s, refused ${(t.refused / SECONDS).toFixed(0)}/s${t.linkUp ? "" : ", its link closed"}`) +
      `; relay CPU ${(cpu / 1000).toFixed(1)} s`,
  );
  if (v.failed > 0) throw new Error(`${label}: ${v.failed} of the operator's tunnels were refused`);
  return v;
}

if (process.argv[2] === "churn") {
  churn(Number(process.argv[3]), process.argv[4] ?? "").catch((e) => {
    console.error(e);
    process.exit(1);
  });
} else {
  runBench("relay-churn", async () => {
    bundleWorker();
    const serve = peer(["serve"]);
    const echo = Number((await firstJsonLine(serve)).echo);
    console.log(
      `relay-churn bench: ${VICTIMS} operator tunnel loops against a tenant's ${INFLIGHT} churning streams, ${SECONDS} s per phase; load average ${load()}`,
    );
    const quiet = await phase("no churn", echo, undefined, false);
    const off = await phase("churn, tenant rate off", echo, "0", true);
    const on = await phase("churn, default tenant rate", echo, undefined, true);
    const ratio = on.rate / quiet.rate;
    console.log(
      `  operator tunnels/s under churn / quiet: rate off ${(off.rate / quiet.rate).toFixed(2)}, default rate ${ratio.toFixed(2)}`,
    );
    console.log(`  target ≥ 0.7 at the default rate: ${ratio >= 0.7 ? "MET" : "MISSED"} (load average ${load()})`);
  });
}
