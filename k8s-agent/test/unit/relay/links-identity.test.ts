// Impostors on relay links: every one is refused, with its reason in the
// metrics and the log, and a relay whose record left the route table loses its
// links with that table update.
import { createHash } from "node:crypto";
import { once } from "node:events";
import { connect as tlsConnect } from "node:tls";
import { relayUri, type TlsMaterial } from "@hopway/core/identity";
import { afterEach, describe, expect, it } from "vitest";
import { staticIdentityForTest, testPki } from "../../../../test/support/identity.ts";
import type { LinkFailure, LinkObserver, LinkSide } from "../../../src/relay/links/index.ts";
import { cutOff, h2Link, hop, route, sleep, startEcho, startRelay, TEST_REALM, tunnel } from "./helpers.ts";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Recorded extends LinkObserver {
  failures: Array<[LinkSide, LinkFailure]>;
  opened: LinkSide[];
  logs: Array<{ msg: string; fields: Record<string, unknown> }>;
  log: (level: "info" | "warn" | "debug", msg: string, fields: Record<string, unknown>) => void;
}

function recorder(): Recorded {
  const r: Recorded = {
    failures: [],
    opened: [],
    logs: [],
    linkOpened: (side) => r.opened.push(side),
    linkFailed: (side, reason) => r.failures.push([side, reason]),
    log: (_level, msg, fields) => r.logs.push({ msg, fields }),
  };
  return r;
}

async function echoAddr(): Promise<string> {
  const e = await startEcho();
  cleanups.push(() => e.server.close());
  return `ipv4://127.0.0.1:${e.port}`;
}

/** `back` routes app1 to the echo target; `front` routes app1 through `back` (a link). */
async function pair(opts: { front?: TlsMaterial; back?: TlsMaterial; backKnowsFront?: boolean } = {}) {
  const target = await echoAddr();
  const backRec = recorder();
  const frontRec = recorder();
  const back = await startRelay({
    name: "back",
    routes: [route("back", "app1", [hop("app1", target)])],
    peers: opts.backKnowsFront === false ? [] : ["front"],
    linkObserver: backRec,
    log: backRec.log,
    ...(opts.back ? { identity: staticIdentityForTest(opts.back) } : {}),
  });
  cleanups.push(() => back.close());
  const front = await startRelay({
    name: "front",
    routes: [route("front", "app1", [hop("back", `ipv4://127.0.0.1:${back.port}`), hop("app1", target)])],
    peers: ["back"],
    linkObserver: frontRec,
    log: frontRec.log,
    links: { redialInitialMs: 1 },
    ...(opts.front ? { identity: staticIdentityForTest(opts.front) } : {}),
  });
  cleanups.push(() => front.close());
  return { front, back, frontRec, backRec };
}

async function waitFor(check: () => boolean, ms = 2000): Promise<void> {
  const until = performance.now() + ms;
  while (!check()) {
    if (performance.now() > until) throw new Error("condition not met in time");
    await sleep(10);
  }
}

describe("relay links: impostors are refused", () => {
  it("the honest pair links up (the baseline every refusal below differs from)", async () => {
    const { front, backRec } = await pair();
    const ans = await tunnel(front.port);
    expect(ans.status).toBe(200);
    expect(ans.headers.get("hopway-path")).toBe("front, back");
    expect(backRec.failures).toEqual([]);
    expect(backRec.opened).toEqual(["accept"]);
    ans.socket.destroy();
  });

  it("no client certificate: refused as no_certificate", async () => {
    const { back, backRec } = await pair();
    const s = tlsConnect({
      host: "127.0.0.1",
      port: back.port,
      ca: testPki(TEST_REALM).caCert,
      ALPNProtocols: ["h2"],
      checkServerIdentity: () => undefined,
    });
    s.on("error", () => {});
    await once(s, "close");
    await waitFor(() => backRec.failures.length > 0);
    expect(backRec.failures).toEqual([["accept", "no_certificate"]]);
    expect(backRec.logs.some((l) => l.msg === "relay link refused" && l.fields.reason === "no_certificate")).toBe(true);
  });

  it("a certificate from another realm's CA: refused as untrusted, the client learns where", async () => {
    const impostor = testPki(TEST_REALM, "another-ca").issue("front");
    const { front, backRec, frontRec } = await pair({ front: impostor });
    const ans = await tunnel(front.port);
    expect(ans.status).toBe(502);
    expect(ans.headers.get("hopway-failed-at")).toBe("front");
    // The impostor cannot even verify the honest relay (its trust bundle is its own CA).
    expect(frontRec.failures).toEqual([["dial", "untrusted"]]);
    expect(backRec.opened).toEqual([]);
  });

  it("another realm's CA dialling an honest relay: the honest relay refuses it as untrusted", async () => {
    // The impostor trusts the honest CA, but its own certificate is from another CA.
    const other = testPki(TEST_REALM, "another-ca").issue("front");
    const impostor = { ...other, trustBundle: [testPki(TEST_REALM).caCert] };
    const { front, backRec } = await pair({ front: impostor });
    expect((await tunnel(front.port)).status).toBe(502);
    await waitFor(() => backRec.failures.length > 0);
    expect(backRec.failures).toEqual([["accept", "untrusted"]]);
    expect(backRec.logs.find((l) => l.msg === "relay link refused")?.fields.reason).toBe("untrusted");
  });

  it("an expired certificate: refused as expired", async () => {
    const expired = testPki(TEST_REALM).issue("front", { expired: true });
    const { front, backRec } = await pair({ front: expired });
    expect((await tunnel(front.port)).status).toBe(502);
    await waitFor(() => backRec.failures.length > 0);
    expect(backRec.failures).toEqual([["accept", "expired"]]);
  });

  it("a valid certificate naming a different relay than the one dialled: refused as peer_identity", async () => {
    const { front, frontRec, backRec } = await pair({ back: testPki(TEST_REALM).issue("someone-else") });
    const ans = await tunnel(front.port);
    expect(ans.status).toBe(502);
    expect(frontRec.failures).toEqual([["dial", "peer_identity"]]);
    expect(frontRec.logs.find((l) => l.msg === "link dial failed")?.fields.reason).toBe("peer_identity");
    expect(backRec.opened).toEqual([]);
  });

  it("a certificate of the right name in another realm's trust domain: refused as peer_identity", async () => {
    const wrongDomain = testPki(TEST_REALM).issue("front", { uri: relayUri("other-realm", "front") });
    const { front, backRec } = await pair({ front: wrongDomain });
    expect((await tunnel(front.port)).status).toBe(502);
    await waitFor(() => backRec.failures.length > 0);
    expect(backRec.failures).toEqual([["accept", "peer_identity"]]);
  });

  it("a relay not in the route table: refused as unknown_peer", async () => {
    const { front, backRec } = await pair({ backKnowsFront: false });
    expect((await tunnel(front.port)).status).toBe(502);
    await waitFor(() => backRec.failures.length > 0);
    expect(backRec.failures).toEqual([["accept", "unknown_peer"]]);
  });

  it("a certified relay the table lists but whose dial this relay's gateways refuse: refused as unknown_peer", async () => {
    const { front, back, backRec } = await pair();
    const table = back.table.table;
    if (table === undefined) throw new Error("back has no table");
    // What the edge sends: front is a node of the realm, but no gateway of back accepts it.
    back.table.set({ ...table, version: 2, peers: { any: false, nodes: ["someone-else"] } });
    expect((await tunnel(front.port)).status).toBe(502);
    await waitFor(() => backRec.failures.length > 0);
    expect(backRec.failures).toEqual([["accept", "unknown_peer"]]);
    // Listed among the peers, front links up.
    back.table.set({ ...table, version: 3, peers: { any: false, nodes: ["front"] } });
    await waitFor(() => front.relay.linksByPeer().size === 0);
    let status = 0;
    for (const until = performance.now() + 2000; status !== 200 && performance.now() < until; await sleep(20)) {
      const ans = await tunnel(front.port);
      status = ans.status;
      ans.socket.destroy();
    }
    expect(status).toBe(200);
  });

  it("a relay cannot claim another relay's place in hopway-hops", async () => {
    const { back } = await pair();
    const m = testPki(TEST_REALM).issue("front");
    const session = h2Link(back.port, m);
    cleanups.push(() => session.destroy());
    const ask = async (hops: string) => {
      const st = session.request({ ":method": "CONNECT", ":authority": "app1", "hopway-hops": hops });
      st.on("error", () => {});
      const [h] = (await once(st, "response")) as [Record<string, string | number>];
      st.destroy();
      return h;
    };
    const spoofed = await ask("front, someone-else");
    expect(spoofed[":status"]).toBe(407);
    expect(spoofed["hopway-error"]).toBe("auth");
    expect((await ask("someone-else, front"))[":status"]).toBe(200);
  });

  it("a relay whose record was deleted loses its links with that table update", async () => {
    const { front, back, backRec } = await pair();
    const ans = await tunnel(front.port);
    expect(ans.status).toBe(200);
    ans.socket.resume();
    expect(back.relay.linksByPeer().get("front")).toBe(1);
    // The tunnel over that link is cut at the application (its connection is reset).
    const closed = cutOff(ans.socket);
    // The edge's next table no longer has `front`.
    back.table.set({
      node: "back",
      version: 2,
      routes: (back.table.table?.routes ?? []).filter((r) => r.to !== "front"),
    });
    expect(back.relay.linksByPeer().get("front")).toBeUndefined();
    expect(backRec.failures).toEqual([["accept", "unknown_peer"]]);
    await closed;
    // And it cannot come back: front dials again once the short backoff its dropped link left has
    // passed (docs/links.md), and back refuses it; every tunnel meanwhile is a 502.
    const until = performance.now() + 2000;
    while (backRec.failures.length < 2 && performance.now() < until) {
      expect((await tunnel(front.port)).status).toBe(502);
      if (backRec.failures.length < 2) await sleep(20);
    }
    expect(backRec.failures[1]).toEqual(["accept", "unknown_peer"]);
  });

  it("a renewed certificate is used for new handshakes; links already up stay", async () => {
    const pki = testPki(TEST_REALM);
    const identity = staticIdentityForTest(pki.issue("back"));
    const target = await echoAddr();
    const back = await startRelay({
      name: "back",
      identity,
      routes: [route("back", "app1", [hop("app1", target)])],
      peers: ["front"],
    });
    cleanups.push(() => back.close());
    const mk = (name: string) =>
      startRelay({
        name,
        routes: [route(name, "app1", [hop("back", `ipv4://127.0.0.1:${back.port}`), hop("app1", target)])],
        peers: ["back"],
      });
    const front = await mk("front");
    cleanups.push(() => front.close());
    const before = await tunnel(front.port);
    expect(before.status).toBe(200);
    before.socket.resume();
    // Rotation to a certificate that names another relay: new handshakes present it (and fail the name check).
    identity.set(pki.issue("renamed"));
    expect(back.relay.linksByPeer().get("front")).toBe(1);
    before.socket.write("still up");
    expect(String((await once(before.socket, "data"))[0])).toBe("still up");
    const front2 = await startRelay({
      name: "front2",
      routes: [route("front2", "app1", [hop("back", `ipv4://127.0.0.1:${back.port}`), hop("app1", target)])],
      peers: ["back"],
      identity: staticIdentityForTest(pki.issue("front")),
    });
    cleanups.push(() => front2.close());
    expect((await tunnel(front2.port)).status).toBe(502);
    before.socket.destroy();
  });
});

describe("relay links: rotation under traffic", () => {
  it("a CA rotation and certificate renewals during sustained traffic break no tunnel and lose no byte", async () => {
    const oldCa = testPki(TEST_REALM);
    const newCa = testPki(TEST_REALM, "rotated");
    const both = [...oldCa.issue("back").trustBundle, ...newCa.issue("back").trustBundle];
    const backId = staticIdentityForTest(oldCa.issue("back"));
    const frontId = staticIdentityForTest(oldCa.issue("front"));
    const target = await echoAddr();
    const back = await startRelay({
      name: "back",
      identity: backId,
      routes: [route("back", "app1", [hop("app1", target)])],
      peers: ["front", "late"],
    });
    cleanups.push(() => back.close());
    const front = await startRelay({
      name: "front",
      identity: frontId,
      routes: [route("front", "app1", [hop("back", `ipv4://127.0.0.1:${back.port}`), hop("app1", target)])],
      peers: ["back"],
    });
    cleanups.push(() => front.close());

    // 20 tunnels, each echoing 2 MiB of numbered blocks in small, spaced writes: they are all
    // mid-stream while the identities change under them.
    const streams = await Promise.all(
      Array.from({ length: 20 }, async (_, n) => {
        const t = await tunnel(front.port);
        expect(t.status).toBe(200);
        const sent = createHash("sha256");
        const got = createHash("sha256");
        let received = t.rest.length;
        got.update(t.rest);
        t.socket.on("data", (c: Buffer) => {
          got.update(c);
          received += c.length;
        });
        t.socket.resume();
        const done = once(t.socket, "end");
        const pump = (async () => {
          for (let i = 0; i < 128; i++) {
            const block = Buffer.alloc(16 * 1024, n);
            block.writeUInt32BE(i, 0);
            sent.update(block);
            if (!t.socket.write(block)) await once(t.socket, "drain");
            if (i % 16 === 0) await sleep(20);
          }
          t.socket.end();
        })();
        return { pump, done, sent, got, received: () => received };
      }),
    );
    // Step by step, as docs/identity.md's rotation does it: trust both CAs, renew onto the new
    // one, then drop the old. Each step is followed by a new tunnel on the same links.
    const steps: Array<() => void> = [
      () => {
        backId.set({ ...(backId.material() as TlsMaterial), trustBundle: both });
        frontId.set({ ...(frontId.material() as TlsMaterial), trustBundle: both });
      },
      () => {
        backId.set({ ...newCa.issue("back"), trustBundle: both });
        frontId.set({ ...newCa.issue("front"), trustBundle: both });
      },
      () => {
        backId.set(newCa.issue("back"));
        frontId.set(newCa.issue("front"));
      },
    ];
    for (const step of steps) {
      await sleep(50);
      step();
      const more = await tunnel(front.port);
      expect(more.status).toBe(200);
      more.socket.destroy();
    }
    for (const s of streams) await s.pump;
    for (const s of streams) await s.done;
    for (const s of streams) {
      expect(s.received()).toBe(128 * 16 * 1024);
      expect(s.got.digest("hex")).toBe(s.sent.digest("hex"));
    }
    // A relay that only knows the new CA now links to `back` with a new handshake.
    const late = await startRelay({
      name: "late",
      identity: staticIdentityForTest(newCa.issue("late")),
      routes: [route("late", "app1", [hop("back", `ipv4://127.0.0.1:${back.port}`), hop("app1", target)])],
      peers: ["back"],
    });
    cleanups.push(() => late.close());
    const fresh = await tunnel(late.port);
    expect(fresh.status).toBe(200);
    fresh.socket.destroy();
  }, 60_000);
});
