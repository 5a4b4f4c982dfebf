// A tenant's relay dressed as a regional relay, end to end on loopback: the edge under workerd,
// the cross-region agents and one more agent holding a token for namespace tenant_4 only. The
// regional relays' advertise_relay names no namespace, so until the admin sets the realm's shared
// namespaces (docs/contract/records.md §2.3) the tenant's relay carries other namespaces' tunnels.
// After it, the tenant still links to the shared relays, within its namespace's share of their
// tunnel pool (relay.limits.max_connections_per_namespace, docs/relay.md).
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { type ClientHttp2Session, connect as h2connect } from "node:http2";
import type { Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Mesh, startEchoApp, startMesh } from "../../../test/support/loopback-mesh.ts";
import { openTunnel } from "../../../test/support/tunnel.ts";
import { metricsOf, metricValue } from "../support/mesh-apps.ts";

const workDir = mkdtempSync(join(tmpdir(), "hopway-shared-e2e-"));
let mesh: Mesh;
let app1: Server;

const TENANT_RELAY = {
  "tenant-relay": {
    discovery: {
      name: "tenant-relay",
      metadata: { namespace_name: "tenant_4", kind: "relay", labels: { "area.region": "any" } },
      // Rewritten to a loopback address by the mesh, as every address of the topology.
      gateway: [{ priority: 0, address: "ipv4://10.66.0.1:1234" }],
      advertise_relay: { metadata: { kind: "relay", labels: { "area.region": "any" } } },
    },
  },
};

beforeAll(async () => {
  mesh = await startMesh({
    workDir,
    realm: "shared",
    extra: TENANT_RELAY,
    appsOf: { relaysvr1: ["app1"] },
    // What the relays of one unshared namespace may hold of a relay's tunnel pool: small, to reach it.
    agentLimits: { max_connections_per_namespace: 2 },
  });
  const a = mesh.appAddress("app1");
  app1 = await startEchoApp(a.host, a.port);
}, 120_000);

afterAll(async () => {
  app1?.close();
  await mesh?.stop();
  rmSync(workDir, { recursive: true, force: true });
});

/** One echo through relaysvr2 to app1; the path the relays reported. */
async function echoToApp1(): Promise<string | undefined> {
  const t = await openTunnel(mesh.clientAddress("relaysvr2"), `app1:${mesh.appAddress("app1").port}`);
  expect(t.status).toBe(200);
  const chunks: Buffer[] = [];
  t.socket.on("data", (c: Buffer) => chunks.push(c));
  t.socket.resume();
  t.socket.end("who carries this?");
  await once(t.socket, "end");
  expect(Buffer.concat(chunks).toString()).toBe("who carries this?");
  return t.headers.get("hopway-path");
}

async function admin(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(`${mesh.edge.url}/v1/realms/${mesh.realm}${path}`, {
    method,
    headers: { authorization: `Bearer ${mesh.edge.adminToken}`, "content-type": "application/json" },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  expect(res.status, `${method} ${path}`).toBe(200);
  return (await res.json()) as Record<string, unknown>;
}

/**
 * A relay link to `relay` made with the tenant relay's own key and edge-issued certificate, as the
 * tenant (who runs that agent) can; resolves once a PING crossed it, rejects if the relay closed it.
 */
async function tenantLink(relay: string): Promise<ClientHttp2Session> {
  const dir = join(workDir, "data", "tenant-relay", "identity");
  const issued = JSON.parse(readFileSync(join(dir, "certificate.json"), "utf8")) as {
    chain: string;
    trust_bundle: string[];
  };
  const { host, port } = mesh.clientAddress(relay);
  const session = h2connect(`https://${host}:${port}`, {
    key: readFileSync(join(dir, "relay.key")),
    cert: issued.chain,
    ca: issued.trust_bundle,
    // The relay's own name is not what this test checks.
    checkServerIdentity: () => undefined,
  });
  session.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    session.once("close", () => reject(new Error(`${relay} closed the link`)));
    session.once("connect", () => session.ping((err) => (err ? reject(err) : resolve())));
  });
  return session;
}

const tunnelsThrough = async (relay: string) =>
  metricValue(await metricsOf(mesh, relay), 'hopway_relay_tunnels_opened_total{peer="relay",next="relay"}');

describe("shared namespaces with real relays", () => {
  it("the tenant's relay carries namespace_2's tunnels until the admin shares the reference namespaces; then it carries none, and holds no more than its namespace's share of a shared relay", async () => {
    // Its own agent holds a token for tenant_4 only: the record is the tenant's.
    const token = mesh.agentTokens.get("tenant-relay");
    const stored = await fetch(`${mesh.edge.url}/v1/realms/${mesh.realm}/nodes/tenant-relay`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(stored.status).toBe(200);

    expect(await echoToApp1()).toBe("relaysvr2, tenant-relay, relaysvr1");
    const carried = await tunnelsThrough("tenant-relay");
    expect(carried).toBeGreaterThanOrEqual(1);

    // The admin sets only the shared namespaces: the policy's rules (they allow these loopback
    // gateways) stay as they are.
    const version = async () => metricValue(await metricsOf(mesh, "relaysvr2"), "hopway_route_table_version");
    const before = await version();
    const rules = await admin("GET", "/policy");
    const shared = ["namespace_1", "namespace_2", "namespace_3"];
    expect(await admin("PUT", "/policy/shared-namespaces", { shared_namespaces: shared })).toEqual({
      ...rules,
      shared_namespaces: shared,
    });
    // The relay's long-poll wakes with the new version.
    const deadline = Date.now() + 20_000;
    while ((await version()) <= before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(await version()).toBeGreaterThan(before);

    expect(await echoToApp1()).toBe("relaysvr2, relaysvr3, relaysvr1");
    expect(await echoToApp1()).toBe("relaysvr2, relaysvr3, relaysvr1");
    expect(await tunnelsThrough("tenant-relay")).toBe(carried);

    // The tenant may still link to the shared relays, as any tenant's relay may, but the table now
    // names its namespace: relaysvr3 holds its relays to max_connections_per_namespace (2 here).
    const shared3 = Date.now() + 20_000;
    const version3 = async () => metricValue(await metricsOf(mesh, "relaysvr3"), "hopway_route_table_version");
    while ((await version3()) < (await version()) && Date.now() < shared3) await new Promise((r) => setTimeout(r, 100));
    const links = [await tenantLink("relaysvr3"), await tenantLink("relaysvr3")];
    await expect(tenantLink("relaysvr3")).rejects.toThrow(/closed the link/);
    const m = await metricsOf(mesh, "relaysvr3");
    expect(metricValue(m, 'hopway_relay_link_failures_total{side="accept",reason="namespace_limit"}')).toBe(1);
    expect(metricValue(m, 'hopway_relay_links{peer="tenant-relay"}')).toBe(2);
    expect(metricValue(m, "hopway_relay_namespace_share_max")).toBe(2);
    expect(metricValue(m, "hopway_relay_namespace_share_limit")).toBe(2);
    // The bound on what tunnels hold (docs/security/relay.md, "What tunnels hold together is bounded") is on, at its default.
    expect(metricValue(m, "hopway_relay_buffered_limit_bytes")).toBe(64 * 1024 * 1024);
    expect(metricValue(m, 'hopway_relay_buffer_resets_total{kind="tunnel",holder="tenant"}')).toBe(0);
    // The shared namespaces' relays are no tenant: their tunnels still cross relaysvr3.
    expect(await echoToApp1()).toBe("relaysvr2, relaysvr3, relaysvr1");
    for (const l of links) l.destroy();
  }, 90_000);
});
