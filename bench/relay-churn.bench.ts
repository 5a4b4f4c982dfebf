// Churn against a shared relay's one thread (docs/contract/relay-protocol.md §3.2: `namespace_rate`,
// and the handshake rate per source address): one relay process (the bench's relay worker, with the
// image's node flags) whose route table names `t1` a tenant's relay and `r1` the operator's. While
// r1 carries tunnels to an echo server, BENCH_CHURN_VICTIMS at a time, each a 16-byte round trip,
// a process of its own attacks in one of two ways:
//   - streams: t1 keeps 990 streams open at a time on one hopway-mux/1 link to the echo server and
//     resets each once answered; a tunnel costs the shared relay a route look-up, a dial and a
//     close, and the tenant nothing it would not spend anyway;
//   - handshakes: anyone who reaches the port (no certificate) starts TLS handshakes from one
//     address, 1,250 a second and 64 at a time (the per-source handshake cap), closing each once done.
// Five phases on a fresh relay each: no attack, then each attack with its limit off and at its
// default. Printed: r1's tunnels/s and setup p50/p99, what the attacker got, the relay's CPU while
// r1's tunnels ran, and the attack's share of it: that CPU less what r1's tunnels cost the relay
// alone. The operator's rate against its rate alone is printed too; on a 2-core machine it also
// pays for the attacker's own process, which a real attacker runs elsewhere.
// Target: at the defaults, each attack takes at most 0.3 of a core of the relay.
//   npm run bench relay-churn      (BENCH_CHURN_SECONDS, default 5; BENCH_CHURN_VICTIMS, 8)
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { connect } from "node:net";
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
/**
 * The most of the relay's one thread an attack may take at the defaults (a core is 1). A tenant's
 * 1,300 accepted tunnels a second alone cost about 0.1 of it on the machine of
 * docs/benchmarks/README.md.
 */
const MAX_ATTACK_SHARE = 0.3;
/** How long an attacker runs: it starts a second before the operator's tunnels and ends a second after. */
const ATTACK_SECONDS = SECONDS + 2;
/** Streams t1 keeps open at a time: just under a link's default stream limit (1,000). */
const STREAMS_INFLIGHT = 990;
/** Handshakes at a time from one address: the relay's default max_handshakes_per_source. */
const HANDSHAKES_INFLIGHT = 64;
/**
 * Handshakes a second the attacker offers: about what the relay completes with the limit off on the
 * 2-core machine of docs/benchmarks/README.md (1,240-1,250). Offering more only spends more of the
 * attacker's own CPU, which shares those cores with the relay and the operator's client.
 */
const HANDSHAKES_OFFERED = 1_250;
const VICTIMS = Number(process.env.BENCH_CHURN_VICTIMS ?? 8);

/**
 * A hopway-mux/1 link to the relay on `port` as the relay whose files are in `dir`, from
 * `localAddress`: the operator's relay dials from its own address, as it would from its own host,
 * so an attacker's handshakes from 127.0.0.1 do not spend its address's handshake rate.
 */
async function link(port: number, dir: string, localAddress = "127.0.0.1"): Promise<MuxSession> {
  const tcp = connect({ host: "127.0.0.1", port, localAddress });
  tcp.on("error", () => {});
  const raw = tlsConnect({
    socket: tcp,
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

/** The tenant: churns streams for ATTACK_SECONDS, then prints {opened, answered, refused, linkUp}. */
async function churn(port: number, dir: string): Promise<void> {
  const s = await link(port, dir);
  const until = Date.now() + ATTACK_SECONDS * 1000;
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
  for (let i = 0; i < STREAMS_INFLIGHT; i++) one();
  await new Promise((r) => setTimeout(r, ATTACK_SECONDS * 1000 + 200));
  process.stdout.write(`${JSON.stringify({ opened, answered, refused, linkUp })}\n`);
  s.destroy();
  process.exit(0);
}

/** The operator's relay: VICTIMS loops of one tunnel at a time, each a 16-byte round trip. */
async function victim(port: number, dir: string) {
  const s = await link(port, dir, "127.0.0.2");
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
  return { tunnels: setups.length, rate: setups.length / SECONDS, p50: q(0.5), p99: q(0.99), failed };
}

type Attack = "streams" | "handshakes";

/** The limit each attack meets, as the relay worker's environment sets it. */
const LIMIT_ENV: Record<Attack, string> = {
  streams: "HOPWAY_NAMESPACE_STREAMS_PER_SECOND",
  handshakes: "HOPWAY_LINK_HANDSHAKES_PER_SOURCE_PER_SECOND",
};

async function phase(label: string, echoPort: number, attack: Attack | undefined, limitOff: boolean) {
  const routes: Route[] = [{ from: "shared", to: "echo", hops: [hop("echo", echoPort)] }];
  const env: NodeJS.ProcessEnv = {
    ...IMAGE_ENV,
    HOPWAY_BENCH_TENANTS: JSON.stringify([{ namespace: "tenant-a", nodes: ["t1"] }]),
  };
  if (attack !== undefined && limitOff) env[LIMIT_ENV[attack]] = "0";
  const relay = await startWorker("shared", routes, env, ["t1", "r1"]);
  const t1 = writeRelayTls(join(work, "tls", "t1"), "bench", "t1");
  const r1 = writeRelayTls(join(work, "tls", "r1"), "bench", "r1");
  const args = attack === "streams" ? ["churn", String(relay.port), t1] : ["handshakes", String(relay.port)];
  const attacker =
    attack === undefined
      ? undefined
      : track(
          spawn(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), ...args], {
            stdio: ["ignore", "pipe", "inherit"],
          }),
        );
  const tenant = attacker === undefined ? undefined : firstJsonLine(attacker, (SECONDS + 30) * 1000);
  // The tenant's process needs a moment to load and dial.
  if (attacker !== undefined) await new Promise((r) => setTimeout(r, 1_000));
  // The relay's CPU while the operator's tunnels run, the attack (if any) throughout.
  const cpu0 = cpuMs(relay.child.pid);
  const v = await victim(relay.port, r1);
  const cpu = cpuMs(relay.child.pid) - cpu0;
  const t = tenant === undefined ? undefined : ((await tenant) as unknown as Churned);
  relay.child.kill();
  console.log(
    `    ${label.padEnd(42)} operator tunnels/s ${v.rate.toFixed(0).padStart(6)}  setup p50 ${v.p50.toFixed(2)} ms, p99 ${v.p99.toFixed(2)} ms` +
      (t === undefined
        ? ""
        : attack === "streams"
          ? `; tenant answered 200 ${(t.answered / ATTACK_SECONDS).toFixed(0)}/s, refused ${(t.refused / ATTACK_SECONDS).toFixed(0)}/s${t.linkUp ? "" : ", its link closed"}`
          : `; handshakes done ${(t.answered / ATTACK_SECONDS).toFixed(0)}/s, not done ${(t.refused / ATTACK_SECONDS).toFixed(0)}/s`) +
      `; relay CPU ${(cpu / 1000).toFixed(1)} s`,
  );
  if (v.failed > 0) throw new Error(`${label}: ${v.failed} of the operator's tunnels were refused`);
  return { ...v, relayMs: cpu };
}

/**
 * Anyone: TLS handshakes without a certificate from one address, at most HANDSHAKES_INFLIGHT at a
 * time and HANDSHAKES_OFFERED a second, for ATTACK_SECONDS. The offered rate is the same with the limit
 * off and on, so both phases carry the same attack, and the attacker's own CPU (it shares this
 * machine's two cores) is no larger when the relay refuses it quickly.
 */
async function handshakes(port: number): Promise<void> {
  const until = Date.now() + ATTACK_SECONDS * 1000;
  let opened = 0;
  let answered = 0;
  let inFlight = 0;
  const one = (): void => {
    opened++;
    inFlight++;
    const raw = tlsConnect({
      host: "127.0.0.1",
      port,
      rejectUnauthorized: false,
      ALPNProtocols: [ALPN_MUX],
      minVersion: "TLSv1.3",
    });
    raw.on("error", () => {});
    raw.once("close", () => {
      inFlight--;
    });
    raw.once("secureConnect", () => {
      answered++;
      raw.destroy();
    });
  };
  const started = Date.now();
  const pace = setInterval(() => {
    if (Date.now() >= until) return clearInterval(pace);
    const due = Math.floor(((Date.now() - started) * HANDSHAKES_OFFERED) / 1000) - opened;
    for (let i = 0; i < due && inFlight < HANDSHAKES_INFLIGHT; i++) one();
  }, 5);
  await new Promise((r) => setTimeout(r, ATTACK_SECONDS * 1000 + 200));
  process.stdout.write(`${JSON.stringify({ opened, answered, refused: opened - answered, linkUp: true })}\n`);
  process.exit(0);
}

if (process.argv[2] === "handshakes") {
  handshakes(Number(process.argv[3])).catch((e) => {
    console.error(e);
    process.exit(1);
  });
} else if (process.argv[2] === "churn") {
  churn(Number(process.argv[3]), process.argv[4] ?? "").catch((e) => {
    console.error(e);
    process.exit(1);
  });
} else {
  runBench("relay-churn", async () => {
    bundleWorker();
    const serve = peer(["serve"]);
    const echo = Number((await firstJsonLine(serve)).echo);
    console.log(`relay-churn bench: ${VICTIMS} operator tunnel loops; ${SECONDS} s per phase; load average ${load()}`);
    const quiet = await phase("no attack", echo, undefined, false);
    // What one operator tunnel costs the relay alone; under attack, the rest of the relay's CPU in
    // the same window is what the attack (the tenant's accepted tunnels included) took of it.
    const perTunnelMs = quiet.relayMs / Math.max(1, quiet.tunnels);
    const share = (p: { relayMs: number; tunnels: number }) =>
      Math.max(0, p.relayMs - p.tunnels * perTunnelMs) / (SECONDS * 1000);
    const verdicts: string[] = [];
    for (const [attack, what, limit] of [
      ["streams", `a tenant's relay churning ${STREAMS_INFLIGHT} streams on one link`, "namespace_streams_per_second"],
      [
        "handshakes",
        `TLS handshakes from one address, ${HANDSHAKES_OFFERED}/s offered, ${HANDSHAKES_INFLIGHT} at a time`,
        "link_handshakes_per_source_per_second",
      ],
    ] as const) {
      console.log(`  ${what}:`);
      const off = await phase(`${limit} off`, echo, attack, true);
      const on = await phase(`${limit} default`, echo, attack, false);
      console.log(
        `    the attack's share of the relay's CPU: limit off ${share(off).toFixed(2)}, default ${share(on).toFixed(2)} of a core`,
      );
      console.log(
        `    operator tunnels/s under attack / alone: limit off ${(off.rate / quiet.rate).toFixed(2)}, default ${(on.rate / quiet.rate).toFixed(2)}` +
          " (the attacker's own CPU shares this machine's cores too)",
      );
      verdicts.push(`${attack} ${share(on).toFixed(2)} ${share(on) <= MAX_ATTACK_SHARE ? "MET" : "MISSED"}`);
    }
    console.log(
      `  target: at the defaults, the attack takes ≤ ${MAX_ATTACK_SHARE} of a core of the relay: ${verdicts.join(", ")} (load average ${load()})`,
    );
  });
}
