// Stateful scaling end to end on loopback: the edge under workerd, one
// hopway-agent per "pod" plus a gateway agent for the test client, and a
// key-value application process per pod (test/support/kv-app.ts) that uses
// Hopway's key ownership. Everything the test reads and writes goes through
// the gateway relay. 10,000 keys on a group of 3 → 5 (scale-out: ~40 % of the
// keys move to the new pods) → drain the two highest ordinals (their keys move
// back) → 3; after every step every key reads back its last written value.
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { keyHost, OwnershipIndex } from "@hopway/core/ownership";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify as stringifyYaml } from "yaml";
import { adminApi, createRealm, type LocalEdge, startLocalEdge } from "../../../test/support/local-edge.ts";
import { AGENT_BIN, AgentProcess, freePort } from "../../../test/support/loopback-mesh.ts";
import { AgentClient } from "../../src/client/index.ts";
import { type KvAppConfig, type LineConn, tunnel } from "../support/kv-app.ts";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, "..", "..", "..");
const KV_APP = join(HERE, "..", "support", "kv-app.ts");
const REALM = "stateful";
const NS = "stateful";
const KEYS = 10_000;
const keys = Array.from({ length: KEYS }, (_, i) =>
  i % 3 === 0 ? `user:${i}` : i % 3 === 1 ? `Session/${i}` : `k${i}`,
);

const workDir = mkdtempSync(join(tmpdir(), "hopway-stateful-"));
let edge: LocalEdge;
let agentToken: string;
let appPort: number;
let gw: { agent: AgentProcess; relay: { host: string; port: number }; client: AgentClient };
const pods = new Map<number, { agent: AgentProcess; app: ChildProcess; adminUrl: string }>();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const enc = encodeURIComponent;

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    await sleep(150);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
}

function api(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  return adminApi(edge, REALM, method, path, body);
}

async function startAgentProcess(
  name: string,
  config: Record<string, unknown>,
  alongside?: () => void,
): Promise<{ agent: AgentProcess; adminUrl: string }> {
  const file = join(workDir, `${name}.yaml`);
  writeFileSync(file, stringifyYaml(config));
  const child = spawn(process.execPath, [AGENT_BIN, "--config", file], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, POD_NAME: name, POD_NAMESPACE: NS, HOPWAY_OWNERSHIP_POLL_MS: "1000" },
  });
  alongside?.();
  const agent = new AgentProcess(
    name,
    child,
    process.env.KV_E2E_ECHO ? (n, l) => process.stdout.write(`[${n}] ${l}\n`) : undefined,
  );
  const admin = await agent.waitFor((l) => l.msg === "admin listening", 60_000, "admin listening");
  await agent.waitFor((l) => l.msg === "route table applied", 30_000, "route table");
  await agent.waitFor(
    (l) => l.msg === "relay certificate issued" || l.msg === "relay certificate loaded from disk",
    30_000,
    "relay certificate",
  );
  return { agent, adminUrl: String(admin.url) };
}

/** The local API's write token an agent and the app in its pod share (a Secret in a real pod). */
const LOCAL_API_TOKEN = "e2e-local-api-token-0123456789";

function agentConfig(node: string, relayListen: string, records: unknown[], scaling?: Record<string, unknown>) {
  return {
    edge: { url: edge.url, realm: REALM, token: agentToken, lease_seconds: 10, wait_seconds: 5 },
    node,
    records,
    // The relay's link identity comes from the realm's edge (relay.tls.source: edge, the default).
    relay: { listen: [relayListen], limits: { connect_timeout_ms: 2000, path_timeout_ms: 5000 } },
    admin: { listen: "127.0.0.1:0", local_api_token: LOCAL_API_TOKEN },
    data_dir: join(workDir, "data", node),
    shutdown: { drain_seconds: 1 },
    log_level: "info",
    ...(scaling ? { scaling } : {}),
  };
}

/** Pod i: its agent (relay kv-agent-i, reachable by anyone) and its KV app kv-i (reachable only from its own host, via that relay). */
async function startPod(i: number, paused: boolean): Promise<void> {
  const host = { hostname: `kv-${i}` };
  const relayIp = `127.78.2.${i + 1}`;
  const relayPort = await freePort(relayIp);
  const appIp = `127.78.1.${i + 1}`;
  const agentRecord = {
    name: `kv-agent-${i}`,
    host,
    metadata: { namespace_name: NS, kind: "relay" },
    gateway: [{ priority: 1, address: `ipv4://${relayIp}:${relayPort}` }],
  };
  const appRecord = {
    name: `kv-${i}`,
    host,
    metadata: { namespace_name: NS, kind: "app", labels: { app: "kv" } },
    gateway: [{ priority: 1, address: `ipv4://${appIp}:${appPort}`, match: { host } }],
    advertise_relay: { name: `kv-agent-${i}` },
  };
  // The app starts next to its agent (as containers of one pod do) and reports its load as soon as
  // the agent's local API answers: before the agent's first heartbeat, so a new pod never counts as idle.
  const adminPort = await freePort("127.0.0.1");
  const cfg: KvAppConfig = {
    name: `kv-${i}`,
    group: "kv",
    host: appIp,
    port: appPort,
    agentUrl: `http://127.0.0.1:${adminPort}`,
    agentToken: LOCAL_API_TOKEN,
    relay: { host: relayIp, port: relayPort },
    load: 0.6,
    paused,
    tickMs: 250,
  };
  const started: { app?: ChildProcess } = {};
  const config = agentConfig(`kv-agent-${i}`, `${relayIp}:${relayPort}`, [agentRecord, appRecord], {
    workload: "kv",
    ordinal: i,
  });
  const { agent } = await startAgentProcess(
    `kv-agent-${i}`,
    { ...config, admin: { listen: `127.0.0.1:${adminPort}`, local_api_token: LOCAL_API_TOKEN } },
    () => {
      started.app = spawn(process.execPath, ["--import", "tsx", KV_APP, JSON.stringify(cfg)], {
        cwd: ROOT,
        stdio: ["ignore", "pipe", "pipe"],
      });
    },
  );
  const app = started.app;
  if (app === undefined) throw new Error("kv app not started");
  app.stderr?.on("data", (c: Buffer) => process.stderr.write(`[kv-${i}] ${c.toString()}`));
  let out = "";
  await until(`kv-${i} listening`, async () => {
    out += app.stdout?.read()?.toString() ?? "";
    return out.includes("kv listening");
  });
  pods.set(i, { agent, app, adminUrl: cfg.agentUrl });
}

async function stopPod(i: number): Promise<void> {
  const pod = pods.get(i);
  if (!pod) return;
  pod.app.kill("SIGTERM");
  await once(pod.app, "exit");
  expect(await pod.agent.stop()).toBe(0);
  pods.delete(i);
}

// ---- the client: everything through the gateway relay ------------------------------

const conns = new Map<string, LineConn>();
async function connTo(owner: string): Promise<LineConn> {
  const held = conns.get(owner);
  if (held?.open) return held;
  const t = await tunnel(gw.relay, `${owner}:${appPort}`);
  if (!("conn" in t)) throw new Error(`CONNECT ${owner}: ${t.status} ${t.reason}`);
  conns.set(owner, t.conn);
  return t.conn;
}

interface Outcome {
  answers: Map<string, string>;
  retries: number;
}

/**
 * Runs one command per key on the owners the gateway agent names (its local
 * API), pipelined per owner; MOVED / RETRY answers (views catching up) are
 * retried with a fresh view, a bounded number of times.
 */
async function run(cmd: "GET" | "SET", todo: readonly string[], value?: (k: string) => string): Promise<Outcome> {
  const answers = new Map<string, string>();
  let pending = [...todo];
  let retries = 0;
  for (let round = 0; pending.length > 0; round++) {
    if (round > 40) throw new Error(`${pending.length} keys still refused after 40 rounds, e.g. ${pending[0]}`);
    if (round > 0) await sleep(200);
    const { index } = await gw.client.membership("kv");
    const byOwner = new Map<string, string[]>();
    for (const k of pending) {
      const o = index.lookup(k).owner ?? "-";
      byOwner.set(o, [...(byOwner.get(o) ?? []), k]);
    }
    const again: string[] = [];
    await Promise.all(
      [...byOwner].map(async ([owner, list]) => {
        const c = await connTo(owner);
        const got = await Promise.all(
          list.map((k) => c.request(cmd === "SET" ? `SET ${enc(k)} ${enc(value?.(k) ?? "")}` : `GET ${enc(k)}`)),
        );
        for (const [i, a] of got.entries()) {
          const k = list[i] as string;
          if (/^(MOVED|RETRY|ERR)/.test(a)) again.push(k);
          else answers.set(k, a);
        }
      }),
    );
    retries += again.length;
    pending = again;
  }
  return { answers, retries };
}

/** Reads every key; asserts its last written value; returns which pod served it. */
async function readAll(expected: (k: string) => string, label: string): Promise<Map<string, string>> {
  const { answers, retries } = await run("GET", keys);
  const servedBy = new Map<string, string>();
  const wrong: string[] = [];
  for (const k of keys) {
    const a = answers.get(k) ?? "";
    const [tag, v, by] = a.split(" ");
    if (tag !== "VAL" || decodeURIComponent(v ?? "") !== expected(k)) wrong.push(`${k}: ${a}`);
    servedBy.set(k, by ?? "?");
  }
  console.log(`${label}: ${KEYS - wrong.length}/${KEYS} keys read back their last value (${retries} retried answers)`);
  expect(wrong.slice(0, 5)).toEqual([]);
  return servedBy;
}

async function writeAll(value: (k: string) => string): Promise<void> {
  const { answers } = await run("SET", keys, value);
  expect([...answers.values()].filter((a) => !a.startsWith("OK ")).slice(0, 5)).toEqual([]);
}

async function kvStats(i: number): Promise<Record<string, number | string | boolean>> {
  const c = await connTo(`kv-${i}`);
  const line = await c.request("STATS");
  return JSON.parse(line.slice(6)) as Record<string, number | string | boolean>;
}

async function command(i: number, line: string): Promise<void> {
  const c = await connTo(`kv-${i}`);
  expect(await c.request(line)).toBe("OK");
}

/** The gateway's view: active members, draining ones, and whether any key still has a previous owner (a move in progress). */
async function gwView() {
  const m = await gw.client.membership("kv");
  return {
    active: m.members.filter((x) => !x.draining).map((x) => x.name),
    draining: m.members.filter((x) => x.draining).map((x) => x.name),
    // Settled in ownership terms: no key names a previous owner any more.
    settled: keys.every((k) => m.index.lookup(k).previous === null),
    index: m.index,
    members: m.members,
  };
}

async function totalKeys(ordinals: number[]): Promise<number> {
  let n = 0;
  for (const i of ordinals) n += Number((await kvStats(i)).keys);
  return n;
}

beforeAll(async () => {
  edge = await startLocalEdge();
  await createRealm(edge, REALM);
  const t = await api("POST", "/tokens", { role: "agent", namespaces: [NS] });
  agentToken = String(t.token);
  // The StatefulSet's pods up to its maxReplicas: only those whose records are up, in the group's
  // namespace, are members (docs/stateful.md).
  await api("PUT", "/nodes/kv", {
    type: "group",
    metadata: { namespace_name: NS },
    node_list: [0, 1, 2, 3, 4].map((i) => ({ node_name: `kv-${i}` })),
  });
  appPort = await freePort("127.78.1.1");
  const gwPort = await freePort("127.78.3.1");
  const gwRecord = {
    name: "gw",
    host: { hostname: "gw" },
    metadata: { namespace_name: NS, kind: "relay" },
    gateway: [{ priority: 1, address: `ipv4://127.78.3.1:${gwPort}` }],
  };
  const started = await startAgentProcess("gw", agentConfig("gw", `127.78.3.1:${gwPort}`, [gwRecord]));
  gw = {
    ...started,
    relay: { host: "127.78.3.1", port: gwPort },
    client: new AgentClient({ baseUrl: started.adminUrl, token: LOCAL_API_TOKEN }),
  };
  await Promise.all([0, 1, 2].map((i) => startPod(i, false)));
}, 120_000);

afterAll(async () => {
  for (const c of conns.values()) c.close();
  for (const i of [...pods.keys()]) await stopPod(i).catch(() => {});
  await gw?.agent.stop();
  await edge?.stop();
  rmSync(workDir, { recursive: true, force: true });
});

describe("stateful group on loopback: 3 → 5 → 3 pods, 10,000 keys, nothing lost", () => {
  let atThree: Map<string, string>;
  let atFive: Map<string, string>;

  it("writes and reads 10,000 keys on 3 pods, each served by its owner", async () => {
    // Wait for every pod's report: before it, a pod's load counts as 0 and load alone would drain the others.
    await until("3 active members that reported, settled, at the gateway", async () => {
      const v = await gwView();
      if (v.active.length !== 3 || !v.settled || v.members.some((m) => m.holds_state === null)) return false;
      const s = await Promise.all([0, 1, 2].map(kvStats));
      return s.every((x) => x.joining === false) && v;
    });
    const started = performance.now();
    await writeAll((k) => `v1:${k}`);
    atThree = await readAll((k) => `v1:${k}`, "3 pods");
    console.log(`10,000 SET + 10,000 GET through the relay in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    const { index } = await gwView();
    for (const k of keys.slice(0, 500)) expect(atThree.get(k)).toBe(index.lookup(k).owner);
    expect(await totalKeys([0, 1, 2])).toBe(KEYS);
  });

  it("key-affine CONNECT reaches the owner: <key>.key.kv, Hopway-Key, ncat --proxy; refuses non-groups", async () => {
    const { index } = await gwView();
    for (const k of keys.slice(0, 60)) {
      const host = keyHost("kv", k);
      const t = host
        ? await tunnel(gw.relay, `${host}:${appPort}`)
        : await tunnel(gw.relay, `kv:${appPort}`, { "Hopway-Key": enc(k) });
      expect(t.status, `${k}`).toBe(200);
      if (!("conn" in t)) continue;
      const a = await t.conn.request(`GET ${enc(k)}`);
      expect(a).toBe(`VAL ${enc(`v1:${k}`)} ${index.lookup(k).owner}`);
      t.conn.close();
    }
    // The header form for a key that also fits the authority: same owner.
    const viaHeader = await tunnel(gw.relay, `kv:${appPort}`, { "Hopway-Key": enc("user:42") });
    expect("conn" in viaHeader && (await viaHeader.conn.request("GET user%3A42"))).toBe(
      `VAL ${enc("v1:user:42")} ${index.lookup("user:42").owner}`,
    );
    if ("conn" in viaHeader) viaHeader.conn.close();
    // A standard client: ncat through the relay to `k2.key.kv`.
    const ncat = spawn("ncat", [
      "--proxy",
      `${gw.relay.host}:${gw.relay.port}`,
      "--proxy-type",
      "http",
      "k2.key.kv",
      String(appPort),
    ]);
    let out = "";
    ncat.stdout.on("data", (c: Buffer) => {
      out += c.toString();
    });
    ncat.stdin.write("GET k2\n");
    await until("ncat answer", async () => out.includes("\n"), 10_000);
    ncat.kill("SIGTERM");
    console.log(
      `ncat --proxy ${gw.relay.host}:${gw.relay.port} --proxy-type http k2.key.kv ${appPort} <<< 'GET k2' → ${out.trim()}`,
    );
    expect(out.trim()).toBe(`VAL ${enc("v1:k2")} ${index.lookup("k2").owner}`);
    // Never an open proxy: a node that is not a group, an unknown group, a bad label, a port that is not the app's.
    for (const [authority, status] of [
      ["k3.key.kv-agent-0:1", 403],
      ["k3.key.nosuchgroup:1", 404],
      ["a--b.key.kv:1", 400],
      [`k3.key.kv:${appPort + 1}`, 403],
    ] as const) {
      const t = await tunnel(gw.relay, authority);
      expect(t.status, authority).toBe(status);
    }
  });

  it("scale-out to 5: reads during the move fetch from previous; about 40 % of keys move, all to the new pods", async () => {
    // Migration paused everywhere (the new pods start paused): the reads below happen during the move.
    for (const i of [0, 1, 2]) await command(i, "PAUSE");
    await Promise.all([3, 4].map((i) => startPod(i, true)));
    await until("5 active members that reported, at the gateway", async () => {
      const v = await gwView();
      return v.active.length === 5 && v.members.every((m) => m.holds_state !== null);
    });
    const during = await gwView();
    const withPrevious = keys.filter((k) => during.index.lookup(k).previous !== null).length;
    await readAll((k) => `v1:${k}`, "5 pods, during the move");
    const fetched = Number((await kvStats(3)).fetched) + Number((await kvStats(4)).fetched);
    console.log(
      `during the move: ${withPrevious} keys named a previous owner; new pods fetched ${fetched} keys from it on read`,
    );
    expect(fetched).toBeGreaterThan(0);
    await writeAll((k) => `v2:${k}`);
    for (const i of [0, 1, 2, 3, 4]) await command(i, "GO");
    await until(
      "new pods settled (pulled, holding state)",
      async () => {
        const v = await gwView();
        return (
          v.settled &&
          v.active.length === 5 &&
          (await Promise.all([3, 4].map(kvStats))).every((s) => s.joining === false)
        );
      },
      30_000,
    );
    atFive = await readAll((k) => `v2:${k}`, "5 pods, settled");
    let moved = 0;
    for (const k of keys) {
      if (atFive.get(k) !== atThree.get(k)) {
        moved++;
        expect(["kv-3", "kv-4"]).toContain(atFive.get(k));
      }
    }
    console.log(`scale-out 3 → 5: ${moved} of ${KEYS} keys moved (${((100 * moved) / KEYS).toFixed(1)} %, ideal 40 %)`);
    expect(moved / KEYS).toBeGreaterThan(0.35);
    expect(moved / KEYS).toBeLessThan(0.45);
    // Each key lives on exactly one pod: the old owners let go of what moved.
    expect(await totalKeys([0, 1, 2, 3, 4])).toBe(KEYS);
  });

  it("scale-in: kv-3 and kv-4 drain, hand their keys back, report no state; the state floor drops to 3", async () => {
    // Load falls to 3 × 0.6 = 1.8 → ceil(1.8 / 0.7) = 3 replicas: ordinals 3 and 4 drain (and the three
    // that stay still ask for 3 after they left). Migration paused everywhere: reads happen during the move.
    for (const i of [0, 1, 2, 3, 4]) await command(i, "PAUSE");
    for (const i of [3, 4]) await command(i, "LOAD 0");
    await until("kv-3 and kv-4 draining at the gateway", async () => {
      const v = await gwView();
      return v.draining.join(",") === "kv-3,kv-4";
    });
    await readAll((k) => `v2:${k}`, "draining, during the move");
    const fetched = (await Promise.all([0, 1, 2].map(kvStats))).reduce((n, s) => n + Number(s.fetched), 0);
    console.log(`during the drain: the remaining pods fetched ${fetched} keys from the draining ones on read`);
    expect(fetched).toBeGreaterThan(0);
    await writeAll((k) => `v3:${k}`);
    for (const i of [0, 1, 2, 3, 4]) await command(i, "GO");
    await until(
      "drained pods hold nothing and said so",
      async () => {
        const v = await gwView();
        const s = await Promise.all([3, 4].map(kvStats));
        return v.settled && s.every((x) => x.keys === 0) && v;
      },
      30_000,
    );
    const workload = await until("state floor 3 at the edge", async () => {
      const w = (await api("GET", "/workloads/kv")) as { scaling: { state_floor: number; desired_replicas: number } };
      return w.scaling.state_floor === 3 && w;
    });
    console.log(`edge workload view after the drain: ${JSON.stringify(workload.scaling)}`);
    expect(workload.scaling.desired_replicas).toBe(3);
    const beforeStop = await readAll((k) => `v3:${k}`, "drained, before scale-in");
    for (const k of keys) expect(beforeStop.get(k)).toBe(atThree.get(k));

    // The StatefulSet removes the two highest ordinals.
    await Promise.all([3, 4].map(stopPod));
    conns.get("kv-3")?.close();
    conns.get("kv-4")?.close();
    await until("3 members at the gateway", async () => {
      const v = await gwView();
      return v.members.length === 3 && v.settled;
    });
    const after = await readAll((k) => `v3:${k}`, "3 pods after scale-in");
    let movedBack = 0;
    for (const k of keys) {
      if (after.get(k) !== atFive.get(k)) movedBack++;
      // Rendezvous hashing: each key is back on the pod that owned it before the scale-out.
      expect(after.get(k)).toBe(atThree.get(k));
    }
    console.log(`scale-in 5 → 3: ${movedBack} keys moved back (${((100 * movedBack) / KEYS).toFixed(1)} %)`);
    expect(await totalKeys([0, 1, 2])).toBe(KEYS);
  });

  it("answers ownership from the agent while the edge is down", async () => {
    const before = await gw.client.owners("kv", keys.slice(0, 2000));
    await edge.stop();
    const after = await gw.client.owners("kv", keys.slice(0, 2000));
    expect(after.owners).toEqual(before.owners);
    expect(after.epoch).toBe(before.epoch);
    const idx = new OwnershipIndex(after.members);
    expect(after.owners[7]).toEqual(idx.lookup(keys[7] as string));
    // And key-affine tunnels still route.
    const t = await tunnel(gw.relay, `${keyHost("kv", "k5")}:${appPort}`);
    expect(t.status).toBe(200);
    if ("conn" in t) {
      expect(await t.conn.request("GET k5")).toBe(`VAL ${enc("v3:k5")} ${idx.lookup("k5").owner}`);
      t.conn.close();
    }
  });
});
