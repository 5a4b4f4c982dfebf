// Records-sync mode end to end: the real edge (workerd, SQLite) holding a generated
// realm of a few thousand records, the real agent (startAgent: relay listeners,
// edge client, metrics) in `edge.sync: records`, real TCP tunnels on loopback.
// The agent must compute exactly the table the edge serves for its node, learn a
// change within a second, route a tunnel, and restart from its records snapshot
// with the edge gone.
import { once } from "node:events";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import type { Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { HopwayRecord, Route } from "@hopway/core";
import { generateTopology } from "@hopway/core/testing/generate";
import { RouteTableSchema } from "@hopway/core/wire";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify as stringifyYaml } from "yaml";
import { adminApi, createRealm, type LocalEdge, startLocalEdge } from "../../../test/support/local-edge.ts";
import { freePort, startEchoApp } from "../../../test/support/loopback-mesh.ts";
import { openTunnel } from "../../../test/support/tunnel.ts";
import { parseConfig } from "../../src/config.ts";
import { createLogger } from "../../src/log.ts";
import { type RunningAgent, startAgent } from "../../src/main.ts";

const RECORDS = Number(process.env.HOPWAY_RECORDS_SYNC_E2E_RECORDS ?? 3_000);
const realm = "records-sync";
const NS = "e2e-records";
const workDir = mkdtempSync(join(tmpdir(), "hopway-records-sync-"));
const dataDir = join(workDir, "data");
let edge: LocalEdge | undefined;
let echo: Server;
let appPort: number;
let relayPort: number;
let agentToken: string;
const agents: RunningAgent[] = [];

function api(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  if (!edge) throw new Error("no edge");
  return adminApi(edge, realm, method, path, body);
}

function ownRecords(): HopwayRecord[] {
  const here = { metadata: { namespace_name: NS } };
  return [
    {
      type: "node",
      name: "e2e-relay",
      metadata: { namespace_name: NS, kind: "relay" },
      gateway: [{ priority: 1, address: `ipv4://127.0.0.1:${relayPort}`, match: here }],
    },
    {
      type: "node",
      name: "e2e-app",
      metadata: { namespace_name: NS, kind: "app" },
      gateway: [{ priority: 1, address: `ipv4://127.0.0.1:${appPort}`, match: here }],
      advertise_relay: { metadata: { namespace_name: NS, kind: "relay" } },
    },
  ] as HopwayRecord[];
}

async function launch(url: string): Promise<RunningAgent> {
  const config = parseConfig(
    stringifyYaml({
      edge: { url, realm, token: agentToken, lease_seconds: 30, wait_seconds: 10, sync: "records" },
      node: "e2e-relay",
      records: ownRecords(),
      relay: { listen: [`127.0.0.1:${relayPort}`] },
      admin: { listen: "127.0.0.1:0" },
      data_dir: dataDir,
      shutdown: { drain_seconds: 1 },
      log_level: "warn",
    }),
    {},
  );
  const agent = await startAgent(config, createLogger("warn", { node: "e2e-relay" }));
  agents.push(agent);
  return agent;
}

async function until(what: string, pred: () => boolean, timeoutMs: number): Promise<number> {
  const start = performance.now();
  while (!pred()) {
    if (performance.now() - start > timeoutMs) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return performance.now() - start;
}

const sorted = (routes: Route[]) => [...routes].sort((a, b) => (a.to < b.to ? -1 : a.to > b.to ? 1 : 0));

async function echoThrough(): Promise<string> {
  const t = await openTunnel({ host: "127.0.0.1", port: relayPort }, `e2e-app:${appPort}`, { timeoutMs: 5_000 });
  expect(t.status).toBe(200);
  const chunks: Buffer[] = [t.rest];
  t.socket.on("data", (c: Buffer) => chunks.push(c));
  t.socket.resume();
  t.socket.end("ping-records-sync");
  await once(t.socket, "end");
  t.socket.destroy();
  return Buffer.concat(chunks).toString();
}

beforeAll(async () => {
  appPort = await freePort("127.0.0.1");
  relayPort = await freePort("127.0.0.1");
  echo = await startEchoApp("127.0.0.1", appPort);
  edge = await startLocalEdge();
  await createRealm(edge, realm);
  const generated = generateTopology({ records: RECORDS, seed: 11 });
  await api("POST", "/import", generated);
  agentToken = String((await api("POST", "/tokens", { role: "agent", namespaces: [NS] })).token);
}, 60_000);

afterAll(async () => {
  for (const a of agents) await a.shutdown("test end").catch(() => {});
  await edge?.stop();
  echo?.close();
  rmSync(workDir, { recursive: true, force: true });
});

describe("agent in records-sync mode", () => {
  it("computes its node's table as the edge does, learns a change within a second, routes, and restarts from its snapshot", async () => {
    const agent = await launch(edge?.url ?? "");
    await until(
      "the agent's own records in its table",
      () => agent.relay !== undefined && tableHas(agent, "e2e-app"),
      30_000,
    );

    // 1. Equal to the edge's route table for this node at the same version. The realm's CA,
    // made when this agent first asks for its certificate, may add a version meanwhile: read
    // the edge's table again until both stand at one version.
    const servedTable = async () => {
      const res = await fetch(`${edge?.url}/v1/realms/${realm}/route-tables/e2e-relay`, {
        headers: { authorization: `Bearer ${agentToken}` },
      });
      return RouteTableSchema.parse(await res.json());
    };
    let served = await servedTable();
    for (let i = 0; i < 20; i++) {
      const want = served.version;
      await until("the agent at the edge's version", () => (agent.edge.version ?? -1) >= want, 5_000);
      if (agent.edge.version === served.version) break;
      served = await servedTable();
    }
    const mine = agent.edge.table;
    expect(mine?.version).toBe(served.version);
    expect(mine?.routes.length).toBeGreaterThan(RECORDS * 0.9);
    expect(sorted(mine?.routes ?? [])).toEqual(sorted(served.routes));
    // The same relays too: which intermediates a tunnel may not end at (docs/contract/edge-api.md §5.2).
    const byNode = (m: { node: string }, n: { node: string }) => (m.node < n.node ? -1 : m.node > n.node ? 1 : 0);
    expect(served.relays).toBeDefined();
    expect([...(mine?.relays ?? [])].sort(byNode)).toEqual([...(served.relays ?? [])].sort(byNode));

    // 2. A change reaches the agent's table within a second (long-poll + delta + debounce + rebuild).
    const later = { ...(ownRecords()[1] as HopwayRecord), name: "e2e-app-late" };
    const put = await api("PUT", "/nodes/e2e-app-late", later);
    const ms = await until("the change in the agent's table", () => tableHas(agent, "e2e-app-late"), 5_000);
    // At least that version: the realm's CA, made when this agent first asked for its
    // certificate, may add a version of its own right after (docs/identity.md).
    expect(agent.edge.version).toBeGreaterThanOrEqual(Number(put.version));
    console.log(`records-sync e2e: ${RECORDS} records, change applied in ${ms.toFixed(0)} ms`);
    expect(ms).toBeLessThan(1_000);

    // 3. A real tunnel through the relay, using the computed table.
    expect(await echoThrough()).toBe("ping-records-sync");
    const metrics = await agent.registry.getSingleMetricAsString("hopway_route_table_version");
    expect(metrics).toContain(` ${agent.edge.version}`);

    // 4. Edge gone, agent restarted: it starts from its records snapshot and still routes.
    const version = agent.edge.version;
    await agent.edge.flush();
    expect(readdirSync(dataDir)).toContain("records.json");
    await agent.shutdown("restart");
    await edge?.stop();
    const url = edge?.url ?? "";
    edge = undefined;
    const again = await launch(url);
    expect(again.edge.version).toBe(version);
    expect(tableHas(again, "e2e-app-late")).toBe(true);
    expect(await echoThrough()).toBe("ping-records-sync");
    await until("edge reported unreachable", () => !again.edge.reachable, 5_000);
  }, 60_000);
});

function tableHas(agent: RunningAgent, to: string): boolean {
  return agent.edge.table?.routes.some((r) => r.to === to && (r.hops?.length ?? 0) > 0) ?? false;
}
