import { once } from "node:events";
import { mkdtempSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { CarryOutcome } from "../../../src/listeners/manager.ts";
import type { LinkFailure } from "../../../src/relay/links/index.ts";
import type { RelayLimits } from "../../../src/relay/relay.ts";
import {
  hop,
  linkRequest,
  listen,
  type Running,
  readAll,
  readAnswer,
  request,
  route,
  sleep,
  startByteCounter,
  startEcho,
  startRelay,
  startStalledTarget,
  until,
} from "./helpers.ts";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function relayTo(
  targetAddr: string,
  extra: Partial<Parameters<typeof startRelay>[0]> = {},
  alternatives: string[] = [],
): Promise<Running> {
  const r = await startRelay({
    name: "relay-a",
    routes: [
      route("relay-a", "app1", [hop("app1", targetAddr, alternatives)]),
      route("relay-a", "lonely", null),
      route("relay-a", "phone", [hop("phone", null)]),
    ],
    ...extra,
  });
  cleanups.push(() => r.close());
  return r;
}

/** relay-a → relay-b → target; relay-b admits relays only (no client CIDRs). */
async function chain(
  targetPort: number,
  bRoutesTo = "app1",
  bLimits: Partial<RelayLimits> = {},
  bReuseReadBuffers = true,
) {
  const b = await startRelay({
    name: "relay-b",
    clientCidrs: [],
    limits: bLimits,
    reuseReadBuffers: bReuseReadBuffers,
    routes: [route("relay-b", bRoutesTo, [hop(bRoutesTo, `ipv4://127.0.0.1:${targetPort}`)])],
    peers: ["relay-a"],
  });
  cleanups.push(() => b.close());
  const a = await startRelay({
    name: "relay-a",
    routes: [
      route("relay-a", "app1", [
        hop("relay-b", `ipv4://127.0.0.1:${b.port}`),
        hop("app1", `ipv4://127.0.0.1:${targetPort}`),
      ]),
    ],
  });
  cleanups.push(() => a.close());
  return { a, b };
}

async function echo(): Promise<number> {
  const e = await startEcho();
  cleanups.push(() => e.server.close());
  return e.port;
}

/** A link observer that keeps the reasons of failed links, in order. */
function linkFailures(): {
  failures: LinkFailure[];
  linkObserver: { linkOpened(): void; linkFailed(side: string, reason: LinkFailure): void };
} {
  const failures: LinkFailure[] = [];
  return {
    failures,
    linkObserver: { linkOpened: () => {}, linkFailed: (_side, reason) => failures.push(reason) },
  };
}

describe("relay: direct hop to a target", () => {
  it("answers 200 only once the target is connected, then carries bytes both ways", async () => {
    const port = await echo();
    const r = await relayTo(`ipv4://127.0.0.1:${port}`);
    const a = await request(r.port, `CONNECT app1:${port} HTTP/1.1\r\nHost: app1\r\n\r\n`);
    expect(a.status).toBe(200);
    expect(a.headers.get("hopway-path")).toBe("relay-a");
    a.socket.resume();
    a.socket.write("ping");
    const [got] = await once(a.socket, "data");
    expect(String(got)).toBe("ping");
    expect(r.relay.activeTunnels).toBe(1);
    a.socket.end();
    await once(a.socket, "close");
    await sleep(20);
    expect(r.relay.activeTunnels).toBe(0);
    expect(r.relay.counters.up.client).toBe(4);
    expect(r.relay.counters.down.client).toBe(4);
  });

  it("port 0 or no port means the target's own gateway port", async () => {
    const port = await echo();
    const r = await relayTo(`ipv4://127.0.0.1:${port}`);
    for (const authority of ["app1:0", "app1"]) {
      const a = await request(r.port, `CONNECT ${authority} HTTP/1.1\r\n\r\n`);
      expect(a.status).toBe(200);
      a.socket.destroy();
    }
  });

  it("forwards bytes the client pipelined after the head", async () => {
    const port = await echo();
    const r = await relayTo(`ipv4://127.0.0.1:${port}`);
    const a = await request(r.port, "CONNECT app1 HTTP/1.1\r\n\r\nearly");
    a.socket.resume();
    let text = a.rest.toString();
    while (text.length < 5) text += String((await once(a.socket, "data"))[0]);
    expect(text).toBe("early");
    a.socket.destroy();
  });

  it("reaches a target on a unix socket", async () => {
    const path = join(mkdtempSync(join(tmpdir(), "hopway-relay-")), "app.sock");
    const server = createServer((s) => s.pipe(s)).listen(path);
    await once(server, "listening");
    cleanups.push(() => server.close());
    const r = await relayTo(`unix://${path}`);
    const a = await request(r.port, "CONNECT app1:0 HTTP/1.1\r\n\r\n");
    expect(a.status).toBe(200);
    a.socket.resume();
    a.socket.write("x");
    expect(String((await once(a.socket, "data"))[0])).toBe("x");
    a.socket.destroy();
  });
});

describe("relay: refusals", () => {
  const cases: Array<[string, string, number, string]> = [
    ["malformed request line", "HELLO\r\n\r\n", 400, "bad_request"],
    ["target that is not a node name", "CONNECT Not_A_Name:80 HTTP/1.1\r\n\r\n", 400, "bad_request"],
    ["bad header line", "CONNECT app1:1 HTTP/1.1\r\nno-colon-here\r\n\r\n", 400, "bad_request"],
    ["a plain proxy GET", "GET http://app1:1/ HTTP/1.1\r\n\r\n", 405, "method_not_allowed"],
    ["an unknown node", "CONNECT nobody:80 HTTP/1.1\r\n\r\n", 404, "unknown_node"],
    [
      "an IP address as target (looked up as a name, never dialed)",
      "CONNECT 10.0.0.1:80 HTTP/1.1\r\n\r\n",
      404,
      "unknown_node",
    ],
    ["a node with no route", "CONNECT lonely:80 HTTP/1.1\r\n\r\n", 403, "forbidden"],
    ["a client (never dialed)", "CONNECT phone HTTP/1.1\r\n\r\n", 403, "forbidden"],
    ["the relay itself", "CONNECT relay-a:1 HTTP/1.1\r\n\r\n", 403, "forbidden"],
    ["a port that is not a gateway port", "CONNECT app1:22 HTTP/1.1\r\n\r\n", 403, "forbidden"],
    ["Hopway-Hops without relay credentials", "CONNECT app1 HTTP/1.1\r\nHopway-Hops: x\r\n\r\n", 407, "auth"],
  ];
  for (const [what, head, status, code] of cases) {
    it(`${status} for ${what}`, async () => {
      const port = await echo();
      const r = await relayTo(`ipv4://127.0.0.1:${port}`);
      const a = await request(r.port, head);
      expect(a.status).toBe(status);
      expect(a.headers.get("hopway-error")).toBe(code);
      expect(a.body.length).toBeGreaterThan(0);
      // The connection is closed after a refusal; the relay keeps serving others.
      await once(a.socket.resume(), "end");
      expect(r.relay.openConnections).toBeLessThanOrEqual(1);
    });
  }

  it("releases a refused connection as soon as the peer closes, even if it kept sending", async () => {
    const r = await relayTo("ipv4://127.0.0.1:1");
    const a = await request(r.port, "CONNECT nobody HTTP/1.1\r\n\r\n");
    expect(a.status).toBe(404);
    a.socket.write("more bytes after the refusal");
    a.socket.end();
    a.socket.resume();
    const t0 = Date.now();
    while (r.relay.openConnections > 0 && Date.now() - t0 < 1500) await sleep(10);
    // Well before the 2 s guard for peers that never read: the relay saw the FIN.
    expect(r.relay.openConnections).toBe(0);
  });

  it("431 for a head over 16 KiB, without waiting for its end", async () => {
    const r = await relayTo("ipv4://127.0.0.1:1");
    const a = await request(r.port, `CONNECT app1 HTTP/1.1\r\nX-Big: ${"a".repeat(17 * 1024)}`);
    expect(a.status).toBe(431);
  });

  it("408 when the head trickles in too slowly (slowloris)", async () => {
    const r = await relayTo("ipv4://127.0.0.1:1", { limits: { headerTimeoutMs: 150 } });
    const a = await request(r.port, "CONNECT app1 HTTP/1.1\r\n");
    expect(a.status).toBe(408);
  });

  it("a malformed request costs only its own connection", async () => {
    const port = await echo();
    const r = await relayTo(`ipv4://127.0.0.1:${port}`);
    const bad = connect({ port: r.port, host: "127.0.0.1" });
    bad.on("error", () => {});
    bad.end(Buffer.from([0, 1, 2, 255, 13, 10, 13, 10]));
    await once(bad.resume(), "close");
    const ok = await request(r.port, "CONNECT app1 HTTP/1.1\r\n\r\n");
    expect(ok.status).toBe(200);
    ok.socket.destroy();
  });

  it("502 when every address of the next hop refuses", async () => {
    const dead = createServer();
    const deadPort = await listen(dead);
    dead.close();
    const r = await relayTo(`ipv4://127.0.0.1:${deadPort}`);
    const a = await request(r.port, "CONNECT app1 HTTP/1.1\r\n\r\n");
    expect(a.status).toBe(502);
    expect(a.headers.get("hopway-reason")).toContain("ECONNREFUSED");
  });

  it("tries the hop's alternatives before giving up", async () => {
    const dead = createServer();
    const deadPort = await listen(dead);
    dead.close();
    const port = await echo();
    // Same port on a second loopback address: an alternative of the same gateway.
    const live = await startEcho();
    cleanups.push(() => live.server.close());
    const r = await relayTo(`ipv4://127.0.0.1:${deadPort}`, {}, [`ipv4://127.0.0.1:${live.port}`]);
    void port;
    const a = await request(r.port, "CONNECT app1:0 HTTP/1.1\r\n\r\n");
    expect(a.status).toBe(200);
    a.socket.destroy();
  });
});

describe("relay: client admission", () => {
  it("407 for a peer outside the client CIDRs without a token; a token admits it", async () => {
    const port = await echo();
    const r = await relayTo(`ipv4://127.0.0.1:${port}`, { clientCidrs: ["10.0.0.0/8"], clientTokens: ["s3cret"] });
    const no = await request(r.port, "CONNECT app1 HTTP/1.1\r\n\r\n");
    expect(no.status).toBe(407);
    expect(no.headers.get("proxy-authenticate")).toContain("Basic");
    const wrong = await request(r.port, "CONNECT app1 HTTP/1.1\r\nProxy-Authorization: Bearer nope\r\n\r\n");
    expect(wrong.status).toBe(407);
    const bearer = await request(r.port, "CONNECT app1 HTTP/1.1\r\nProxy-Authorization: Bearer s3cret\r\n\r\n");
    expect(bearer.status).toBe(200);
    bearer.socket.destroy();
    const basic = Buffer.from("app:s3cret").toString("base64");
    const b = await request(r.port, `CONNECT app1 HTTP/1.1\r\nProxy-Authorization: Basic ${basic}\r\n\r\n`);
    expect(b.status).toBe(200);
    b.socket.destroy();
  });

  it("407 for a plain CONNECT that claims to be a relay hop: relays only reach each other over links", async () => {
    const port = await echo();
    const r = await relayTo(`ipv4://127.0.0.1:${port}`);
    for (const extra of [
      "Hopway-Hops: relay-z\r\n",
      "Proxy-Authorization: Hopway-HMAC relay=relay-z, ts=1, nonce=00, sig=00\r\n",
      "Hopway-Hops: relay-z\r\nProxy-Authorization: Bearer whatever-token-at-all\r\n",
    ]) {
      const ans = await request(r.port, `CONNECT app1 HTTP/1.1\r\n${extra}\r\n`);
      expect(ans.status).toBe(407);
      expect(ans.body).toContain("mTLS links");
    }
    // The same client without the relay claims is admitted (loopback).
    const ok = await request(r.port, "CONNECT app1 HTTP/1.1\r\n\r\n");
    expect(ok.status).toBe(200);
    ok.socket.destroy();
  });

  it("508 for a loop and for the hop limit on a link stream", async () => {
    const port = await echo();
    const r = await relayTo(`ipv4://127.0.0.1:${port}`, { peers: ["relay-x", "h7"] });
    const loop = await linkRequest(r.port, "relay-x", "app1", "relay-a, relay-x");
    expect(loop.headers[":status"]).toBe(508);
    expect(loop.headers["hopway-error"]).toBe("loop");
    loop.close();
    const limit = await linkRequest(r.port, "h7", "app1", "h1, h2, h3, h4, h5, h6, h7");
    expect(limit.headers[":status"]).toBe(508);
    limit.close();
    const fine = await linkRequest(r.port, "h7", "app1", "h7");
    expect(fine.headers[":status"]).toBe(200);
    expect(fine.headers["hopway-path"]).toBe("relay-a");
    fine.close();
  });
});

describe("relay: several hops", () => {
  it("carries the hop to the next relay over a link and reports the path taken", async () => {
    const port = await echo();
    const { a, b } = await chain(port);
    const ans = await request(a.port, `CONNECT app1:${port} HTTP/1.1\r\n\r\n`);
    expect(ans.status).toBe(200);
    expect(ans.headers.get("hopway-path")).toBe("relay-a, relay-b");
    ans.socket.resume();
    ans.socket.write("through two");
    expect(String((await once(ans.socket, "data"))[0])).toBe("through two");
    ans.socket.destroy();
    await sleep(20);
    expect(b.relay.counters.up.relay).toBe(11);
  });

  it("passes the next relay's refusal through, naming where it arose", async () => {
    const port = await echo();
    const { a } = await chain(port, "other");
    const ans = await request(a.port, "CONNECT app1 HTTP/1.1\r\n\r\n");
    expect(ans.status).toBe(404);
    expect(ans.headers.get("hopway-failed-at")).toBe("relay-b");
  });

  it("504 when the next relay accepts but never answers", async () => {
    const silent = createServer(() => {});
    const silentPort = await listen(silent);
    cleanups.push(() => silent.close());
    const a = await startRelay({
      name: "relay-a",
      limits: { pathTimeoutMs: 200 },
      routes: [
        route("relay-a", "app1", [hop("relay-b", `ipv4://127.0.0.1:${silentPort}`), hop("app1", "ipv4://127.0.0.1:9")]),
      ],
    });
    cleanups.push(() => a.close());
    const ans = await request(a.port, "CONNECT app1 HTTP/1.1\r\n\r\n");
    expect(ans.status).toBe(504);
  });

  it("a next hop that does not answer as a Hopway relay is reported as such, failed at this relay", async () => {
    // What answers at the next hop's address when a route table names addresses that are not
    // this network's relays: another HTTP server, something that is not HTTP, or a closed door.
    const impostors: Record<string, (s: Socket) => void> = {
      "HTTP 403 without Hopway-Error": (s) => s.end("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"),
      "HTTP 200 without Hopway-Path": (s) => s.end("HTTP/1.1 200 OK\r\n\r\n"),
      "not an HTTP answer": (s) => s.end("SSH-2.0-OpenSSH_9.2\r\n"),
      "it closed the connection without an answer": (s) => s.end(),
    };
    for (const [what, answer] of Object.entries(impostors)) {
      const server = createServer((s) => {
        s.on("error", () => {});
        s.once("data", () => answer(s));
      });
      const port = await listen(server);
      cleanups.push(() => server.close());
      const a = await startRelay({
        name: "relay-a",
        routes: [
          route("relay-a", "app1", [hop("relay-b", `ipv4://127.0.0.1:${port}`), hop("app1", "ipv4://127.0.0.1:9")]),
        ],
      });
      cleanups.push(() => a.close());
      const ans = await request(a.port, "CONNECT app1 HTTP/1.1\r\n\r\n");
      expect(ans.status, what).toBe(502);
      expect(ans.headers.get("hopway-error"), what).toBe("next_hop_failed");
      expect(ans.headers.get("hopway-failed-at"), what).toBe("relay-a");
      // Relays speak TLS 1.3 + h2 on a link: whatever else answers fails the link handshake.
      expect(ans.headers.get("hopway-reason"), what).toMatch(
        new RegExp(
          `^next hop ipv4://127\\.0\\.0\\.1:${port} did not answer as a Hopway relay \\(.+\\); expected relay relay-b$`,
        ),
      );
      ans.socket.destroy();
    }
  });
});

describe("relay: streams", () => {
  it("carries a half-close each way", async () => {
    // The target answers only after the client's FIN, then closes its side.
    const { port, server } = await startByteCounter();
    cleanups.push(() => server.close());
    const r = await relayTo(`ipv4://127.0.0.1:${port}`);
    const a = await request(r.port, "CONNECT app1 HTTP/1.1\r\n\r\n");
    expect(a.status).toBe(200);
    a.socket.end("hello");
    expect(String(await readAll(a.socket))).toBe("got 5 bytes");
  });

  it("delivers the whole tail when the target answers and closes while the client reads slowly", async () => {
    const size = 8 * 1024 * 1024;
    const server = createServer({ allowHalfOpen: true }, (s) => {
      s.resume();
      s.on("end", () => s.end(Buffer.alloc(size, 1)));
    });
    const port = await listen(server);
    cleanups.push(() => server.close());
    // A buffer as large as the answer: the relay reads it all while the client reads nothing.
    const r = await relayTo(`ipv4://127.0.0.1:${port}`, { limits: { bufferBytes: size } });
    const a = await request(r.port, "CONNECT app1 HTTP/1.1\r\n\r\n");
    a.socket.end("go");
    // The target is done before the client reads anything: the relay must flush, not drop, what it holds.
    await sleep(300);
    expect((await readAll(a.socket)).length).toBe(size);
  });

  it("bounds what one tunnel buffers when the far side stops reading", async () => {
    const target = await startStalledTarget();
    cleanups.push(() => target.server.close());
    const bufferBytes = 64 * 1024;
    const r = await relayTo(`ipv4://127.0.0.1:${target.port}`, { limits: { bufferBytes } });
    const a = await request(r.port, "CONNECT app1 HTTP/1.1\r\n\r\n");
    const total = 64 * 1024 * 1024;
    const payload = Buffer.alloc(total, 7);
    a.socket.write(payload);
    await sleep(500);
    // What the relay read is bounded by its buffer plus kernel socket buffers, not by what was sent.
    const readByRelay = r.relay.counters.up.client;
    expect(readByRelay).toBeLessThan(16 * 1024 * 1024);
    expect(a.socket.writableLength).toBeGreaterThan(total - 20 * 1024 * 1024);
    // Then the reader resumes and everything arrives intact.
    let received = 0;
    const held = target.accepted();
    held?.on("data", (c: Buffer) => {
      received += c.length;
    });
    held?.resume();
    while (received < total) await sleep(20);
    expect(received).toBe(total);
    a.socket.destroy();
  });

  it("closes a tunnel idle for longer than the idle timeout", async () => {
    const port = await echo();
    const r = await relayTo(`ipv4://127.0.0.1:${port}`, { limits: { idleTimeoutMs: 150 } });
    const a = await request(r.port, "CONNECT app1 HTTP/1.1\r\n\r\n");
    a.socket.resume();
    const t0 = Date.now();
    await once(a.socket, "end");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(100);
    await sleep(20);
    expect(r.relay.activeTunnels).toBe(0);
  });
});

describe("relay: capacity and drain", () => {
  it("503 at once past the connection cap; established tunnels untouched", async () => {
    const port = await echo();
    const r = await relayTo(`ipv4://127.0.0.1:${port}`, { limits: { maxConnections: 1 } });
    const first = await request(r.port, "CONNECT app1 HTTP/1.1\r\n\r\n");
    expect(first.status).toBe(200);
    const second = await request(r.port, "CONNECT app1 HTTP/1.1\r\n\r\n");
    expect(second.status).toBe(503);
    first.socket.resume();
    first.socket.write("still here");
    expect(String((await once(first.socket, "data"))[0])).toBe("still here");
    first.socket.destroy();
  });

  it("caps connections per client address; other addresses and closed slots are unaffected", async () => {
    const port = await echo();
    const r = await relayTo(`ipv4://127.0.0.1:${port}`, { limits: { maxConnectionsPerSource: 2 } });
    const fromAddress = async (localAddress: string) => {
      const socket = connect({ port: r.port, host: "127.0.0.1", localAddress });
      socket.on("error", () => {});
      await once(socket, "connect");
      socket.write("CONNECT app1 HTTP/1.1\r\n\r\n");
      return readAnswer(socket);
    };
    const first = await fromAddress("127.0.0.1");
    const second = await fromAddress("127.0.0.1");
    expect([first.status, second.status]).toEqual([200, 200]);
    const third = await fromAddress("127.0.0.1");
    expect(third.status).toBe(503);
    expect(third.headers.get("hopway-error")).toBe("over_capacity");
    expect(third.body).toContain("source 127.0.0.1 at its limit of 2 connections");
    const elsewhere = await fromAddress("127.0.0.2");
    expect(elsewhere.status).toBe(200);
    // A closed tunnel frees its slot.
    first.socket.destroy();
    await sleep(30);
    const again = await fromAddress("127.0.0.1");
    expect(again.status).toBe(200);
    for (const a of [second, elsewhere, again]) a.socket.destroy();
  });

  it("counts handshakes against the per-source cap but not verified relay hops", async () => {
    const port = await echo();
    const { a, b } = await chain(port, "app1", { maxConnectionsPerSource: 1 });
    // Three tunnels through relay-a arrive at relay-b from one address: all pass, being relay hops.
    const tunnels = [];
    for (let i = 0; i < 3; i++) tunnels.push(await request(a.port, "CONNECT app1 HTTP/1.1\r\n\r\n"));
    expect(tunnels.map((t) => t.status)).toEqual([200, 200, 200]);
    // An unauthenticated peer from the same address holding a handshake open uses the one slot.
    const silent = connect({ port: b.port, host: "127.0.0.1" });
    silent.on("error", () => {});
    await once(silent, "connect");
    await sleep(30);
    expect((await request(b.port, "CONNECT app1 HTTP/1.1\r\n\r\n")).status).toBe(503);
    silent.destroy();
    for (const t of tunnels) t.socket.destroy();
  });

  it("destroys a socket refused at accept at a fixed deadline, however its peer keeps sending", async () => {
    const port = await echo();
    const r = await relayTo(`ipv4://127.0.0.1:${port}`, { limits: { maxConnectionsPerSource: 1 } });
    const held = await request(r.port, "CONNECT app1 HTTP/1.1\r\n\r\n");
    expect(held.status).toBe(200);
    const refused: Socket[] = [];
    for (let i = 0; i < 8; i++) {
      const a = await request(r.port, "CONNECT app1 HTTP/1.1\r\n\r\n");
      expect(a.status).toBe(503);
      refused.push(a.socket);
    }
    // A byte every 100 ms from each: a timer that every incoming byte restarts would never fire,
    // and each socket would hold a place under the listener's hard stop (server.maxConnections).
    const trickle = setInterval(() => {
      for (const s of refused) if (!s.destroyed) s.write("x");
    }, 100);
    cleanups.push(() => {
      clearInterval(trickle);
      for (const s of [held.socket, ...refused]) s.destroy();
    });
    const accepted = () =>
      new Promise<number>((resolve, reject) => r.server.getConnections((e, n) => (e ? reject(e) : resolve(n))));
    // One second after the 503, plus the sweep's eighth of it, with margin.
    await sleep(1_600);
    expect(await accepted()).toBe(1);
    expect(r.relay.openConnections).toBe(1);
  });

  it("counts a client as one source whether a listener reports it as IPv4 or IPv4-mapped IPv6", async () => {
    const port = await echo();
    const r = await relayTo(`ipv4://127.0.0.1:${port}`, { limits: { maxConnectionsPerSource: 1 } });
    // The same relay behind dual-stack listeners, where 127.0.0.1 reads ::ffff:127.0.0.1.
    const dual = createServer({ allowHalfOpen: true }, (s) => r.relay.handle(s));
    const dualPort = await listen(dual, "::");
    const outcomes: CarryOutcome[] = [];
    const carrying = createServer((s) =>
      r.relay.carry(s, { authority: `app1:${port}`, node: "app1", port }, (o) => outcomes.push(o)),
    );
    const carryingPort = await listen(carrying, "::");
    cleanups.push(
      () => dual.close(),
      () => carrying.close(),
    );
    const first = await request(r.port, "CONNECT app1 HTTP/1.1\r\n\r\n");
    expect(first.status).toBe(200);
    // A listener's connection (`carry`) from the same client is the same source.
    const viaListener = connect({ port: carryingPort, host: "127.0.0.1" });
    viaListener.on("error", () => {});
    await until("the listener's outcome", () => outcomes.length > 0, 3_000);
    expect(outcomes[0]).toMatchObject({ ok: false, reason: "over_capacity", status: 503 });
    const again = await request(dualPort, "CONNECT app1 HTTP/1.1\r\n\r\n");
    expect(again.status).toBe(503);
    expect(again.body).toContain("source 127.0.0.1 at its limit of 1 connections");
    for (const s of [first.socket, again.socket, viaListener]) s.destroy();
  });

  it("drain refuses new tunnels and waits for open ones", async () => {
    const port = await echo();
    const r = await relayTo(`ipv4://127.0.0.1:${port}`);
    const open = await request(r.port, "CONNECT app1 HTTP/1.1\r\n\r\n");
    r.relay.startDrain();
    expect((await request(r.port, "CONNECT app1 HTTP/1.1\r\n\r\n")).status).toBe(503);
    expect(await r.relay.waitIdle(50)).toBe(false);
    const idle = r.relay.waitIdle(5000);
    open.socket.end();
    open.socket.resume();
    expect(await idle).toBe(true);
  });
});

// A relay with links waits for a socket's first byte to tell a link from a CONNECT, on either read
// path: through the relay's own buffers (the default) or through Node's (reuseReadBuffers: false).
describe.each([true, false])("relay: the first byte decides, reuseReadBuffers %s", (reuseReadBuffers) => {
  it("a CONNECT is read as a head and carried", async () => {
    const port = await echo();
    const r = await relayTo(`ipv4://127.0.0.1:${port}`, { reuseReadBuffers });
    const a = await request(r.port, `CONNECT app1:${port} HTTP/1.1\r\n\r\n`);
    expect(a.status).toBe(200);
    a.socket.resume();
    a.socket.write("first");
    expect(String((await once(a.socket, "data"))[0])).toBe("first");
    a.socket.destroy();
  });

  it("a TLS record goes to the link server: a tunnel crosses a relay that reads this way", async () => {
    const port = await echo();
    const { a } = await chain(port, "app1", {}, reuseReadBuffers);
    const ans = await request(a.port, `CONNECT app1:${port} HTTP/1.1\r\n\r\n`);
    expect(ans.status).toBe(200);
    expect(ans.headers.get("hopway-path")).toBe("relay-a, relay-b");
    ans.socket.resume();
    ans.socket.write("over the link");
    expect(String((await once(ans.socket, "data"))[0])).toBe("over the link");
    ans.socket.destroy();
  });

  it("silence past the header deadline, before it is known to be a link or a CONNECT, gets a 408 and releases the connection", async () => {
    const r = await relayTo("ipv4://127.0.0.1:1", { reuseReadBuffers, limits: { headerTimeoutMs: 150 } });
    const socket = connect({ port: r.port, host: "127.0.0.1" });
    socket.on("error", () => {});
    await once(socket, "connect");
    const a = await readAnswer(socket);
    expect(a.status).toBe(408);
    await once(socket, "close");
    await sleep(20);
    expect(r.relay.openConnections).toBe(0);
  });

  // One deadline from accept covers the first byte and the head: a peer that waits until just
  // before it to send its first byte must not get a second one in full.
  it.each([
    ["a trusted source, header_timeout_ms", { limits: { headerTimeoutMs: 600 } }],
    ["an untrusted source, handshake_timeout_ms", { clientCidrs: [], limits: { handshakeTimeoutMs: 600 } }],
  ] as const)("%s counts from accept, the first byte included", async (_, extra) => {
    const r = await relayTo("ipv4://127.0.0.1:1", { reuseReadBuffers, ...extra });
    const socket = connect({ port: r.port, host: "127.0.0.1" });
    socket.on("error", () => {});
    await once(socket, "connect");
    const t0 = performance.now();
    await sleep(400);
    socket.write("CONNECT app1 HTTP/1.1\r\n");
    const a = await readAnswer(socket);
    const ms = performance.now() - t0;
    expect(a.status).toBe(408);
    // 600 ms and the sweep's 75 ms; a deadline restarted at the first byte would answer after 1,000 ms.
    expect(ms).toBeGreaterThanOrEqual(550);
    expect(ms).toBeLessThan(900);
    socket.destroy();
  });

  it.each([
    ["an untrusted source gets handshake_timeout_ms", { clientCidrs: [], limits: { handshakeTimeoutMs: 600 } }],
    ["a trusted source gets links.handshake_timeout_ms", { links: { handshakeTimeoutMs: 600 } }],
  ] as const)("a link's TLS handshake: %s, counted from accept", async (_, extra) => {
    const { failures, linkObserver } = linkFailures();
    const r = await relayTo("ipv4://127.0.0.1:1", { reuseReadBuffers, linkObserver, ...extra });
    const socket = connect({ port: r.port, host: "127.0.0.1" });
    socket.on("error", () => {});
    await once(socket, "connect");
    const t0 = performance.now();
    await sleep(400);
    // The start of a TLS record, then nothing: a handshake that never finishes.
    socket.write(Buffer.from([0x16, 0x03, 0x01]));
    await Promise.race([once(socket, "close"), sleep(3_000)]);
    const ms = performance.now() - t0;
    // 600 ms and the sweep's 75 ms. Before: the link handshake timeout again from the first byte.
    expect(ms).toBeGreaterThanOrEqual(550);
    expect(ms).toBeLessThan(900);
    expect(failures).toEqual(["timeout"]);
    await until("the connection released", () => r.relay.openConnections === 0, 1_000);
    socket.destroy();
  });

  it("the shorter cap of a link's TLS handshake is not a CONNECT's: a silent trusted client gets header_timeout_ms", async () => {
    const { failures, linkObserver } = linkFailures();
    const r = await relayTo("ipv4://127.0.0.1:1", {
      reuseReadBuffers,
      linkObserver,
      links: { handshakeTimeoutMs: 300 },
      limits: { headerTimeoutMs: 900 },
    });
    const silent = connect({ port: r.port, host: "127.0.0.1" });
    silent.on("error", () => {});
    await once(silent, "connect");
    const t0 = performance.now();
    const a = await readAnswer(silent);
    expect(a.status).toBe(408);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(850);
    silent.destroy();
    // A TLS first byte after the cap passed ends that opening at once, as a link timeout.
    const late = connect({ port: r.port, host: "127.0.0.1" });
    late.on("error", () => {});
    await once(late, "connect");
    const t1 = performance.now();
    await sleep(450);
    late.write(Buffer.from([0x16, 0x03, 0x01]));
    await Promise.race([once(late, "close"), sleep(3_000)]);
    expect(performance.now() - t1).toBeLessThan(800);
    expect(failures).toEqual(["timeout"]);
    late.destroy();
  });

  it("a connection that closes before its first byte is released", async () => {
    const r = await relayTo("ipv4://127.0.0.1:1", { reuseReadBuffers });
    const socket = connect({ port: r.port, host: "127.0.0.1" });
    socket.on("error", () => {});
    await once(socket, "connect");
    await sleep(20);
    expect(r.relay.openConnections).toBe(1);
    socket.end();
    await once(socket, "close");
    await sleep(20);
    expect(r.relay.openConnections).toBe(0);
  });
});
