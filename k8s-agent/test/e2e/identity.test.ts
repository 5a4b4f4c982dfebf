// Relay identities end to end: the real edge (workerd, SQLite) as the realm's
// CA and two real agents (startAgent), one following its route table and one
// in records-sync mode. Each obtains a certificate for its own node record;
// the two complete a mutually authenticated TLS 1.3 handshake with them on
// loopback; a CA rotation reaches both through their long-polls; a restart
// reuses the key and certificate from data_dir.
import { mkdtempSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, createServer, type TLSSocket } from "node:tls";
import { relayNameFromUri, type TlsMaterial } from "@hopway/core/identity";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify as stringifyYaml } from "yaml";
import { adminApi, createRealm, type LocalEdge, startLocalEdge } from "../../../test/support/local-edge.ts";
import { freePort } from "../../../test/support/loopback-mesh.ts";
import { parseConfig } from "../../src/config.ts";
import { uriSans } from "../../src/identity/pem.ts";
import { createLogger } from "../../src/log.ts";
import { type RunningAgent, startAgent } from "../../src/main.ts";

const realm = "pki-e2e";
const NS = "e2e-pki";
const workDir = mkdtempSync(join(tmpdir(), "hopway-pki-e2e-"));
let edge: LocalEdge | undefined;
let agentToken: string;
const running = new Map<string, RunningAgent>();

function api(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  if (!edge) throw new Error("no edge");
  return adminApi(edge, realm, method, path, body);
}

async function launch(name: string, sync: "route-table" | "records", port: number): Promise<RunningAgent> {
  const config = parseConfig(
    stringifyYaml({
      edge: { url: edge!.url, realm, token: agentToken, lease_seconds: 30, wait_seconds: 10, sync },
      node: name,
      records: [
        {
          type: "node",
          name,
          metadata: { namespace_name: NS, kind: "relay" },
          gateway: [{ priority: 1, address: `ipv4://127.0.0.1:${port}` }],
        },
      ],
      relay: { listen: [`127.0.0.1:${port}`] },
      admin: { listen: "127.0.0.1:0" },
      data_dir: join(workDir, name),
      shutdown: { drain_seconds: 0 },
      log_level: "error",
    }),
    {},
  );
  const agent = await startAgent(config, createLogger("error", { node: name }));
  running.set(name, agent);
  return agent;
}

async function until<T>(what: string, get: () => T | undefined | false, timeoutMs: number): Promise<T> {
  const start = performance.now();
  for (;;) {
    const v = get();
    if (v !== undefined && v !== false) return v;
    if (performance.now() - start > timeoutMs) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A TLS 1.3 handshake with client certificates, both sides checking the peer's URI SAN. */
async function mutualHandshake(
  server: TlsMaterial,
  client: TlsMaterial,
): Promise<{ serverSaw: string; clientSaw: string }> {
  const peerName = (s: TLSSocket) => relayNameFromUri(realm, uriSans(s.getPeerX509Certificate()!)[0] ?? "") ?? "?";
  let serverSaw = "";
  const srv = createServer(
    {
      key: server.key,
      cert: server.certChain,
      ca: server.trustBundle,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: "TLSv1.3",
    },
    (s) => {
      serverSaw = peerName(s);
      s.end();
    },
  );
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  try {
    const clientSaw = await new Promise<string>((resolve, reject) => {
      const s = connect({
        host: "127.0.0.1",
        port: (srv.address() as AddressInfo).port,
        key: client.key,
        cert: client.certChain,
        ca: client.trustBundle,
        minVersion: "TLSv1.3",
        checkServerIdentity: () => undefined,
      });
      s.setTimeout(5_000, () => s.destroy(new Error("handshake timeout")));
      s.once("secureConnect", () => resolve(peerName(s)));
      s.once("error", reject);
      s.resume();
    });
    await until("server saw the client", () => serverSaw !== "", 5_000);
    return { serverSaw, clientSaw };
  } finally {
    srv.close();
  }
}

beforeAll(async () => {
  edge = await startLocalEdge();
  await createRealm(edge, realm, { allowLoopback: true });
  agentToken = String((await api("POST", "/tokens", { role: "agent", namespaces: [NS] })).token);
}, 60_000);

afterAll(async () => {
  for (const a of running.values()) await a.shutdown("test end").catch(() => {});
  await edge?.stop();
  rmSync(workDir, { recursive: true, force: true });
});

describe("relay identities from the edge", () => {
  it("issue, mutual TLS between relays, rotation through both sync modes, restart from data_dir", async () => {
    const a = await launch("relay-a", "route-table", await freePort("127.0.0.1"));
    const b = await launch("relay-b", "records", await freePort("127.0.0.1"));
    const ma = await until("relay-a certificate", () => a.identity.material(), 20_000);
    const mb = await until("relay-b certificate", () => b.identity.material(), 20_000);
    const edgeBundle = (await api("GET", "/trust-bundle")).trust_bundle as string[];
    expect(edgeBundle).toHaveLength(1);
    expect(ma.trustBundle).toEqual(edgeBundle);
    expect(mb.trustBundle).toEqual(edgeBundle);
    expect(ma.notAfter - Date.now()).toBeGreaterThan(23 * 3600_000);

    expect(await mutualHandshake(ma, mb)).toEqual({ serverSaw: "relay-b", clientSaw: "relay-a" });

    const metrics = await a.registry.metrics();
    expect(metrics).toMatch(/hopway_relay_certificate_renewals_total\{source="edge",result="success"\} 1/);
    const expiry = Number(/^hopway_relay_certificate_expiry_seconds (\S+)$/m.exec(metrics)?.[1]);
    expect(expiry).toBeGreaterThan(23 * 3600);
    expect(expiry).toBeLessThanOrEqual(24 * 3600);

    // A rotation reaches relay-a with its route table and relay-b with its /changes long-poll.
    const rotatedAt = performance.now();
    await api("POST", "/ca/rotate");
    await until("relay-a sees two CAs", () => a.identity.material()?.trustBundle.length === 2, 15_000);
    await until("relay-b sees two CAs", () => b.identity.material()?.trustBundle.length === 2, 15_000);
    expect(performance.now() - rotatedAt).toBeLessThan(5_000);
    // The old CA still has both relays' certificates out: it cannot be retired yet.
    await expect(api("POST", "/ca/retire-old")).rejects.toThrow(/409.*unexpired/);

    // A restart keeps the key and certificate from data_dir.
    await a.shutdown("restart");
    running.delete("relay-a");
    const again = await launch("relay-a", "route-table", await freePort("127.0.0.1"));
    const after = again.identity.material();
    expect(after?.key).toBe(ma.key);
    expect(after?.certChain).toBe(ma.certChain);
    expect(await again.registry.metrics()).toMatch(
      /hopway_relay_certificate_renewals_total\{source="edge",result="success"\} 0/,
    );
  });
});
