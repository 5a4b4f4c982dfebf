// The edge-issued identity against a fake edge on loopback (node:http) that
// signs with the core's real X.509 code; time is a fake clock, so renewal,
// backoff and expiry are driven step by step.
import { createPrivateKey, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { EdgeIssuedIdentity, type RenewalResult } from "../../../src/identity/edge-issued.ts";
import { createIdentityMetrics } from "../../../src/identity/metrics.ts";
import { FakeClock } from "../edge/fake-clock.ts";
import { linesLogger } from "../edge/lines-logger.ts";
import { relayKeyPair, type TestCa, testCa } from "./helpers.ts";

const HOUR = 3_600_000;

interface FakeEdge {
  url: string;
  requests: { path: string; auth: string | undefined; publicKey: string }[];
  mode: "ok" | "refuse" | "unregistered" | "wrong-key" | "garbage";
  bundle: string[];
  ca: TestCa;
  lifetimeMs: number;
  close(): Promise<void>;
}

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

async function fakeEdge(clock: FakeClock): Promise<FakeEdge> {
  const ca = await testCa("r");
  const edge: FakeEdge = {
    url: "",
    requests: [],
    mode: "ok",
    bundle: [ca.pem],
    ca,
    lifetimeMs: HOUR,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    let text = "";
    for await (const chunk of req) text += chunk;
    const publicKey = (JSON.parse(text) as { public_key: string }).public_key;
    edge.requests.push({ path: req.url ?? "", auth: req.headers.authorization, publicKey });
    if (edge.mode === "unregistered") {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { code: "unknown_node", message: "no record named 'relay-a'", path: "name" } }));
      return;
    }
    if (edge.mode === "refuse") {
      res.writeHead(403, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { code: "namespace_forbidden", message: "no" } }));
      return;
    }
    if (edge.mode === "garbage") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{not json");
      return;
    }
    const key = edge.mode === "wrong-key" ? relayKeyPair().publicPem : publicKey;
    const cert = await edge.ca.issue(key, "relay-a", clock.now(), edge.lifetimeMs);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        certificate: cert,
        chain: [cert],
        trust_bundle: edge.bundle,
        not_after: new X509Certificate(cert).validTo,
        uri: "spiffe://r/relay/relay-a",
        serial: new X509Certificate(cert).serialNumber,
      }),
    );
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((err) => {
      res.writeHead(500);
      res.end(String(err));
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  edge.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return edge;
}

function setup(edge: FakeEdge, clock: FakeClock, dataDir = mkdtempSync(join(tmpdir(), "hopway-id-"))) {
  const results: RenewalResult[] = [];
  const { log, lines } = linesLogger();
  const registry = new Registry();
  let identity: EdgeIssuedIdentity | undefined;
  const metrics = createIdentityMetrics(registry, {
    source: "edge",
    notAfter: () => identity?.notAfter,
    notBefore: () => identity?.notBefore,
    now: () => clock.now(),
  });
  identity = new EdgeIssuedIdentity({
    url: edge.url,
    realm: "r",
    token: "agent-token",
    node: "relay-a",
    dataDir,
    clock,
    random: () => 0.5,
    backoffBaseMs: 1_000,
    backoffCapMs: 60_000,
    log,
    onRenewal: (r) => {
      results.push(r);
      metrics.renewal(r);
    },
  });
  let changes = 0;
  identity.onChange(() => changes++);
  return { identity, results, registry, dataDir, lines, changes: () => changes };
}

/** Fires due timers, then waits for the request they started. */
async function advance(clock: FakeClock, identity: EdgeIssuedIdentity, ms: number): Promise<void> {
  clock.advance(ms);
  await identity.inFlightRequest;
}

describe("EdgeIssuedIdentity", () => {
  it("makes a 0600 key, obtains a certificate for it and reuses both after a restart", async () => {
    const clock = new FakeClock();
    clock.t = Date.now();
    const edge = await fakeEdge(clock);
    const a = setup(edge, clock);
    expect(a.identity.material()).toBeUndefined();
    await a.identity.start();
    clock.advance(0);
    await a.identity.renewNow();
    // start() asked at once (timer 0) and renewNow() shared that request.
    expect(edge.requests).toHaveLength(1);
    expect(edge.requests[0]!.path).toBe("/v1/realms/r/relays/relay-a/certificate");
    expect(edge.requests[0]!.auth).toBe("Bearer agent-token");
    const m = a.identity.material()!;
    expect(m.trustBundle).toEqual([edge.ca.pem]);
    expect(m.notAfter).toBe(Math.floor((clock.now() + HOUR) / 1000) * 1000);
    const leaf = new X509Certificate(m.certChain);
    expect(leaf.subjectAltName).toBe("URI:spiffe://r/relay/relay-a");
    const keyFile = join(a.dataDir, "identity", "relay.key");
    expect(readFileSync(keyFile, "utf8")).toBe(m.key);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(leaf.checkPrivateKey(createPrivateKey(m.key))).toBe(true);
    // The request carried the public key only.
    expect(edge.requests[0]!.publicKey).toContain("BEGIN PUBLIC KEY");
    expect(edge.requests[0]!.publicKey).not.toContain("PRIVATE");
    expect(a.changes()).toBe(1);
    expect(a.results).toEqual(["success"]);
    await a.identity.flush();
    a.identity.stop();

    // A restart with the same data_dir: same key, the persisted certificate, no request.
    const b = setup(edge, clock, a.dataDir);
    await b.identity.start();
    expect(b.identity.material()).toEqual(m);
    expect(edge.requests).toHaveLength(1);
    // Its renewal is scheduled at about two thirds of the life.
    expect(clock.pending.some((ms) => ms > 0.55 * HOUR && ms < 0.7 * HOUR)).toBe(true);
    b.identity.stop();
  });

  it("renews at about two thirds of the life, not before", async () => {
    const clock = new FakeClock();
    clock.t = Date.now();
    const edge = await fakeEdge(clock);
    const { identity, changes } = setup(edge, clock);
    await identity.start();
    await advance(clock, identity, 0);
    const first = identity.material()!;
    // notBefore is back-dated 5 min; with random 0.5 the renewal is at 65 % of the 65-min span.
    await advance(clock, identity, 0.55 * HOUR);
    expect(edge.requests).toHaveLength(1);
    await advance(clock, identity, 0.2 * HOUR);
    expect(edge.requests).toHaveLength(2);
    const second = identity.material()!;
    expect(second.certChain).not.toBe(first.certChain);
    expect(second.key).toBe(first.key);
    expect(second.notAfter).toBeGreaterThan(first.notAfter);
    expect(changes()).toBe(2);
    identity.stop();
  });

  it("at start, a node whose record is not registered yet is said at info, not warned about, and retried", async () => {
    const clock = new FakeClock();
    clock.t = Date.now();
    const edge = await fakeEdge(clock);
    edge.mode = "unregistered";
    const { identity, results, lines } = setup(edge, clock);
    await identity.start();
    await advance(clock, identity, 0);
    expect(results).toEqual(["refused"]);
    expect(lines).toEqual(["info relay certificate not issued yet: this node's record is not registered"]);
    // Registered meanwhile: the retry, within the first backoff step, gets the certificate.
    edge.mode = "ok";
    await advance(clock, identity, 1_000);
    expect(results).toEqual(["refused", "success"]);
    expect(identity.material()).toBeDefined();
    // Once it holds one, a record gone from the edge is a failure to warn about.
    edge.mode = "unregistered";
    await advance(clock, identity, 0.75 * HOUR);
    expect(lines.at(-1)).toBe("warn relay certificate request failed; keeping the current certificate");
    identity.stop();
  });

  it("keeps the current certificate while the edge is down, backs off with a cap, and expires it", async () => {
    const clock = new FakeClock();
    clock.t = Date.now();
    const edge = await fakeEdge(clock);
    const { identity, results, registry, changes } = setup(edge, clock);
    await identity.start();
    await advance(clock, identity, 0);
    const held = identity.material()!;
    await edge.close();

    await advance(clock, identity, 0.75 * HOUR); // renewal time: fails
    expect(results.at(-1)).toBe("unreachable");
    expect(identity.material()).toEqual(held);
    const delays: number[] = [];
    for (let i = 0; i < 10; i++) {
      const next = Math.min(...clock.pending.filter((ms) => ms > 0 && ms < held.notAfter - clock.now()));
      delays.push(next);
      await advance(clock, identity, next);
    }
    // Full jitter at random 0.5: half of min(cap, base·2^n).
    expect(delays.slice(0, 4)).toEqual([500, 1_000, 2_000, 4_000]);
    expect(Math.max(...delays)).toBe(30_000);
    expect(identity.material()).toEqual(held);
    const text = await registry.metrics();
    expect(text).toMatch(/hopway_relay_certificate_renewals_total\{source="edge",result="unreachable"\} 11/);
    expect(text).toMatch(/hopway_relay_certificate_renewals_total\{source="edge",result="success"\} 1/);
    expect(text).toMatch(/hopway_relay_certificate_expiry_seconds \d+/);
    // The fake edge issues for an hour; leaves start 5 minutes early (clock skew between relays).
    expect(text).toMatch(/^hopway_relay_certificate_lifetime_seconds (3899|3900|3901)$/m);

    // Past notAfter the material is gone, and listeners hear about it.
    const before = changes();
    clock.advance(held.notAfter - clock.now());
    expect(identity.material()).toBeUndefined();
    expect(changes()).toBe(before + 1);
    expect(await registry.metrics()).toMatch(/hopway_relay_certificate_expiry_seconds -?0/);
    identity.stop();
  });

  it("takes the trust bundle from route tables, and renews when its CA left the bundle", async () => {
    const clock = new FakeClock();
    clock.t = Date.now();
    const edge = await fakeEdge(clock);
    const { identity, changes } = setup(edge, clock);
    await identity.start();
    await advance(clock, identity, 0);
    const next = await testCa("r", 2);
    identity.updateTrustBundle([edge.ca.pem, next.pem]);
    expect(identity.material()!.trustBundle).toEqual([edge.ca.pem, next.pem]);
    expect(changes()).toBe(2);
    identity.updateTrustBundle([edge.ca.pem, next.pem]);
    identity.updateTrustBundle([]);
    expect(changes()).toBe(2);
    expect(edge.requests).toHaveLength(1);
    await identity.flush();
    const persisted = JSON.parse(readFileSync(join(identityDir(identity), "certificate.json"), "utf8"));
    expect(persisted.trust_bundle).toHaveLength(2);

    // The old CA was retired: this relay's leaf no longer chains to the bundle, so it renews now.
    edge.ca = next;
    edge.bundle = [next.pem];
    identity.updateTrustBundle([next.pem]);
    await advance(clock, identity, 0);
    expect(edge.requests).toHaveLength(2);
    const leaf = new X509Certificate(identity.material()!.certChain);
    expect(leaf.verify(new X509Certificate(next.pem).publicKey)).toBe(true);
    identity.stop();
  });

  it("never arms a Node timer past 2^31-1 ms, even for a 30-day certificate", async () => {
    const clock = new FakeClock();
    clock.t = Date.now();
    const edge = await fakeEdge(clock);
    edge.lifetimeMs = 30 * 24 * HOUR;
    const { identity, changes } = setup(edge, clock);
    await identity.start();
    await advance(clock, identity, 0);
    expect(identity.material()!.notAfter - clock.now()).toBeGreaterThan(2 ** 31);
    // Node would fire a longer timer at once: the expiry watch would report an expiry at once.
    expect(Math.max(...clock.pending)).toBeLessThanOrEqual(2 ** 31 - 1);
    await advance(clock, identity, 2 ** 31 - 1);
    expect(Math.max(...clock.pending)).toBeLessThanOrEqual(2 ** 31 - 1);
    expect(identity.material()).toBeDefined();
    expect(changes()).toBe(2); // the first certificate and its renewal at ~two thirds, no expiry
    identity.stop();
  });

  it.each([
    ["refuse", "refused"],
    ["wrong-key", "invalid"],
    ["garbage", "invalid"],
  ] as const)("an edge answer of kind %s is not adopted (%s) and retried", async (mode, result) => {
    const clock = new FakeClock();
    clock.t = Date.now();
    const edge = await fakeEdge(clock);
    edge.mode = mode;
    const { identity, results } = setup(edge, clock);
    await identity.start();
    await advance(clock, identity, 0);
    expect(results).toEqual([result]);
    expect(identity.material()).toBeUndefined();
    edge.mode = "ok";
    await advance(clock, identity, 1_000);
    expect(results).toEqual([result, "success"]);
    expect(identity.material()).toBeDefined();
    identity.stop();
  });
});

function identityDir(identity: EdgeIssuedIdentity): string {
  return join((identity as unknown as { o: { dataDir: string } }).o.dataDir, "identity");
}
