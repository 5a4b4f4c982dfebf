// A whole Hopway mesh on loopback: the edge under workerd (startLocalEdge), the
// cross-region reference topology with every private address rewritten to a
// 127.x address and a port picked at run time, one `hopway-agent` child
// process per relay, and echo applications. Shared by the agent's end-to-end
// test, `npm run demo` and the relay benchmark's multi-hop runs.
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { createRealm, type LocalEdge, startLocalEdge } from "./local-edge.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const AGENT_BIN = join(ROOT, "k8s-agent", "bin", "hopway-agent.mjs");

type Json = Record<string, unknown>;
interface Discovery extends Json {
  name: string;
  metadata?: { namespace_name?: string; [k: string]: unknown };
  gateway?: Array<{ priority: number; address: string | string[]; match?: unknown }>;
}
export type Topology = Record<string, { discovery: Discovery }>;

/** Reserves a free TCP port on a loopback address (released at once; the caller binds it next). */
export async function freePort(host: string): Promise<number> {
  const s = createServer();
  s.listen(0, host);
  await once(s, "listening");
  const a = s.address();
  s.close();
  await once(s, "close");
  if (a === null || typeof a === "string") throw new Error("no port");
  return a.port;
}

/**
 * Rewrites every gateway address of a topology to loopback: each distinct private
 * IP becomes its own 127.77.0.N and each address gets a free port, so the
 * routes (which depend on selectors and priorities only) are unchanged.
 */
export async function loopbackTopology(
  topology: Topology,
): Promise<{ topology: Topology; mapped: Map<string, string> }> {
  const out = structuredClone(topology);
  const mapped = new Map<string, string>();
  const ips = new Map<string, string>();
  for (const entry of Object.values(out)) {
    for (const gw of entry.discovery.gateway ?? []) {
      const list = Array.isArray(gw.address) ? gw.address : [gw.address];
      const next: string[] = [];
      for (const addr of list) {
        let m = mapped.get(addr);
        if (m === undefined) {
          const ipm = /^ipv4:\/\/([\d.]+):\d+$/.exec(addr);
          if (!ipm) throw new Error(`cannot map ${addr} to loopback`);
          const ip = ipm[1] as string;
          let lo = ips.get(ip);
          if (lo === undefined) {
            lo = `127.77.0.${ips.size + 1}`;
            ips.set(ip, lo);
          }
          m = `ipv4://${lo}:${await freePort(lo)}`;
          mapped.set(addr, m);
        }
        next.push(m);
      }
      gw.address = next.length === 1 ? (next[0] as string) : next;
    }
  }
  return { topology: out, mapped };
}

export function hostPort(address: string): { host: string; port: number } {
  const m = /^ipv4:\/\/([\d.]+):(\d+)$/.exec(address);
  if (!m) throw new Error(`not an ipv4 address: ${address}`);
  return { host: m[1] as string, port: Number(m[2]) };
}

/** The addresses of a record's gateways, in declaration order (flattened). */
export function gatewayAddresses(d: Discovery): string[] {
  return (d.gateway ?? []).flatMap((g) => (Array.isArray(g.address) ? g.address : [g.address]));
}

export interface LogLine {
  level: string;
  msg: string;
  [k: string]: unknown;
}

export class AgentProcess {
  readonly lines: LogLine[] = [];
  readonly stderr: string[] = [];
  private waiters: Array<{ pred: (l: LogLine) => boolean; done: (l: LogLine) => void }> = [];
  exited: Promise<number | null>;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
    echo?: (name: string, line: string) => void,
  ) {
    let buf = "";
    child.stdout?.setEncoding("utf8");
    child.stdout?.on("data", (chunk: string) => {
      buf += chunk;
      let nl = buf.indexOf("\n");
      while (nl >= 0) {
        const text = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        nl = buf.indexOf("\n");
        echo?.(name, text);
        try {
          const line = JSON.parse(text) as LogLine;
          this.lines.push(line);
          for (const w of [...this.waiters]) {
            if (w.pred(line)) {
              this.waiters.splice(this.waiters.indexOf(w), 1);
              w.done(line);
            }
          }
        } catch {
          /* not a log line */
        }
      }
    });
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      this.stderr.push(chunk);
      echo?.(name, chunk.trimEnd());
    });
    this.exited = new Promise((r) => child.once("exit", (code) => r(code)));
  }

  /** Resolves with the first log line (past or future) matching `pred`. */
  waitFor(pred: (l: LogLine) => boolean, timeoutMs = 30_000, what = "log line"): Promise<LogLine> {
    const seen = this.lines.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolvePromise, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(`${this.name}: no ${what} within ${timeoutMs} ms; stderr: ${this.stderr.join("").slice(-2000)}`),
          ),
        timeoutMs,
      );
      this.waiters.push({
        pred,
        done: (l) => {
          clearTimeout(timer);
          resolvePromise(l);
        },
      });
    });
  }

  /** SIGTERM and wait for the exit code. */
  async stop(): Promise<number | null> {
    if (this.child.exitCode !== null) return this.child.exitCode;
    this.child.kill("SIGTERM");
    const t = setTimeout(() => this.child.kill("SIGKILL"), 15_000);
    const code = await this.exited;
    clearTimeout(t);
    return code;
  }
}

export interface MeshOptions {
  /** Work directory for the agents' configs and data dirs (the edge keeps its state in memory). */
  workDir: string;
  realm?: string;
  /** Which agent registers which records besides its own relay record. */
  appsOf?: Record<string, string[]>;
  /** Extra records (same shape as topology entries) added before the import, e.g. more apps. */
  extra?: Topology;
  echo?: (name: string, line: string) => void;
  agentLimits?: Record<string, number>;
  leaseSeconds?: number;
}

export interface Mesh {
  edge: LocalEdge;
  realm: string;
  topology: Topology;
  agents: Map<string, AgentProcess>;
  agentTokens: Map<string, string>;
  /** Starts (or restarts) the agent of one relay; resolves once it listens and holds a route table. */
  startAgent(relay: string): Promise<AgentProcess>;
  /** Stops the edge (its state is in memory and goes with it). */
  stopEdge(): Promise<void>;
  /** The relay's address for local applications (its priority-1 gateway). */
  clientAddress(relay: string): { host: string; port: number };
  /** An application's first gateway address. */
  appAddress(app: string): { host: string; port: number };
  stop(): Promise<void>;
}

export async function loadReferenceTopology(name = "cross-region.yaml"): Promise<Topology> {
  return parseYaml(readFileSync(join(ROOT, "test", "fixtures", "topologies", name), "utf8")) as Topology;
}

async function api(
  edge: LocalEdge,
  method: string,
  path: string,
  body?: unknown,
  token = edge.adminToken,
): Promise<Json> {
  const res = await fetch(`${edge.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text) as Json;
}

export async function startMesh(opts: MeshOptions): Promise<Mesh> {
  const realm = opts.realm ?? "loopback";
  mkdirSync(opts.workDir, { recursive: true });
  const reference = { ...(await loadReferenceTopology()), ...(opts.extra ?? {}) };
  const { topology } = await loopbackTopology(reference);
  const edge = await startLocalEdge();
  // The agents publish loopback gateways with their agent tokens: this realm's policy allows that.
  await createRealm(edge, realm, { allowLoopback: true });
  await api(edge, "POST", `/v1/realms/${realm}/import`, topology);

  const relays = Object.keys(topology).filter((n) => topology[n]?.discovery.metadata && /relay/.test(n));
  const appsOf = opts.appsOf ?? {};
  const agentTokens = new Map<string, string>();
  for (const relay of relays) {
    const names = [relay, ...(appsOf[relay] ?? [])];
    const namespaces = [...new Set(names.map((n) => topology[n]?.discovery.metadata?.namespace_name ?? ""))];
    const t = await api(edge, "POST", `/v1/realms/${realm}/tokens`, { role: "agent", namespaces });
    agentTokens.set(relay, String(t.token));
  }

  const agents = new Map<string, AgentProcess>();
  const mesh: Mesh = {
    edge,
    realm,
    topology,
    agents,
    agentTokens,
    async startAgent(relay) {
      const d = topology[relay]?.discovery;
      if (!d) throw new Error(`no relay ${relay}`);
      const listen = gatewayAddresses(d).map((a) => {
        const hp = hostPort(a);
        return `${hp.host}:${hp.port}`;
      });
      const records = [relay, ...(appsOf[relay] ?? [])].map((n) => topology[n]?.discovery);
      const config = {
        edge: {
          url: edge.url,
          realm,
          token: agentTokens.get(relay),
          lease_seconds: opts.leaseSeconds ?? 15,
          wait_seconds: 10,
          // The mesh imports the whole loopback topology first (so the apps without an agent exist),
          // then each agent takes over its own imported records on purpose.
          takeover: true,
        },
        node: relay,
        records,
        relay: {
          listen,
          // The link certificate comes from the realm's edge (relay.tls.source: edge, the default).
          limits: { connect_timeout_ms: 2000, path_timeout_ms: 5000, ...(opts.agentLimits ?? {}) },
        },
        admin: { listen: "127.0.0.1:0" },
        data_dir: join(opts.workDir, "data", relay),
        shutdown: { drain_seconds: 2 },
        // debug: each relay logs every address it dials ("dialing"), so a run can show where tunnels went.
        log_level: "debug",
      };
      const file = join(opts.workDir, `${relay}.yaml`);
      writeFileSync(file, stringifyYaml(config));
      const child = spawn(process.execPath, [AGENT_BIN, "--config", file], {
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, POD_NAME: `${relay}-0`, POD_NAMESPACE: "hopway" },
      });
      const agent = new AgentProcess(relay, child, opts.echo);
      agents.set(relay, agent);
      await agent.waitFor((l) => l.msg === "relay listening", 30_000, "relay listening");
      await agent.waitFor((l) => l.msg === "route table applied", 30_000, "route table");
      // Relay-to-relay tunnels need the relay's certificate, which the edge issues after registration.
      await agent.waitFor(
        (l) => l.msg === "relay certificate issued" || l.msg === "relay certificate loaded from disk",
        30_000,
        "relay certificate",
      );
      return agent;
    },
    stopEdge: () => edge.stop(),
    clientAddress(relay) {
      const d = topology[relay]?.discovery;
      const first = d ? gatewayAddresses(d)[0] : undefined;
      if (!first) throw new Error(`no relay ${relay}`);
      return hostPort(first);
    },
    appAddress(app) {
      const d = topology[app]?.discovery;
      const first = d ? gatewayAddresses(d)[0] : undefined;
      if (!first) throw new Error(`no app ${app}`);
      return hostPort(first);
    },
    async stop() {
      await Promise.allSettled([...agents.values()].map((a) => a.stop()));
      await edge.stop();
    },
  };
  await Promise.all(relays.map((r) => mesh.startAgent(r)));
  return mesh;
}

/** An echo server on a fixed loopback address (an application of the topology). */
export async function startEchoApp(host: string, port: number): Promise<Server> {
  const server = createServer({ allowHalfOpen: true }, (s) => {
    s.on("error", () => s.destroy());
    s.pipe(s);
  });
  server.listen(port, host);
  await once(server, "listening");
  return server;
}
