// What the relay and links benchmarks share: their child processes (load peers,
// relay workers, HAProxy), readings from /proc, and the idle-tunnel memory run.
// Every process it starts is killed and its work directory removed when the
// benchmark's process exits.
import { type ChildProcess, fork, spawn } from "node:child_process";
import { once } from "node:events";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { buildSync } from "esbuild";
import { imageRuntime } from "../k8s-agent/test/support/image-runtime.ts";
import type { Route } from "../src/core/schema.ts";
import { writeRelayTls } from "../test/support/identity.ts";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const PEER = join(ROOT, "test", "support", "bench-peer.ts");
const WORKER = join(ROOT, "test", "support", "relay-worker.ts");
const FLOOR = join(ROOT, "test", "support", "bench-floor-relay.ts");
/** The relay's native splice as `npm install` builds it (k8s-agent/native/build.mjs). */
const SPLICE_ADDON = join(ROOT, "k8s-agent", "native", "build", "hopway-splice.node");
const TLS_FLOOR = join(ROOT, "test", "support", "bench-tls-floor.ts");
export const work = mkdtempSync(join(tmpdir(), "hopway-bench-"));
const children: ChildProcess[] = [];
// Node flags and environment exactly as the agent's container image runs it (k8s-agent/Dockerfile).
const IMAGE = imageRuntime();
export const NODE_FLAGS = process.env.BENCH_RELAY_FLAGS?.split(" ").filter(Boolean) ?? IMAGE.nodeFlags;
export const IMAGE_ENV = { ...process.env, ...IMAGE.env };
/** Idle tunnels to hold: 9,900 keeps a relay's two sockets per tunnel under the 20,000-file limit. */
export const IDLE = Number(process.env.BENCH_IDLE ?? 9_900);

function cleanup(): void {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  rmSync(work, { recursive: true, force: true });
}
process.on("exit", cleanup);

/** Has `child` killed when the benchmark exits. */
export function track<T extends ChildProcess>(child: T): T {
  children.push(child);
  return child;
}

/** Runs a benchmark's main: exit 0 when it finishes, 1 (with the error) when it throws. */
export function runBench(name: string, main: () => Promise<void>): void {
  main().then(
    () => {
      cleanup();
      process.exit(0);
    },
    (err: unknown) => {
      console.error(`${name} bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      cleanup();
      process.exit(1);
    },
  );
}

export function firstJsonLine(child: ChildProcess, timeoutMs = 60_000): Promise<Record<string, number>> {
  return new Promise((resolvePromise, reject) => {
    let buf = "";
    let err = "";
    const timer = setTimeout(() => reject(new Error(`no answer from child in ${timeoutMs} ms: ${err}`)), timeoutMs);
    child.stderr?.on("data", (c: Buffer) => {
      err += c.toString();
    });
    const onData = (c: Buffer) => {
      buf += c.toString();
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      child.stdout?.off("data", onData);
      clearTimeout(timer);
      resolvePromise(JSON.parse(buf.slice(0, nl)) as Record<string, number>);
    };
    child.stdout?.on("data", onData);
    child.once("exit", (code) => {
      if (code !== 0) reject(new Error(`child exited ${code}: ${err}`));
    });
  });
}

/** A load peer (test/support/bench-peer.ts) in its own process. */
export function peer(args: string[]): ChildProcess {
  const c = spawn(process.execPath, ["--import", "tsx", PEER, ...args], { stdio: ["pipe", "pipe", "pipe"] });
  children.push(c);
  return c;
}

export async function runPeer(args: string[], timeoutMs = 120_000): Promise<Record<string, number>> {
  return firstJsonLine(peer(args), timeoutMs);
}

// The relay runs as an esbuild bundle, like the agent's container image (dist/hopway-agent.mjs):
// under tsx the transpiler alone would add ~50 MB to the RSS being measured.
const WORKER_BUNDLE = join(work, "relay-worker.mjs");
export const FLOOR_BUNDLE = join(work, "bench-floor-relay.mjs");
export const TLS_FLOOR_BUNDLE = join(work, "bench-tls-floor.mjs");
export const AGENT_BANNER = {
  // As in k8s-agent's build script: prom-client is CommonJS and requires Node built-ins.
  js: "import { createRequire as __hopwayRequire } from 'node:module'; const require = __hopwayRequire(import.meta.url);",
};
/** Bundles agent code (`entry`) to `outfile` as the agent's own build does. */
export function bundleAgent(entry: string, outfile: string): void {
  buildSync({
    entryPoints: [entry],
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node22",
    outfile,
    logLevel: "warning",
    banner: AGENT_BANNER,
  });
}

export function bundleWorker(): void {
  buildSync({ entryPoints: [FLOOR], bundle: true, platform: "node", format: "esm", outfile: FLOOR_BUNDLE });
  buildSync({ entryPoints: [TLS_FLOOR], bundle: true, platform: "node", format: "esm", outfile: TLS_FLOOR_BUNDLE });
  bundleAgent(WORKER, WORKER_BUNDLE);
  // The image keeps the native splice beside its bundle (k8s-agent/Dockerfile); so do the bench's.
  if (existsSync(SPLICE_ADDON)) copyFileSync(SPLICE_ADDON, join(work, "hopway-splice.node"));
}

/** Forks a bundled proxy with the image's node flags; it answers {port} once it listens. */
export async function forkProxy(
  bundle: string,
  args: string[],
  env: NodeJS.ProcessEnv = IMAGE_ENV,
  extraFlags: string[] = [],
): Promise<{ port: number; child: ChildProcess; listeners: number[] }> {
  const child = fork(bundle, args, {
    execArgv: [...extraFlags, ...NODE_FLAGS],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    env,
  });
  children.push(child);
  // A proxy that dies before it listens (a bad flag, a Node without what it needs) fails the bench
  // with its exit code instead of leaving it waiting.
  const exited = once(child, "exit").then(([code]) => {
    throw new Error(`${bundle} ${args.join(" ")} exited (${code}) before it listened`);
  });
  const [msg] = (await Promise.race([once(child, "message"), exited])) as [{ port: number; listeners?: number[] }];
  exited.catch(() => {});
  return { port: msg.port, child, listeners: msg.listeners ?? [] };
}

/**
 * A relay worker (test/support/relay-worker.ts) with a fixed route table and its own link
 * certificate from the bench realm's test CA; it takes links from `peers`.
 */
export function startWorker(
  name: string,
  routes: Route[],
  env: NodeJS.ProcessEnv = IMAGE_ENV,
  peers: readonly string[] = ["relay-a", "relay-b", "relay-c"],
  links = true,
) {
  // Without a certificate the relay takes no links, and so skips the first-byte sniff on accept.
  const tls = links ? writeRelayTls(join(work, "tls", name), "bench", name) : "";
  // --expose-gc only for the idle-memory reading (a full GC before it is taken).
  return forkProxy(WORKER_BUNDLE, [name, tls, JSON.stringify(routes), peers.join(",")], env, ["--expose-gc"]);
}

export async function rssOf(child: ChildProcess): Promise<{ rss: number; heap: number; tunnels: number }> {
  child.send({ cmd: "rss" });
  const [msg] = (await once(child, "message")) as [{ rss: number; heap: number; tunnels: number }];
  return msg;
}

/** One side of a TLS hop between HAProxy processes: its certificate (cert + key, PEM) and the CA it trusts. */
export interface TlsSide {
  pem: string;
  ca: string;
  /** On a server line: the name the peer's certificate must carry (SNI and hostname check). */
  peerName?: string;
}

export interface HaproxyFrontend {
  port: number;
  to: number;
  /** Accept TLS on the bind and require a client certificate signed by the CA. */
  bindTls?: TlsSide;
  /** Dial the server with TLS, presenting this certificate and verifying the server's. */
  serverTls?: TlsSide;
}

export async function startHaproxy(name: string, frontends: HaproxyFrontend[], maxconn = 9000): Promise<ChildProcess> {
  const cfg = [
    "global",
    "  nbthread 1",
    `  maxconn ${maxconn}`, // 2 fds per connection under the 20,000-file limit
    "defaults",
    "  mode tcp",
    "  timeout connect 5s",
    "  timeout client 60s",
    "  timeout server 60s",
    ...frontends.flatMap((f, i) => {
      const bindTls = f.bindTls ? ` ssl crt ${f.bindTls.pem} ca-file ${f.bindTls.ca} verify required` : "";
      const s = f.serverTls;
      const serverTls = s
        ? ` ssl crt ${s.pem} ca-file ${s.ca} verify required${s.peerName ? ` sni str(${s.peerName}) verifyhost ${s.peerName}` : ""}`
        : "";
      return [
        `listen ${name}_${i}`,
        `  bind 127.0.0.1:${f.port}${bindTls}`,
        "  option tcp-smart-accept",
        `  server s 127.0.0.1:${f.to}${serverTls}`,
      ];
    }),
  ].join("\n");
  const file = join(work, `${name}.cfg`);
  writeFileSync(file, `${cfg}\n`);
  const c = spawn("haproxy", ["-db", "-f", file], { stdio: ["ignore", "ignore", "pipe"] });
  children.push(c);
  let stderr = "";
  c.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  for (let i = 0; i < 100; i++) {
    if (c.exitCode !== null) throw new Error(`haproxy ${name} exited ${c.exitCode}: ${stderr}`);
    const up = await new Promise<boolean>((r) => {
      const s = createServer();
      s.once("error", () => r(true));
      s.listen(frontends[0]?.port ?? 0, "127.0.0.1", () => s.close(() => r(false)));
    });
    if (up) return c;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`haproxy ${name} did not start: ${stderr}`);
}

/** A redis-server at 127.0.0.1:`port` with no persistence, given 300 ms to start. */
export async function startRedis(port: number): Promise<ChildProcess> {
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
  const redis = track(spawn("redis-server", args, { stdio: "ignore" }));
  await new Promise((r) => setTimeout(r, 300));
  return redis;
}

/** `redis-benchmark -n N -c 20 -t set,get -q` at 127.0.0.1:`port`: SET and GET requests per second. */
export async function redisBenchmark(port: number, n: number): Promise<{ set: number; get: number }> {
  const args = ["-h", "127.0.0.1", "-p", String(port), "-n", String(n), "-c", "20", "-t", "set,get", "-q"];
  const child = spawn("redis-benchmark", args);
  let text = "";
  child.stdout.on("data", (d: Buffer) => {
    text += d.toString();
  });
  await once(child, "exit");
  const rate = (op: string) =>
    Number(new RegExp(`${op}: ([\\d.]+) requests per second`).exec(text.replace(/\r/g, "\n"))?.[1] ?? 0);
  return { set: rate("SET"), get: rate("GET") };
}

export const hop = (node: string, port: number): Route["hops"] extends (infer H)[] | null ? H : never => ({
  node,
  address: `ipv4://127.0.0.1:${port}`,
  priority: 1,
  alternatives: [],
});

/** CPU time (user + system) a process has used, in ms, from /proc: less distorted by machine load than wall time. */
export function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  return (Number(fields[11]) + Number(fields[12])) * 10; // clock ticks of 10 ms (USER_HZ 100)
}
/** CPU time the whole machine spent busy (all cores, not idle or iowait), in ms, from /proc/stat. */
export function machineBusyMs(): number {
  const f = (readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "").trim().split(/\s+/).slice(1, 9).map(Number);
  const busy = f.reduce((a, b) => a + b, 0) - (f[3] ?? 0) - (f[4] ?? 0);
  return busy * 10; // USER_HZ 100
}
/** Resident memory of a process from /proc (what a container's memory limit sees), without forcing a GC. */
export function vmRss(pid: number | undefined): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? 0) * 1024;
}
export const load = () =>
  loadavg()
    .map((l) => l.toFixed(1))
    .join(" ");

export const mib = (bytes: number, seconds: number) => bytes / 1024 / 1024 / seconds;
export const fmt = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1));
export const MB = (n: number) => (n / 1e6).toFixed(1);

export interface RssReading {
  rss: number;
  heap: number;
  tunnels: number;
}

export interface IdleRelayReading {
  label: string;
  /** RSS after a full GC with no tunnels, half of them, and all of them. */
  base: RssReading;
  mid: RssReading;
  full: RssReading;
  perTunnel: number;
  /** `full` extrapolated to 10,000 tunnels along the slope from `mid` to `full`. */
  at10k: number;
}

/**
 * RSS of fresh relays with `IDLE` idle tunnels through `front` (the first relay of
 * the chain), opened by two client processes, half each; the slope between the
 * two readings extrapolates each relay to 10,000 tunnels.
 */
export async function idleRss(
  front: number,
  authority: string,
  relays: Array<{ label: string; child: ChildProcess }>,
): Promise<IdleRelayReading[]> {
  const read = () => Promise.all(relays.map((r) => rssOf(r.child)));
  const base = await read();
  const half = Math.floor(IDLE / 2);
  const c1 = peer(["idle", "127.0.0.1", String(front), String(half), authority]);
  await firstJsonLine(c1, 180_000);
  const mid = await read();
  const c2 = peer(["idle", "127.0.0.1", String(front), String(IDLE - half), authority]);
  await firstJsonLine(c2, 180_000);
  const full = await read();
  c1.stdin?.end();
  c2.stdin?.end();
  return relays.map((r, i) => {
    const f = full[i]!;
    const m = mid[i]!;
    const perTunnel = (f.rss - m.rss) / Math.max(1, f.tunnels - m.tunnels);
    return {
      label: r.label,
      base: base[i]!,
      mid: m,
      full: f,
      perTunnel,
      at10k: f.rss + (10_000 - f.tunnels) * perTunnel,
    };
  });
}
