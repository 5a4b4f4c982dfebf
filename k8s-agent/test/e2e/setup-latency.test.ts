// Tunnel setup time over distance: the cross-region reference chain
// (app2 → relaysvr2 → relaysvr3 → relaysvr1 → app1, test/fixtures/topologies/cross-region.yaml)
// on loopback, each relay its own process (test/support/relay-worker.ts: the agent's
// Relay, limits and metrics) with the route table the routing core computes from the
// records, and a WAN emulator (test/support/wan.ts, 25 ms one way) on both
// cross-region legs: the records' gateway addresses for relaysvr2 → relaysvr3 and
// relaysvr3 → relaysvr1 point at the emulators, which forward to the relays.
// It measures CONNECT → 200 for the first tunnel (cold) and the next ones (warm)
// against the round-trip floor (docs/benchmarks/links.md).
import { type ChildProcess, fork } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseRecords, type Route, realmResolver } from "@hopway/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeRelayTls } from "../../../test/support/identity.ts";
import {
  gatewayAddresses,
  hostPort,
  loadReferenceTopology,
  loopbackTopology,
  startEchoApp,
  type Topology,
} from "../../../test/support/loopback-mesh.ts";
import { measureConnectSetup, roundTripFloor } from "../../../test/support/setup-latency.ts";
import { openTunnel } from "../../../test/support/tunnel.ts";
import { startWan, type WanLink } from "../../../test/support/wan.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const WORKER = join(ROOT, "test", "support", "relay-worker.ts");
const workDir = mkdtempSync(join(tmpdir(), "hopway-setup-latency-"));
const ONE_WAY_MS = 25;
const TUNNELS = 15;
const RELAYS = ["relaysvr1", "relaysvr2", "relaysvr3"];

const children: ChildProcess[] = [];
const links: WanLink[] = [];
const closers: Array<() => void> = [];
let client: { host: string; port: number };
let app1Authority: string;

function routesOf(topology: Topology, relay: string): Route[] {
  const parsed = parseRecords(topology);
  if (!parsed.ok) throw new Error(`topology does not parse: ${JSON.stringify(parsed.problems)}`);
  return realmResolver(parsed.records).routeTable(relay);
}

function routeTo(topology: Topology, from: string, to: string): Route {
  const r = routesOf(topology, from).find((x) => x.to === to);
  if (!r?.hops) throw new Error(`no route ${from} → ${to}`);
  return r;
}

/** Points every gateway address equal to `from` at `to`. */
function repoint(topology: Topology, from: string, to: string): void {
  for (const entry of Object.values(topology)) {
    for (const gw of entry.discovery.gateway ?? []) {
      gw.address = Array.isArray(gw.address)
        ? gw.address.map((a) => (a === from ? to : a))
        : gw.address === from
          ? to
          : gw.address;
    }
  }
}

async function startRelay(name: string, routes: Route[], listen: string[]): Promise<void> {
  // Link certificates from the test CA of the worker's realm ("bench"); each knows the other relays.
  const tls = writeRelayTls(join(workDir, "tls", name), "bench", name);
  const child = fork(WORKER, [name, tls, JSON.stringify(routes), RELAYS.join(","), listen.join(",")], {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  children.push(child);
  await once(child, "message");
}

beforeAll(async () => {
  const { topology } = await loopbackTopology(await loadReferenceTopology());
  // Where each relay really listens: all its own gateway addresses, before any is repointed.
  const listenOf = new Map(RELAYS.map((r) => [r, gatewayAddresses(topology[r]!.discovery)]));
  // The two cross-region legs, as the routing core chooses them from the records.
  const via = routeTo(topology, "relaysvr2", "app1").hops!;
  expect(via.map((h) => h.node)).toEqual(["relaysvr3", "relaysvr1", "app1"]);
  const leg23 = via[0]!.address!;
  const leg31 = routeTo(topology, "relaysvr3", "app1").hops![0]!.address!;
  for (const leg of [leg23, leg31]) {
    const link = await startWan({ target: hostPort(leg), delayMs: ONE_WAY_MS });
    links.push(link);
    repoint(topology, leg, link.address);
  }
  // The route tables now lead through the emulators; nothing else changed.
  expect(routeTo(topology, "relaysvr2", "app1").hops![0]!.address).toBe(links[0]!.address);
  expect(routeTo(topology, "relaysvr3", "app1").hops![0]!.address).toBe(links[1]!.address);
  for (const r of RELAYS) {
    const listen = listenOf.get(r)!.map((a) => {
      const hp = hostPort(a);
      return `${hp.host}:${hp.port}`;
    });
    await startRelay(r, routesOf(topology, r), listen);
  }
  const app1 = hostPort(gatewayAddresses(topology.app1!.discovery)[0]!);
  const echo = await startEchoApp(app1.host, app1.port);
  closers.push(() => echo.close());
  app1Authority = `app1:${app1.port}`;
  client = hostPort(gatewayAddresses(topology.relaysvr2!.discovery)[0]!);
}, 60_000);

afterAll(async () => {
  for (const c of children) c.kill("SIGKILL");
  for (const l of links) await l.close();
  for (const c of closers) c();
  rmSync(workDir, { recursive: true, force: true });
});

describe("tunnel setup over two 25 ms cross-region legs", () => {
  it("over open links a tunnel pays one round trip per leg: within 1.15 × the round-trip floor", async () => {
    const wan = await measureConnectSetup(client, app1Authority, TUNNELS);
    // The same chain with the emulators at 0 ms: the least the local legs and the relays themselves take.
    for (const l of links) l.delayMs = 0;
    const local = await measureConnectSetup(client, app1Authority, TUNNELS);
    for (const l of links) l.delayMs = ONE_WAY_MS;
    const floor = roundTripFloor([{ oneWayMs: ONE_WAY_MS }, { oneWayMs: ONE_WAY_MS }, { roundTripMs: local.minMs }]);
    const ratio = wan.median / floor;
    console.log(
      `setup latency app2 → relaysvr2 → relaysvr3 → relaysvr1 → app1 (25 ms one way on 2 legs): ` +
        `cold ${wan.coldMs.toFixed(1)} ms, warm median ${wan.median.toFixed(1)} ms, p90 ${wan.p90.toFixed(1)} ms; ` +
        `local legs ${local.minMs.toFixed(1)} ms; floor ${floor.toFixed(1)} ms; warm/floor ${ratio.toFixed(2)}`,
    );

    // Every tunnel crosses both long legs: nothing comes back before one round trip over each.
    for (const ms of [wan.coldMs, ...wan.warmMs]) expect(ms).toBeGreaterThanOrEqual(2 * 2 * ONE_WAY_MS);
    // Relay hops ride persistent links: a new tunnel is one HEADERS frame each way per leg, with
    // no TCP or TLS handshake on the long legs once the links are up (docs/links.md).
    expect(wan.median).toBeLessThanOrEqual(1.15 * floor);
    // The first tunnel also opens the links (TCP + TLS 1.3 on each long leg): it pays more.
    expect(wan.coldMs).toBeGreaterThan(wan.median);

    // And the tunnel is a tunnel: bytes go to app1 and back.
    const t = await openTunnel(client, app1Authority);
    t.socket.resume();
    const echoed = once(t.socket, "data");
    t.socket.write("ping across regions");
    const [data] = (await echoed) as [Buffer];
    expect(data.toString()).toBe("ping across regions");
    t.socket.destroy();
  });
});
