// Relay links over real loopback sockets: tunnels through three relays chained
// by mTLS links (each framing: hopway-mux/1 and HTTP/2), link reuse, bulk integrity, half-close, and drain.
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { readdirSync } from "node:fs";
import {
  type ClientHttp2Session,
  createSecureServer,
  type IncomingHttpHeaders,
  type ServerHttp2Stream,
} from "node:http2";
import { connect, createServer, type Server, type Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { afterEach, describe, expect, it } from "vitest";
import { dialLinkForTest, relayIdentityForTest } from "../../../../test/support/identity.ts";
import { linkBuffersForTest } from "../../../src/relay/links/buffers.ts";
import type { LinkProtocol } from "../../../src/relay/links/index.ts";
import {
  ALPN_MUX,
  encodeHeaders,
  FrameType,
  frameHeader,
  HEADER_BYTES,
  MAX_FRAME,
  wordsFrame,
} from "../../../src/relay/links/mux/frame.ts";
import { MuxSession, type MuxSettings, type MuxStream } from "../../../src/relay/links/mux/session.ts";
import { nativeSplicer } from "../../../src/relay/native-splice.ts";
import { errorResponse, establishedResponse } from "../../../src/relay/protocol.ts";
import { writtenThroughForTest } from "../../../src/relay/pump.ts";
import {
  blackholePort,
  cutOff,
  h2Link,
  hop,
  LINK_PROTOCOLS,
  linkRequest,
  listen,
  type Running,
  readAll,
  readAnswer,
  receiveHash,
  route,
  sendRandom,
  sleep,
  startByteCounter,
  startChain,
  startEcho,
  startRelay,
  startStalledTarget,
  TEST_REALM,
  tlsNeighbourForTest,
  tunnel,
  until,
} from "./helpers.ts";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function chain(
  protocol: LinkProtocol,
  targetPort: number,
  extra: Parameters<typeof startChain>[2] = {},
): Promise<Running[]> {
  const relays = await startChain(["r2", "r3", "r1"], `ipv4://127.0.0.1:${targetPort}`, {
    ...extra,
    links: { ...extra.links, protocol },
  });
  for (const r of relays) cleanups.push(() => r.close());
  return relays;
}

/** A tunnel through the three-relay chain to `server` (listening from now on), answered 200. */
async function chainTunnel(
  protocol: LinkProtocol,
  server: Server,
  extra: Parameters<typeof startChain>[2] = {},
): Promise<Awaited<ReturnType<typeof tunnel>>> {
  const port = await listen(server);
  cleanups.push(() => server.close());
  const [r2] = (await chain(protocol, port, extra)) as [Running];
  const ans = await tunnel(r2.port);
  expect(ans.status).toBe(200);
  return ans;
}

async function echo(): Promise<number> {
  const e = await startEcho();
  cleanups.push(() => e.server.close());
  return e.port;
}

describe.each(LINK_PROTOCOLS)("relay links (%s): tunnels through three relays", (protocol) => {
  it("app → r2 → r3 → r1 → target works, and the second tunnel reuses the links", async () => {
    const port = await echo();
    const ups: Array<Record<string, unknown>> = [];
    const log = (_level: string, msg: string, fields: Record<string, unknown>) => {
      if (msg === "link up") ups.push(fields);
    };
    const [r2, r3, r1] = (await chain(protocol, port, { log })) as [Running, Running, Running];
    const first = await tunnel(r2.port);
    expect(first.status).toBe(200);
    expect(first.headers.get("hopway-path")).toBe("r2, r3, r1");
    first.socket.resume();
    first.socket.write("hello over links");
    expect(String((await once(first.socket, "data"))[0])).toBe("hello over links");

    const second = await tunnel(r2.port);
    expect(second.status).toBe(200);
    second.socket.resume();
    second.socket.write("again");
    expect(String((await once(second.socket, "data"))[0])).toBe("again");
    // One TLS handshake per hop for both tunnels.
    expect(r2.relay.linkPool?.handshakes).toBe(1);
    expect(r3.relay.linkPool?.handshakes).toBe(1);
    expect(r1.relay.linkPool?.handshakes).toBe(0);
    expect(r3.relay.linkStreamsByPeer().get("r2")).toBe(2);
    expect(r1.relay.linksByPeer().get("r3")).toBe(1);
    // The dialling side's setting chose the framing of both links (r2 → r3, r3 → r1).
    expect(ups.map((u) => [u.peer, u.protocol])).toEqual([
      ["r3", protocol === "mux" ? "hopway-mux/1" : "h2"],
      ["r1", protocol === "mux" ? "hopway-mux/1" : "h2"],
    ]);
    first.socket.destroy();
    second.socket.destroy();
  });
});

const BULK_MIB = Number(process.env.HOPWAY_LINKS_BULK_MIB ?? "100");

describe.each(LINK_PROTOCOLS)("relay links (%s): the pool", (protocol) => {
  it("opens a second link to a neighbour once the first is at its concurrent-stream limit", async () => {
    const port = await echo();
    const [r2, r3] = (await chain(protocol, port, { links: { maxConcurrentStreams: 2 } })) as [Running, Running];
    const open = [];
    for (let i = 0; i < 5; i++) {
      const t = await tunnel(r2.port);
      expect(t.status).toBe(200);
      open.push(t.socket);
    }
    // 5 tunnels, 2 streams per link: 3 links from r2 to r3, and from r3 to r1.
    expect(r2.relay.linksByPeer().get("r3")).toBe(3);
    expect(r3.relay.linksByPeer().get("r2")).toBe(3);
    expect(r2.relay.linkPool?.handshakes).toBe(3);
    for (const s of open) s.destroy();
  });

  it("streams on an accepted link count against the connection cap", async () => {
    const port = await echo();
    // r3 holds its accepted link (one connection) and one stream: the cap of 2 is reached.
    const [r2] = (await chain(protocol, port, { limits: { maxConnections: 2 } })) as [Running, Running];
    const first = await tunnel(r2.port);
    expect(first.status).toBe(200);
    const second = await tunnel(r2.port);
    expect(second.status).toBe(503);
    expect(second.headers.get("hopway-failed-at")).toBe("r3");
    first.socket.destroy();
    await sleep(50);
    const third = await tunnel(r2.port);
    expect(third.status).toBe(200);
    third.socket.destroy();
  });

  it("a neighbour that drops the link before answering did not answer: its next address is tried", async () => {
    const port = await echo();
    const target = `ipv4://127.0.0.1:${port}`;
    // Two addresses of relay r3: the first does not know r2 (it closes the link once TLS is up,
    // which r2 learns only after it sent its stream), the second does.
    const stranger = await startRelay({ name: "r3", routes: [route("r3", "app1", [hop("app1", target)])] });
    const r3 = await startRelay({
      name: "r3",
      routes: [route("r3", "app1", [hop("app1", target)])],
      peers: ["r2"],
      links: { protocol },
    });
    cleanups.push(
      () => stranger.close(),
      () => r3.close(),
    );
    const r2 = await startRelay({
      name: "r2",
      routes: [
        route("r2", "app1", [
          hop("r3", `ipv4://127.0.0.1:${stranger.port}`, [`ipv4://127.0.0.1:${r3.port}`]),
          hop("app1", target),
        ]),
      ],
      peers: ["r3"],
      links: { protocol },
    });
    cleanups.push(() => r2.close());
    const t = await tunnel(r2.port);
    expect(t.status).toBe(200);
    expect(t.headers.get("hopway-path")).toBe("r2, r3");
    t.socket.destroy();
  });

  it("closes a dialled link that carried no stream for the idle time", async () => {
    const port = await echo();
    const [r2, r3] = (await chain(protocol, port, { links: { idleTimeoutMs: 150 } })) as [Running, Running];
    const t = await tunnel(r2.port);
    expect(t.status).toBe(200);
    await sleep(300);
    // A tunnel keeps its link open however long it is quiet.
    expect(r2.relay.linksByPeer().get("r3")).toBe(1);
    t.socket.destroy();
    await sleep(400);
    expect(r2.relay.linksByPeer().size).toBe(0);
    expect(r3.relay.linksByPeer().size).toBe(0);
    // The next tunnel dials a new one.
    const again = await tunnel(r2.port);
    expect(again.status).toBe(200);
    expect(r2.relay.linkPool?.handshakes).toBe(2);
    again.socket.destroy();
  });

  it("closes a link whose PING goes unanswered, and the next tunnel dials a new one", async () => {
    const port = await echo();
    // r2 reaches r3 through a TCP forwarder the test can freeze (a path that silently drops).
    const [r3] = (await startChain(["r3"], `ipv4://127.0.0.1:${port}`, { peers: ["r2"], links: { protocol } })) as [
      Running,
    ];
    cleanups.push(() => r3.close());
    let frozen = false;
    const pairs: Socket[] = [];
    const forwarder = createServer((inbound) => {
      const outbound = connect({ port: r3.port, host: "127.0.0.1" });
      pairs.push(inbound, outbound);
      for (const [a, b] of [
        [inbound, outbound],
        [outbound, inbound],
      ] as const) {
        a.on("data", (c: Buffer) => {
          if (!frozen) b.write(c);
        });
        a.on("error", () => b.destroy());
        a.on("close", () => b.destroy());
      }
    });
    const fport = await listen(forwarder);
    cleanups.push(() => {
      for (const s of pairs) s.destroy();
      forwarder.close();
    });
    const failures: string[] = [];
    const r2 = await startRelay({
      name: "r2",
      routes: [route("r2", "app1", [hop("r3", `ipv4://127.0.0.1:${fport}`), hop("app1", `ipv4://127.0.0.1:${port}`)])],
      peers: ["r3"],
      links: { protocol, pingIntervalMs: 100, pingTimeoutMs: 150 },
      linkObserver: { linkOpened: () => {}, linkFailed: (_side, reason) => failures.push(reason) },
    });
    cleanups.push(() => r2.close());
    const t = await tunnel(r2.port);
    expect(t.status).toBe(200);
    t.socket.resume();
    await sleep(350);
    expect(failures).toEqual([]); // answered pings keep it
    frozen = true;
    const ended = cutOff(t.socket);
    await sleep(500);
    expect(failures).toContain("ping_timeout");
    expect(r2.relay.linksByPeer().size).toBe(0);
    await ended; // the tunnel on it was cut at the application
    frozen = false;
    const again = await tunnel(r2.port);
    expect(again.status).toBe(200);
    again.socket.destroy();
  });
});

describe.each(LINK_PROTOCOLS)("relay links (%s): data path", (protocol) => {
  it(`${BULK_MIB} MiB each way through three relays arrive intact (sha256)`, { timeout: 120_000 }, async () => {
    // A target that sends its own random stream while it hashes what it receives.
    let targetGot: Promise<{ bytes: number; sha: string }> | undefined;
    let targetSent: Promise<string> | undefined;
    const server = createServer({ allowHalfOpen: true }, (s) => {
      targetGot = receiveHash(s);
      targetSent = sendRandom(s, BULK_MIB * 1024 * 1024);
    });
    const ans = await chainTunnel(protocol, server);
    const throughBefore = writtenThroughForTest() + pipedWritten();
    const outBefore = linkBuffersForTest().out;
    const started = performance.now();
    const got = receiveHash(ans.socket, ans.rest);
    const sent = await sendRandom(ans.socket, BULK_MIB * 1024 * 1024);
    const [down, up] = await Promise.all([got, targetGot]);
    const seconds = (performance.now() - started) / 1000;
    expect(up?.bytes).toBe(BULK_MIB * 1024 * 1024);
    expect(up?.sha).toBe(sent);
    expect(down.bytes).toBe(BULK_MIB * 1024 * 1024);
    expect(down.sha).toBe(await targetSent);
    console.log(`links bulk: ${BULK_MIB} MiB each way through three relays in ${seconds.toFixed(1)} s`);
    if (protocol === "mux") {
      // The end relays wrote most of both directions from the links' read buffers straight to the
      // descriptors: the first relay to its client socket (pump.ts, directWriter), the last to its
      // target's native connection (NativePipe); every reused buffer the rest took came back.
      expect(writtenThroughForTest() + pipedWritten() - throughBefore).toBeGreaterThan(BULK_MIB * 1024 * 1024);
      for (let i = 0; i < 50 && linkBuffersForTest().out > outBefore; i++) await sleep(20);
      expect(linkBuffersForTest().out).toBeLessThanOrEqual(outBefore);
    }
  });

  it("carries a half-close each way", async () => {
    // Client → target FIN: the target answers only after it, then closes its side.
    const { port, server } = await startByteCounter();
    cleanups.push(() => server.close());
    const [r2] = (await chain(protocol, port)) as [Running];
    const a = await tunnel(r2.port);
    expect(a.status).toBe(200);
    a.socket.end("twelve bytes");
    expect(String(await readAll(a.socket))).toBe("got 12 bytes");

    // Target → client FIN first: the client still sends after it, and the target still gets it.
    let gotAfterFin: Promise<Buffer> | undefined;
    const server2 = createServer({ allowHalfOpen: true }, (s) => {
      s.end("bye first");
      gotAfterFin = readAll(s);
    });
    const port2 = await listen(server2);
    cleanups.push(() => server2.close());
    const [r2b] = (await chain(protocol, port2)) as [Running];
    const b = await tunnel(r2b.port);
    expect(b.status).toBe(200);
    expect(String(Buffer.concat([b.rest, await readAll(b.socket)]))).toBe("bye first");
    b.socket.end("still talking");
    await sleep(50);
    expect(String(await gotAfterFin)).toBe("still talking");
  });

  it("SIGTERM drain: GOAWAY stops new tunnels over a link, open ones finish, then the relay is idle", async () => {
    const port = await echo();
    const [r2, r3] = (await chain(protocol, port)) as [Running, Running];
    const open = await tunnel(r2.port);
    expect(open.status).toBe(200);
    open.socket.resume();
    r3.relay.startDrain();
    await sleep(50);
    // The open tunnel still works after GOAWAY.
    open.socket.write("still here");
    expect(String((await once(open.socket, "data"))[0])).toBe("still here");
    // A new one cannot use the draining relay.
    const refused = await tunnel(r2.port);
    expect(refused.status).toBe(502);
    expect(await r3.relay.waitIdle(100)).toBe(false);
    const idle = r3.relay.waitIdle(5000);
    open.socket.end();
    expect(await idle).toBe(true);
    expect(r3.relay.linksByPeer().size).toBe(0);
  });
});

/** Bytes written to native pipes in this process so far (0 where the addon is not built). */
function pipedWritten(): number {
  return nativeSplicer()?.listeners().stats().pipedWritten ?? 0;
}

/** A target that reads nothing for its first 400 ms, then hashes all it receives. */
function stallingTarget(): { server: Server; received(): Promise<{ bytes: number; sha: string }> } {
  let got: Promise<{ bytes: number; sha: string }> | undefined;
  const server = createServer((s) => {
    s.pause();
    setTimeout(() => {
      got = receiveHash(s);
    }, 400);
  });
  return {
    server,
    async received() {
      for (let i = 0; i < 100 && got === undefined; i++) await sleep(20);
      return got as Promise<{ bytes: number; sha: string }>;
    },
  };
}

describe("relay links (mux): the last relay's writes to its target", () => {
  it("a target that stops reading (native connection): what the kernel does not take is copied and written after it, in order", {
    timeout: 60_000,
  }, async () => {
    // The last relay dials its target natively (NativePipe) and writes each record straight to
    // the descriptor while the kernel takes it; with the target stalled the kernel's buffers fill,
    // and the rest is copied in C and written after it, the link stream paused meanwhile.
    const hub = nativeSplicer()?.listeners();
    if (hub === undefined) throw new Error("the native addon is not built");
    const total = 24 * 1024 * 1024;
    const stalled = stallingTarget();
    const ans = await chainTunnel("mux", stalled.server);
    const before = hub.stats();
    const sent = await sendRandom(ans.socket, total);
    const got = await stalled.received();
    expect(got.bytes).toBe(total);
    expect(got.sha).toBe(sent);
    const after = hub.stats();
    expect(after.pipedWritten - before.pipedWritten).toBe(total);
    expect(after.pipedCopied - before.pipedCopied).toBeGreaterThan(0);
    expect(after.pipedCopied - before.pipedCopied).toBeLessThan(total);
    ans.socket.destroy();
    for (let i = 0; i < 50 && hub.stats().waiting > 0; i++) await sleep(20);
    expect(hub.stats().waiting).toBe(0);
  });

  it("a target that stops reading (socket, no native addon): what the kernel does not take is copied and written after it, in order", {
    timeout: 60_000,
  }, async () => {
    // The last relay writes each record straight to the target's socket while the kernel takes
    // it; with the target stalled the kernel's buffers fill, and the rest of a record goes
    // through a reused buffer and the socket's queue. Both paths carry parts of one transfer.
    const total = 24 * 1024 * 1024;
    const stalled = stallingTarget();
    const ans = await chainTunnel("mux", stalled.server, { nativeSplice: false });
    const throughBefore = writtenThroughForTest();
    // HTTP/2 streams never hand their reused buffers back (buffers.ts): count from here.
    const { pooledCopies: copiesBefore, out: outBefore } = linkBuffersForTest();
    const sent = await sendRandom(ans.socket, total);
    const got = await stalled.received();
    expect(got.bytes).toBe(total);
    expect(got.sha).toBe(sent);
    expect(writtenThroughForTest() - throughBefore).toBeGreaterThan(0);
    expect(linkBuffersForTest().pooledCopies - copiesBefore).toBeGreaterThan(0);
    for (let i = 0; i < 50 && linkBuffersForTest().out > outBefore; i++) await sleep(20);
    expect(linkBuffersForTest().out).toBeLessThanOrEqual(outBefore);
  });
});

describe("relay links: framing negotiation", () => {
  it("a relay set to mux links with a relay of an earlier release (h2 only) over h2", async () => {
    const port = await echo();
    // The earlier release's accepting side: TLS 1.3 with a client certificate, ALPN h2 only, CONNECT streams.
    const m = relayIdentityForTest(TEST_REALM, "r3").material();
    if (!m) throw new Error("no test identity");
    const offered: string[][] = [];
    const ups: Array<Record<string, unknown>> = [];
    const old = createSecureServer({
      key: m.key,
      cert: m.certChain,
      ca: m.trustBundle,
      requestCert: true,
      minVersion: "TLSv1.3",
      ALPNCallback: ({ protocols }) => {
        offered.push(protocols);
        return protocols.includes("h2") ? "h2" : undefined;
      },
    });
    old.on("stream", (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
      // The relay answering names only itself; r2 puts its own name in front.
      expect(headers["hopway-hops"]).toBe("r2");
      stream.respond({ ":status": 200, "hopway-path": "r3" });
      const up = connect({ port, host: "127.0.0.1" });
      stream.pipe(up).pipe(stream);
      stream.on("error", () => up.destroy());
    });
    const oldPort = await listen(old as unknown as import("node:net").Server);
    cleanups.push(() => old.close());
    const r2 = await startRelay({
      name: "r2",
      routes: [
        route("r2", "app1", [hop("r3", `ipv4://127.0.0.1:${oldPort}`), hop("app1", `ipv4://127.0.0.1:${port}`)]),
      ],
      peers: ["r3"],
      links: { protocol: "mux" },
      log: (_level, msg, fields) => {
        if (msg === "link up") ups.push(fields);
      },
    });
    cleanups.push(() => r2.close());
    const t = await tunnel(r2.port);
    expect(t.status).toBe(200);
    expect(t.headers.get("hopway-path")).toBe("r2, r3");
    t.socket.resume();
    t.socket.write("over h2");
    expect(String((await once(t.socket, "data"))[0])).toBe("over h2");
    // It offered both, mux first; the earlier relay chose h2.
    expect(offered[0]).toEqual(["hopway-mux/1", "h2"]);
    expect(ups.map((u) => [u.peer, u.protocol])).toEqual([["r3", "h2"]]);
    t.socket.destroy();
  });
});

/**
 * A neighbour "r3" holding a valid certificate of the realm that answers every stream as `answer`
 * says (a compromised relay): an accepting hopway-mux/1 session of its own over TLS, announcing
 * `maxConcurrentStreams` (100 unless given); `onLink` runs for every TLS connection it accepts.
 */
async function compromisedNeighbour(
  answer: (stream: MuxStream, n: number) => void,
  opts: { maxConcurrentStreams?: number; onLink?: () => void } = {},
): Promise<number> {
  let n = 0;
  const server = await tlsNeighbourForTest("r3", ALPN_MUX, (socket) => {
    opts.onLink?.();
    const session = new MuxSession(socket, "server", {
      maxConcurrentStreams: opts.maxConcurrentStreams ?? 100,
      streamWindowBytes: 65_535,
    });
    session.on("error", () => {});
    session.on("stream", (stream: MuxStream) => {
      stream.on("error", () => {});
      answer(stream, n++);
    });
    cleanups.push(() => session.destroy());
  });
  cleanups.push(server.close);
  return server.port;
}

describe("relay links: a compromised neighbour", () => {
  it("an answer outside the refusal table is a 502 at the application, and the relay carries on", async () => {
    const statuses = [201, 150, 0, 600, 299];
    const port = await compromisedNeighbour((stream, n) =>
      stream.respond({ ":status": statuses[n % statuses.length] as number }, { endStream: true }),
    );
    const r2 = await startRelay({
      name: "r2",
      routes: [route("r2", "app1", [hop("r3", `ipv4://127.0.0.1:${port}`), hop("app1", "ipv4://127.0.0.1:9")])],
      peers: ["r1", "r3"],
      links: { protocol: "mux" },
    });
    cleanups.push(() => r2.close());
    for (const status of statuses.slice(0, 4)) {
      const t = await tunnel(r2.port);
      expect(t.status, `next relay answered ${status}`).toBe(502);
      expect(t.headers.get("hopway-error")).toBe("next_hop_failed");
      expect(t.headers.get("hopway-reason")).toContain(`answered with status ${status}`);
      t.socket.destroy();
    }
    // Upstream over HTTP/2, where passing such a status on would throw inside the stream's handler.
    const up = await linkRequest(r2.port, "r1", "app1", "r1");
    cleanups.push(up.close);
    expect(up.headers[":status"]).toBe(502);
    expect(up.headers["hopway-error"]).toBe("next_hop_failed");
    // Still serving.
    const after = await tunnel(r2.port);
    expect(after.status).toBe(502);
    after.socket.destroy();
  });

  it("a refused stream is reset behind its answer: what the peer sends after it is not kept", async () => {
    const port = await echo();
    const r2 = await startRelay({
      name: "r2",
      routes: [route("r2", "app1", [hop("app1", `ipv4://127.0.0.1:${port}`)])],
      peers: ["r1"],
      links: { protocol: "mux" },
    });
    cleanups.push(() => r2.close());
    const raw = await rawLink(r2.port, "r1", ALPN_MUX);
    const got: Buffer[] = [];
    raw.on("data", (c: Buffer) => got.push(c));
    raw.write(wordsFrame(FrameType.SETTINGS, 0, [100, 1 << 20, MAX_FRAME]));
    // The link itself.
    await until("the link", () => r2.relay.openConnections === 1);
    const tunnels = 20;
    const payload = Buffer.alloc(60_000, 7);
    for (let i = 0; i < tunnels; i++) {
      const id = 2 * i + 1;
      // Refused at once (400): the authority is not a name.
      const h = encodeHeaders({ ":method": "CONNECT", ":authority": "not a name!", "hopway-hops": "r1" });
      raw.write(Buffer.concat([frameHeader(FrameType.OPEN, 0, id, h.length), h]));
      raw.write(Buffer.concat([frameHeader(FrameType.DATA, 0, id, payload.length), payload]));
    }
    const seen = () => {
      const out = { replies: 0, resets: 0 };
      const bytes = Buffer.concat(got);
      for (let at = 0; at + HEADER_BYTES <= bytes.length; at += HEADER_BYTES + bytes.readUInt32BE(at + 6)) {
        if (bytes[at] === FrameType.REPLY) out.replies++;
        if (bytes[at] === FrameType.RST) out.resets++;
      }
      return out;
    };
    await until("every refusal and its reset", () => seen().resets === tunnels);
    expect(seen().replies).toBe(tunnels);
    // Every stream gave its place in the tunnel pool back.
    await until("the streams to close", () => r2.relay.openConnections === 1);
    // The link is still good for a real tunnel.
    const h = encodeHeaders({ ":method": "CONNECT", ":authority": "app1", "hopway-hops": "r1" });
    raw.write(Buffer.concat([frameHeader(FrameType.OPEN, 0, 2 * tunnels + 1, h.length), h]));
    await until("its answer", () => seen().replies === tunnels + 1);
  });
});

/**
 * A neighbour "r3" that announces one stream per link and answers every stream 200 and holds it
 * open, over `protocol`; `links()` is how many TLS connections reached it.
 */
async function oneStreamNeighbour(protocol: LinkProtocol): Promise<{ port: number; links: () => number }> {
  let links = 0;
  if (protocol === "mux") {
    const port = await compromisedNeighbour((stream) => stream.respond({ ":status": 200, "hopway-path": "r3" }), {
      maxConcurrentStreams: 1,
      onLink: () => links++,
    });
    return { port, links: () => links };
  }
  const m = relayIdentityForTest(TEST_REALM, "r3").material();
  if (!m) throw new Error("no test identity");
  const server = createSecureServer({
    key: m.key,
    cert: m.certChain,
    ca: m.trustBundle,
    requestCert: true,
    minVersion: "TLSv1.3",
    settings: { maxConcurrentStreams: 1 },
  });
  server.on("secureConnection", () => links++);
  server.on("session", (session) => {
    session.on("error", () => {});
    cleanups.push(() => session.destroy());
  });
  server.on("stream", (stream: ServerHttp2Stream) => {
    stream.on("error", () => {});
    stream.respond({ ":status": 200, "hopway-path": "r3" });
  });
  const port = await listen(server as unknown as Server);
  cleanups.push(() => server.close());
  return { port, links: () => links };
}

describe.each(LINK_PROTOCOLS)("relay links (%s): links per neighbour", (protocol) => {
  it("a neighbour allowing one stream per link gets max_links_per_peer links; the next tunnels fail at once", async () => {
    const neighbour = await oneStreamNeighbour(protocol);
    const failures: string[] = [];
    const warnings: Array<Record<string, unknown>> = [];
    const r2 = await startRelay({
      name: "r2",
      routes: [
        route("r2", "app1", [hop("r3", `ipv4://127.0.0.1:${neighbour.port}`), hop("app1", "ipv4://127.0.0.1:9")]),
      ],
      peers: ["r3"],
      links: { protocol, maxLinksPerPeer: 3 },
      linkObserver: { linkOpened: () => {}, linkFailed: (side, reason) => failures.push(`${side} ${reason}`) },
      log: (level, msg, fields) => {
        if (level === "warn" && msg.startsWith("link limit")) warnings.push(fields);
      },
    });
    cleanups.push(() => r2.close());
    const open: Socket[] = [];
    for (let i = 0; i < 3; i++) {
      const t = await tunnel(r2.port);
      expect(t.status).toBe(200);
      open.push(t.socket);
    }
    expect(neighbour.links()).toBe(3);
    for (let i = 0; i < 5; i++) {
      const t = await tunnel(r2.port);
      // Refused by this relay, not after the path timeout (504) and not by the neighbour.
      expect(t.status).toBe(502);
      expect(t.headers.get("hopway-error")).toBe("next_hop_failed");
      expect(t.headers.get("hopway-reason")).toContain("peer_streams_exhausted");
      expect(t.headers.get("hopway-failed-at")).toBe("r2");
      t.socket.destroy();
    }
    expect(neighbour.links()).toBe(3);
    expect(r2.relay.linkPool?.handshakes).toBe(3);
    expect(r2.relay.linksByPeer().get("r3")).toBe(3);
    expect(failures).toEqual(Array(5).fill("dial peer_streams_exhausted"));
    // One warning for the burst, with what the neighbour announced.
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({
      peer: "r3",
      reason: "peer_streams_exhausted",
      links: 3,
      max_links_per_peer: 3,
      peer_max_concurrent_streams: 1,
    });
    // A tunnel that ends gives its stream back: the next one takes it, without a dial. (Reset: this
    // neighbour never ends its side, so a FIN would leave the stream half open.)
    open.shift()?.resetAndDestroy();
    await until("its stream to close", () => r2.relay.linkStreamsByPeer().get("r3") === 2);
    const again = await tunnel(r2.port);
    expect(again.status).toBe(200);
    expect(neighbour.links()).toBe(3);
    for (const s of [...open, again.socket]) s.destroy();
  });
});

describe("relay links: links a neighbour opens", () => {
  it("past max_links_per_peer from one peer, a new link is closed; the peer's other links carry on", async () => {
    const port = await echo();
    const { r2, failures, refusals } = await relayRecordingRefusals({
      name: "r2",
      routes: [route("r2", "app1", [hop("app1", `ipv4://127.0.0.1:${port}`)])],
      peers: ["r1"],
      links: { maxLinksPerPeer: 2 },
    });
    // Each linkRequest is a link of its own (an HTTP/2 session as relay r1).
    const a = await linkRequest(r2.port, "r1", "app1", "r1");
    cleanups.push(a.close);
    const b = await linkRequest(r2.port, "r1", "app1", "r1");
    cleanups.push(b.close);
    expect(a.headers[":status"]).toBe(200);
    expect(b.headers[":status"]).toBe(200);
    await expect(linkRequest(r2.port, "r1", "app1", "r1")).rejects.toThrow();
    expect(failures).toEqual(["accept peer_link_limit"]);
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toMatchObject({ reason: "peer_link_limit" });
    expect(r2.relay.linksByPeer().get("r1")).toBe(2);
    // The refused link's connection is gone: two links and their two streams remain.
    await until("the refused link to go", () => r2.relay.openConnections === 4);
    a.stream.write("still carried");
    expect(String((await once(a.stream, "data"))[0])).toBe("still carried");
    // Once one of its links closes, the peer may open another. Its stream first: an accepted
    // HTTP/2 link whose peer sent GOAWAY stays until its streams end.
    b.stream.close();
    await once(b.stream, "close");
    b.close();
    await until("its link to close", () => r2.relay.linksByPeer().get("r1") === 1);
    const c = await linkRequest(r2.port, "r1", "app1", "r1");
    cleanups.push(c.close);
    expect(c.headers[":status"]).toBe(200);
  });
});

describe("relay links: refused links and the log", () => {
  it("every refusal counts in the metric; the log takes 20 per 10 s", async () => {
    const { r2, failures, refusals } = await relayRecordingRefusals({
      name: "r2",
      routes: [],
      peers: ["r1"],
    });
    // A relay of the realm that r2's table does not know, retrying as fast as its handshakes go.
    for (let i = 0; i < 30; i++) await expect(linkRequest(r2.port, "rz", "app1", "rz")).rejects.toThrow();
    expect(failures).toEqual(Array(30).fill("accept unknown_peer"));
    expect(refusals).toHaveLength(20);
    expect(refusals[0]).toMatchObject({ reason: "unknown_peer" });
  });
});

describe("relay links: a tenant's share of the tunnel pool", () => {
  it("the relays of one unshared namespace hold at most max_connections_per_namespace; the operator's relays and other tenants still get in", async () => {
    const port = await echo();
    const warnings: Array<Record<string, unknown>> = [];
    const { r2, failures, refusals } = await relayRecordingRefusals(
      {
        name: "r2",
        routes: [route("r2", "app1", [hop("app1", `ipv4://127.0.0.1:${port}`)])],
        // t1 and t2 are one tenant's own relays, t3 another's; r1 is the operator's (no tenant).
        peers: ["r1", "t1", "t2", "t3"],
        tenants: [
          { namespace: "tenant-a", nodes: ["t1", "t2"] },
          { namespace: "tenant-b", nodes: ["t3"] },
        ],
        limits: { maxConnections: 40, maxConnectionsPerNamespace: 5 },
      },
      (msg, fields) => {
        if (msg.startsWith("tunnel refused: namespace")) warnings.push(fields);
      },
    );
    // Each linkRequest is a link of its own with one stream: two places of the tenant's five.
    const a = await linkRequest(r2.port, "t1", "app1", "t1");
    cleanups.push(a.close);
    const b = await linkRequest(r2.port, "t2", "app1", "t2");
    cleanups.push(b.close);
    expect(a.headers[":status"]).toBe(200);
    expect(b.headers[":status"]).toBe(200);
    expect(r2.relay.tenantHeldForTest("tenant-a")).toBe(4);
    // The fifth place goes to a third link; its stream finds the share full: 503 namespace_limit,
    // naming the namespace and the setting (not over_capacity: the relay is not full).
    const c = await linkRequest(r2.port, "t1", "app1", "t1");
    cleanups.push(c.close);
    expect(c.headers[":status"]).toBe(503);
    expect(c.headers["hopway-error"]).toBe("namespace_limit");
    expect(String(c.headers["hopway-reason"])).toContain("namespace 'tenant-a' holds its limit of 5");
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ namespace: "tenant-a", peer: "t1", max_connections_per_namespace: 5 });
    // A sixth connection, a link of either of its relays, is closed right after its handshake.
    await expect(linkRequest(r2.port, "t2", "app1", "t2")).rejects.toThrow();
    expect(failures).toEqual(["accept namespace_limit"]);
    expect(refusals[0]).toMatchObject({ reason: "namespace_limit", peer: "t2" });
    expect(String(refusals[0]?.detail)).toContain("max_connections_per_namespace");
    expect(r2.relay.largestNamespaceShare).toBe(5);
    // Another tenant and the operator's relay are not held back by it.
    for (const [asRelay, tenant] of [
      ["t3", "tenant-b"],
      ["r1", undefined],
    ] as const) {
      const other = await linkRequest(r2.port, asRelay, "app1", asRelay);
      cleanups.push(other.close);
      expect(other.headers[":status"]).toBe(200);
      other.stream.write(`carried for ${asRelay}`);
      expect(String((await once(other.stream, "data"))[0])).toBe(`carried for ${asRelay}`);
      if (tenant !== undefined) expect(r2.relay.tenantHeldForTest(tenant)).toBe(2);
    }
    // The tenant's own tunnels already up are untouched; once one ends, its place is free again.
    a.stream.write("still carried");
    expect(String((await once(a.stream, "data"))[0])).toBe("still carried");
    // Places come back as streams and links end: b's stream, then c's link.
    b.stream.close();
    await once(b.stream, "close");
    c.close();
    await until("their places to come back", () => r2.relay.tenantHeldForTest("tenant-a") === 3);
    const d = await linkRequest(r2.port, "t2", "app1", "t2");
    cleanups.push(d.close);
    expect(d.headers[":status"]).toBe(200);
    expect(r2.relay.tenantHeldForTest("tenant-a")).toBe(5);
  });
});

describe("relay links: a tenant's links (max_links_per_namespace)", () => {
  it("past its link limit a tenant's next link is closed after its handshake; its streams and other tenants' links are not held back", async () => {
    const port = await echo();
    const { r2, failures, refusals } = await relayRecordingRefusals({
      name: "r2",
      routes: [route("r2", "app1", [hop("app1", `ipv4://127.0.0.1:${port}`)])],
      peers: ["t1", "t2", "t3"],
      tenants: [
        { namespace: "tenant-a", nodes: ["t1", "t2"] },
        { namespace: "tenant-b", nodes: ["t3"] },
      ],
      limits: { maxConnectionsPerNamespace: 10, maxLinksPerNamespace: 2 },
    });
    const a = await linkRequest(r2.port, "t1", "app1", "t1");
    cleanups.push(a.close);
    const b = await linkRequest(r2.port, "t2", "app1", "t2");
    cleanups.push(b.close);
    // Two links and two streams: four places of ten, and both links of two.
    expect(r2.relay.tenantHeldForTest("tenant-a")).toBe(4);
    await expect(linkRequest(r2.port, "t1", "app1", "t1")).rejects.toThrow();
    expect(failures).toEqual(["accept namespace_limit"]);
    expect(String(refusals[0]?.detail)).toContain("holds its limit of 2 links (max_links_per_namespace)");
    // More streams on the links it has still get through, and another tenant links as before.
    const session = a.stream.session as ClientHttp2Session | undefined;
    if (session === undefined) throw new Error("no session");
    const more = session.request({ ":method": "CONNECT", ":authority": "app1", "hopway-hops": "t1" });
    more.on("error", () => {});
    const [headers] = (await once(more, "response")) as [IncomingHttpHeaders];
    expect(headers[":status"]).toBe(200);
    const c = await linkRequest(r2.port, "t3", "app1", "t3");
    cleanups.push(c.close);
    expect(c.headers[":status"]).toBe(200);
  });
});

describe("relay links: a tenant's stream rate (namespace_streams_per_second)", () => {
  it("past its burst a tenant's next streams are answered 503 namespace_rate, on any of its links; others are not held back", async () => {
    const port = await echo();
    const warnings: Array<Record<string, unknown>> = [];
    const failed = new Map<string, number>();
    const { r2 } = await relayRecordingRefusals(
      {
        name: "r2",
        observer: {
          tunnelOpened: () => {},
          tunnelClosed: () => {},
          tunnelFailed: (reason) => failed.set(reason, (failed.get(reason) ?? 0) + 1),
        },
        routes: [route("r2", "app1", [hop("app1", `ipv4://127.0.0.1:${port}`)])],
        peers: ["r1", "t1", "t2", "t3"],
        tenants: [
          { namespace: "tenant-a", nodes: ["t1", "t2"] },
          { namespace: "tenant-b", nodes: ["t3"] },
        ],
        // Slow enough that no token comes back while the test runs.
        limits: { namespaceStreamsPerSecond: 0.01, namespaceStreamBurst: 3 },
      },
      (msg, fields) => {
        if (msg === "tunnel refused: namespace over its stream rate") warnings.push(fields);
      },
    );
    /** Opens a stream to app1 as `asRelay` on `session`; its status, and whether it echoes when 200. */
    const open = async (session: MuxSession, asRelay: string) => {
      const st = session.request({ ":method": "CONNECT", ":authority": "app1", "hopway-hops": asRelay });
      st.on("error", () => {});
      const [h] = (await once(st, "response")) as [Record<string, string | number>];
      if (h[":status"] !== 200) return { status: h[":status"], error: h["hopway-error"], reason: h["hopway-reason"] };
      const back = once(st, "data");
      st.resume();
      st.write("ping");
      return { status: 200, echoed: String((await back)[0]) };
    };
    const t1 = await muxLink(r2.port, "t1");
    const t2 = await muxLink(r2.port, "t2");
    // The tenant's burst of three, across its two relays' links.
    expect(await open(t1, "t1")).toEqual({ status: 200, echoed: "ping" });
    expect(await open(t2, "t2")).toEqual({ status: 200, echoed: "ping" });
    expect(await open(t1, "t1")).toEqual({ status: 200, echoed: "ping" });
    for (const [session, name] of [
      [t2, "t2"],
      [t1, "t1"],
    ] as const) {
      const refused = await open(session, name);
      expect(refused).toMatchObject({ status: 503, error: "namespace_rate" });
      expect(String(refused.reason)).toContain("namespace 'tenant-a' opens streams faster than 0.01/s");
    }
    expect(failed.get("namespace_rate")).toBe(2);
    // One warning for both (at most one per 10 s), naming the namespace and the setting.
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ namespace: "tenant-a", namespace_streams_per_second: 0.01 });
    // Another tenant has its own bucket; the operator's relay has none.
    const t3 = await muxLink(r2.port, "t3");
    for (let i = 0; i < 3; i++) expect(await open(t3, "t3")).toEqual({ status: 200, echoed: "ping" });
    const r1 = await muxLink(r2.port, "r1");
    for (let i = 0; i < 8; i++) expect(await open(r1, "r1")).toEqual({ status: 200, echoed: "ping" });
    // The refused streams held no place: the tenant holds its two links and its three tunnels.
    expect(r2.relay.tenantHeldForTest("tenant-a")).toBe(5);
  });
});

describe("relay links: TLS handshakes per source address (link_handshakes_per_source_per_second)", () => {
  it("past its burst an address's next handshake is closed before it starts; its plain CONNECTs and another address's links go on", async () => {
    const port = await echo();
    const warnings: Array<Record<string, unknown>> = [];
    const { r2, failures } = await relayRecordingRefusals(
      {
        name: "r2",
        routes: [route("r2", "app1", [hop("app1", `ipv4://127.0.0.1:${port}`)])],
        peers: ["r1"],
        // Slow enough that no token comes back while the test runs.
        limits: { linkHandshakesPerSourcePerSecond: 0.01, linkHandshakeBurstPerSource: 2 },
      },
      (msg, fields) => {
        if (msg === "relay link refused: source over its handshake rate") warnings.push(fields);
      },
    );
    /** A link to r2 as r1 from `localAddress`, once its TLS 1.3 handshake completed. */
    const linkFrom = async (localAddress: string): Promise<TLSSocket> => {
      const raw = await dialLinkForTest(r2.port, TEST_REALM, "r1", ALPN_MUX, localAddress);
      cleanups.push(() => raw.destroy());
      return raw;
    };
    const handshake = (localAddress: string) =>
      linkFrom(localAddress).then(
        () => true,
        () => false,
      );
    expect(await handshake("127.0.0.1")).toBe(true);
    expect(await handshake("127.0.0.1")).toBe(true);
    expect(await handshake("127.0.0.1")).toBe(false);
    expect(await handshake("127.0.0.1")).toBe(false);
    expect(failures).toEqual(["accept handshake_rate", "accept handshake_rate"]);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ source: "127.0.0.1", link_handshakes_per_source_per_second: 0.01 });
    // The refused ones hold nothing: the two links are all the relay counts.
    await until("only the two links counted", () => r2.relay.openConnections === 2 && r2.relay.pendingHandshakes === 0);
    // Plain CONNECT from the same address is no TLS handshake, and another address has its own bucket.
    const client = connect({ host: "127.0.0.1", port: r2.port });
    cleanups.push(() => client.destroy());
    client.write("CONNECT app1 HTTP/1.1\r\n\r\n");
    expect((await readAnswer(client)).status).toBe(200);
    expect(await handshake("127.0.0.2")).toBe(true);
    const session = muxSessionOn(await linkFrom("127.0.0.2"), { maxConcurrentStreams: 10, streamWindowBytes: 65_535 });
    const st = session.request({ ":method": "CONNECT", ":authority": "app1", "hopway-hops": "r1" });
    st.on("error", () => {});
    const [h] = (await once(st, "response")) as [Record<string, unknown>];
    expect(h[":status"]).toBe(200);
  });
});

describe("relay links: a tenant's stream window", () => {
  it("a tenant's relay gets streams of tenant_stream_window_bytes on either framing; other relays get stream_window_bytes", async () => {
    const port = await echo();
    const r2 = await startRelay({
      name: "r2",
      routes: [route("r2", "app1", [hop("app1", `ipv4://127.0.0.1:${port}`)])],
      peers: ["r1", "t1"],
      tenants: [{ namespace: "tenant-a", nodes: ["t1"] }],
    });
    cleanups.push(() => r2.close());
    /** The send credit a new stream gets on a hopway-mux/1 link as `asRelay`: the window r2 announced. */
    const muxCredit = async (asRelay: string) => {
      const session = await muxLink(r2.port, asRelay);
      const st = session.request({ ":method": "CONNECT", ":authority": "app1", "hopway-hops": asRelay });
      await once(st, "response");
      return st.sendCredit;
    };
    expect(await muxCredit("t1")).toBe(256 * 1024);
    expect(await muxCredit("r1")).toBe(2 * 1024 * 1024);
    /** The initial window r2 announces on an HTTP/2 link as `asRelay`. */
    const h2Window = async (asRelay: string) => {
      const m = relayIdentityForTest(TEST_REALM, asRelay).material();
      if (!m) throw new Error("no test identity");
      const session = h2Link(r2.port, m);
      cleanups.push(() => session.destroy());
      const [settings] = (await once(session, "remoteSettings")) as [{ initialWindowSize?: number }];
      return settings.initialWindowSize;
    };
    expect(await h2Window("t1")).toBe(256 * 1024);
    expect(await h2Window("r1")).toBe(2 * 1024 * 1024);
  });

  it("a link made before its peer became a tenant's is sent GOAWAY with the table update; the next one is counted and sized for the tenant", async () => {
    const port = await echo();
    const r2 = await startRelay({
      name: "r2",
      routes: [route("r2", "app1", [hop("app1", `ipv4://127.0.0.1:${port}`)])],
      peers: ["t1"],
    });
    cleanups.push(() => r2.close());
    const open = async () => {
      const session = await muxLink(r2.port, "t1");
      const st = session.request({ ":method": "CONNECT", ":authority": "app1", "hopway-hops": "t1" });
      st.on("error", () => {});
      await once(st, "response");
      return { session, st };
    };
    const before = await open();
    expect(before.st.sendCredit).toBe(2 * 1024 * 1024);
    expect(r2.relay.tenantHeldForTest("tenant-a")).toBe(0);
    // The admin sets the shared namespaces: the next table names t1's namespace.
    const goaway = once(before.session, "goaway");
    const table = r2.table.table;
    if (table === undefined) throw new Error("no table");
    r2.table.set({
      ...table,
      version: table.version + 1,
      peers: { any: true, nodes: [], tenants: [{ namespace: "tenant-a", nodes: ["t1"] }] },
    });
    await goaway;
    // Its open tunnel still carries; the new link and its tunnel count against the tenant.
    const echoed = once(before.st, "data");
    before.st.resume();
    before.st.write("still here");
    expect(String((await echoed)[0])).toBe("still here");
    const after = await open();
    expect(after.st.sendCredit).toBe(256 * 1024);
    expect(r2.relay.tenantHeldForTest("tenant-a")).toBe(2);
  });
});

/** A raw TLS link to the relay on `port` as relay `asRelay`, offering `alpn`; closed after the test. */
describe("relay links: what tunnels hold, together (max_buffered_bytes)", () => {
  const MiB = 1024 * 1024;
  const BOUND = 3 * MiB;
  /**
   * r2 with a tenant's relay t1 whose 12 tunnels, each sent 6 MiB, end at a target that never reads,
   * and the operator's relay r1 with a tunnel to an echo server. Each of t1's tunnels can make r2
   * hold its stream window (256 KiB, a tenant's) and its leg's buffer (256 KiB) beyond what the
   * kernel takes: about 6 MiB for the twelve.
   */
  async function stallingTenant(maxBufferedBytes: number) {
    const port = await echo();
    const stalled = await startStalledTarget();
    cleanups.push(() => stalled.server.close());
    const sheds: string[] = [];
    const warnings: Array<Record<string, unknown>> = [];
    const r2 = await startRelay({
      name: "r2",
      routes: [
        route("r2", "app1", [hop("app1", `ipv4://127.0.0.1:${port}`)]),
        route("r2", "app2", [hop("app2", `ipv4://127.0.0.1:${stalled.port}`)]),
      ],
      peers: ["r1", "t1"],
      tenants: [{ namespace: "tenant-a", nodes: ["t1"] }],
      limits: { maxBufferedBytes },
      observer: {
        tunnelOpened: () => {},
        tunnelClosed: () => {},
        tunnelFailed: () => {},
        bufferShed: (kind, holder) => sheds.push(`${kind} ${holder}`),
      },
      log: (_level, msg, fields) => {
        if (msg.startsWith("tunnels reset")) warnings.push(fields);
      },
    });
    cleanups.push(() => r2.close());
    const link = async (asRelay: string) => {
      const session = await muxLink(r2.port, asRelay, { maxConcurrentStreams: 100, streamWindowBytes: 2 * MiB });
      return session;
    };
    const t1 = await link("t1");
    const tenantStreams = Array.from({ length: 12 }, () => {
      const st = t1.request({ ":method": "CONNECT", ":authority": "app2", "hopway-hops": "t1" });
      st.on("error", () => {});
      return st;
    });
    await Promise.all(tenantStreams.map((st) => once(st, "response")));
    const r1 = await link("r1");
    const operator = r1.request({ ":method": "CONNECT", ":authority": "app1", "hopway-hops": "r1" });
    await once(operator, "response");
    const chunk = randomBytes(6 * MiB);
    for (const st of tenantStreams) st.write(chunk);
    return { r2, sheds, warnings, tenantStreams, operator };
  }

  it("a tenant whose tunnels stall makes the relay hold at most the bound: its tunnels are reset, largest first; the operator's tunnel carries on", async () => {
    const { r2, sheds, warnings, tenantStreams, operator } = await stallingTenant(BOUND);
    await until("the relay to reset tunnels of the tenant", () => sheds.length > 0);
    expect(new Set(sheds)).toEqual(new Set(["tunnel tenant"]));
    // The reset tunnels end at t1 as resets, not as a clean end of their bytes.
    await until("t1 to see its tunnels reset", () =>
      tenantStreams.some((st) => st.rstCode !== undefined && st.rstCode !== 0),
    );
    expect(warnings[0]).toMatchObject({ max_buffered_bytes: BOUND, reset: [{ namespace: "tenant-a" }] });
    expect(warnings[0]?.buffered_bytes as number).toBeGreaterThan(BOUND);
    // What is left is within the bound, on every check from here on.
    for (let i = 0; i < 5; i++) {
      expect(r2.relay.checkBufferedForTest()).toBeLessThanOrEqual(BOUND);
      await sleep(50);
    }
    operator.resume();
    const echoed = once(operator, "data");
    operator.write("still carried");
    expect(String((await echoed)[0])).toBe("still carried");
  });

  it("with max_buffered_bytes 0 (off) the same tenant makes the relay hold more than that bound, and nothing is reset", async () => {
    const { r2, sheds } = await stallingTenant(0);
    await until("the relay to hold more than the bound", () => r2.relay.checkBufferedForTest() > BOUND);
    expect(sheds).toEqual([]);
  });

  it("a tenant's relay that stops reading its link: what the relay holds towards it comes back within the bound, at the tenant's cost only", async () => {
    for (const bound of [0, BOUND]) {
      const port = await echo();
      const sheds: string[] = [];
      const r2 = await startRelay({
        name: "r2",
        routes: [route("r2", "app1", [hop("app1", `ipv4://127.0.0.1:${port}`)])],
        peers: ["r1", "t1"],
        tenants: [{ namespace: "tenant-a", nodes: ["t1"] }],
        limits: { maxBufferedBytes: bound },
        observer: {
          tunnelOpened: () => {},
          tunnelClosed: () => {},
          tunnelFailed: () => {},
          bufferShed: (kind, holder) => sheds.push(`${kind} ${holder}`),
        },
      });
      cleanups.push(() => r2.close());
      // Two links of t1, each with 100 tunnels to the echo server. t1 grants large windows, so the
      // relay may send it much, then reads nothing at all, not even the relay's credit: each tunnel
      // sends its first window (256 KiB), and what the relay sends back towards t1 waits in each
      // link's send queue and in the tunnels behind it, past what the kernel takes.
      const chunk = randomBytes(256 * 1024);
      for (let l = 0; l < 2; l++) {
        const raw = await rawLink(r2.port, "t1", ALPN_MUX);
        const t1 = muxSessionOn(raw, { maxConcurrentStreams: 200, streamWindowBytes: 16 * MiB });
        const streams = Array.from({ length: 100 }, () => {
          const st = t1.request({ ":method": "CONNECT", ":authority": "app1", "hopway-hops": "t1" });
          st.on("error", () => {});
          return st;
        });
        await Promise.all(streams.map((st) => once(st, "response")));
        raw.pause();
        for (const st of streams) st.write(chunk);
      }
      if (bound === 0) {
        await until("the relay to hold more than the bound", () => r2.relay.checkBufferedForTest() > BOUND);
        expect(sheds).toEqual([]);
        continue;
      }
      await until("the relay to shed what it held towards t1", () => sheds.length > 0);
      // Each link's send queue is the tenant's largest holding: the link goes, and its tunnels
      // with it, which then count as freed (no further tunnel is reset for them).
      expect(sheds).toContain("link tenant");
      expect(sheds.every((x) => x.endsWith(" tenant"))).toBe(true);
      for (let i = 0; i < 5; i++) {
        expect(r2.relay.checkBufferedForTest()).toBeLessThanOrEqual(BOUND);
        await sleep(50);
      }
      // The operator's relay still gets its tunnel carried.
      const r1 = await muxLink(r2.port, "r1");
      const op = r1.request({ ":method": "CONNECT", ":authority": "app1", "hopway-hops": "r1" });
      await once(op, "response");
      op.resume();
      const echoed = once(op, "data");
      op.write("still carried");
      expect(String((await echoed)[0])).toBe("still carried");
    }
  });
});

/**
 * startRelay, recording its link refusals: each as `side reason` (what the metric counts) and the
 * fields of its `relay link refused` log line; `onLog` sees every log line besides.
 */
async function relayRecordingRefusals(
  opts: Parameters<typeof startRelay>[0],
  onLog?: (msg: string, fields: Record<string, unknown>) => void,
) {
  const failures: string[] = [];
  const refusals: Array<Record<string, unknown>> = [];
  const r2 = await startRelay({
    ...opts,
    linkObserver: { linkOpened: () => {}, linkFailed: (side, reason) => failures.push(`${side} ${reason}`) },
    log: (_level, msg, fields) => {
      if (msg === "relay link refused") refusals.push(fields);
      onLog?.(msg, fields);
    },
  });
  cleanups.push(() => r2.close());
  return { r2, failures, refusals };
}

/** A dialling hopway-mux/1 session on `raw`, its errors ignored, destroyed after the test. */
function muxSessionOn(raw: TLSSocket, settings: MuxSettings): MuxSession {
  const session = new MuxSession(raw, "client", settings);
  session.on("error", () => {});
  cleanups.push(() => session.destroy());
  return session;
}

/** A hopway-mux/1 link to the relay on `port` as relay `asRelay` (small windows unless `settings` says otherwise). */
async function muxLink(
  port: number,
  asRelay: string,
  settings: MuxSettings = { maxConcurrentStreams: 10, streamWindowBytes: 65_535 },
): Promise<MuxSession> {
  return muxSessionOn(await rawLink(port, asRelay, ALPN_MUX), settings);
}

async function rawLink(port: number, asRelay: string, alpn: string): Promise<TLSSocket> {
  const raw = await dialLinkForTest(port, TEST_REALM, asRelay, alpn);
  cleanups.push(() => raw.destroy());
  return raw;
}

/**
 * Opens `n` CONNECT streams to app1 on a link to the relay on `port`, as relay r1 over `protocol`,
 * and resets each `resetAfterMs` after opening it: a "rapid reset", streams cancelled before their
 * path is up.
 */
async function openAndReset(port: number, protocol: LinkProtocol, n: number, resetAfterMs: number): Promise<void> {
  const request = { ":method": "CONNECT", ":authority": "app1", "hopway-hops": "r1" };
  if (protocol === "mux") {
    const session = await muxLink(port, "r1", { maxConcurrentStreams: 100, streamWindowBytes: 65_535 });
    for (let i = 0; i < n; i++) {
      const st = session.request(request);
      st.on("error", () => {});
      setTimeout(() => st.destroy(), resetAfterMs);
    }
  } else {
    const m = relayIdentityForTest(TEST_REALM, "r1").material();
    if (!m) throw new Error("no test identity");
    const session = h2Link(port, m);
    cleanups.push(() => session.destroy());
    await once(session, "remoteSettings");
    for (let i = 0; i < n; i++) {
      const st = session.request(request);
      st.on("error", () => {});
      setTimeout(() => st.close(8), resetAfterMs);
    }
  }
  await sleep(resetAfterMs + 50);
}

describe.each(LINK_PROTOCOLS)("relay links (%s): streams reset while their path is opened", (protocol) => {
  it("the onward stream to the next relay is reset at once, not at the path timeout", async () => {
    // A next relay that takes every stream and never answers; it notes which were reset.
    const open = new Set<MuxStream>();
    let seen = 0;
    const r3 = await compromisedNeighbour((stream) => {
      seen++;
      open.add(stream);
      stream.on("close", () => open.delete(stream));
    });
    const r2 = await startRelay({
      name: "r2",
      routes: [route("r2", "app1", [hop("r3", `ipv4://127.0.0.1:${r3}`), hop("app1", "ipv4://127.0.0.1:9")])],
      peers: ["r1", "r3"],
      links: { protocol: "mux" },
      limits: { pathTimeoutMs: 60_000 },
    });
    cleanups.push(() => r2.close());
    const n = 20;
    await openAndReset(r2.port, protocol, n, 30);
    await until("r3 to see every onward stream", () => seen === n);
    await until("every onward stream to be reset", () => open.size === 0, 2000);
    // Only the accepted link itself holds a place in the tunnel pool.
    await until("the streams' places to go back", () => r2.relay.openConnections === 1, 2000);
  });

  it("requests given up while the link to the next relay comes up send nothing once it is up", async () => {
    let opens = 0;
    let links = 0;
    const r3 = await compromisedNeighbour(
      () => {
        opens++;
      },
      { onLink: () => links++ },
    );
    // The link dial to r3 takes 500 ms: a forwarder that connects on only then.
    const slow = createServer((c) => {
      c.pause();
      c.on("error", () => {});
      const t = setTimeout(() => {
        const u = connect({ host: "127.0.0.1", port: r3 });
        u.on("error", () => {});
        c.pipe(u).pipe(c);
        c.resume();
      }, 500);
      c.on("close", () => clearTimeout(t));
    });
    cleanups.push(() => slow.close());
    const slowPort = await listen(slow);
    const r2 = await startRelay({
      name: "r2",
      routes: [route("r2", "app1", [hop("r3", `ipv4://127.0.0.1:${slowPort}`), hop("app1", "ipv4://127.0.0.1:9")])],
      peers: ["r1", "r3"],
      links: { protocol: "mux", handshakeTimeoutMs: 5_000 },
      limits: { maxConnections: 50, pathTimeoutMs: 60_000 },
    });
    cleanups.push(() => r2.close());
    // More than max_connections in all, each reset 2 ms after it was opened.
    await openAndReset(r2.port, protocol, 300, 2);
    await until("the link to r3 to be up", () => links === 1, 3_000);
    await sleep(300);
    // Before: each given-up request still opened its stream on the new link (and reset it).
    expect(opens).toBe(0);
    expect(links).toBe(1);
  });

  it("the connection to a target that does not answer is closed at once, not at the connect timeout", async () => {
    const blackhole = await blackholePort(cleanups);
    const r2 = await startRelay({
      name: "r2",
      routes: [route("r2", "app1", [hop("app1", `ipv4://127.0.0.1:${blackhole}`)])],
      peers: ["r1"],
      limits: { connectTimeoutMs: 60_000, maxConnections: 20 },
      links: { maxConcurrentStreams: 100 },
    });
    cleanups.push(() => r2.close());
    const fds = () => readdirSync("/proc/self/fd").length;
    const before = fds();
    // More streams than max_connections, each reset before its dial could finish.
    await openAndReset(r2.port, protocol, 60, 30);
    await until("the streams' places to go back", () => r2.relay.openConnections === 1, 2000);
    // The dials went with their streams: no socket is left waiting on the target.
    await until("the dials to be closed", () => fds() <= before + 5, 2000);
  });
});

describe("relay links: a neighbour that does not read", () => {
  it("streams the relay refuses at once (405), flooded and never read: the link is closed (flood)", async () => {
    const errors: string[] = [];
    const r2 = await startRelay({
      name: "r2",
      routes: [route("r2", "app1", [hop("app1", "ipv4://127.0.0.1:9")])],
      peers: ["r1"],
      log: (_level, msg, fields) => {
        if (msg === "link error") errors.push(String(fields.error));
      },
    });
    cleanups.push(() => r2.close());
    const raw = await rawLink(r2.port, "r1", ALPN_MUX);
    // Never read: a paused socket does not see its link closed either, the relay's log says it.
    raw.pause();
    raw.write(wordsFrame(FrameType.SETTINGS, 0, [1000, 1 << 21, MAX_FRAME]));
    // Empty header maps: 10 bytes an OPEN, answered with a 405 REPLY and an RST of about 60.
    const batch = 2000;
    const max = 1_000_000;
    let sent = 0;
    const t0 = performance.now();
    while (sent < max && errors.length === 0 && !raw.destroyed && performance.now() - t0 < 20_000) {
      const parts: Buffer[] = [];
      for (let i = 0; i < batch; i++) parts.push(frameHeader(FrameType.OPEN, 0, 2 * (sent + i) + 1, 0));
      sent += batch;
      if (!raw.write(Buffer.concat(parts))) await Promise.race([once(raw, "drain"), sleep(200)]);
      await sleep(1);
    }
    await until("the link to close", () => errors.length > 0, 5000);
    expect(errors.join("\n"), `after ${sent} OPENs`).toContain("flood");
  });
});

describe("relay links: header values from a next relay", () => {
  // U+010D and U+010A, written byte per character into an HTTP/1.1 head, would be CR and LF.
  const evil = "\u010d\u010aSet-Cookie: injected=1\u010d\u010aX-Evil: yes";

  it("what goes into an HTTP/1.1 head is printable ASCII, and Content-Length is the body's length as written", () => {
    // What a next relay over HTTP/2, or one of an earlier release, could still pass on.
    const refusal = errorResponse(403, "forbidden", `détail${evil}`, {
      "Hopway-Reason": `no${evil}`,
      "Hopway-Failed-At": `r3${evil}`,
    }).toString("latin1");
    const [top, body] = refusal.split("\r\n\r\n") as [string, string];
    expect(top.split("\r\n").map((l) => l.split(":")[0])).toEqual([
      "HTTP/1.1 403 Forbidden",
      "Hopway-Error",
      "Hopway-Reason",
      "Hopway-Failed-At",
      "Content-Type",
      "Content-Length",
      "Connection",
    ]);
    expect(refusal).toMatch(/^[\x20-\x7e\r\n]*$/);
    expect(Number(/Content-Length: (\d+)/.exec(top)?.[1])).toBe(body.length);
    const established = establishedResponse(`r2, r3${evil}`).toString("latin1");
    expect(established.split("\r\n")).toEqual(["HTTP/1.1 200 Connection established", expect.any(String), "", ""]);
    expect(established).toMatch(/^[\x20-\x7e\r\n]*$/);
  });

  it.each([
    [
      "a refusal",
      { ":status": 403, "hopway-error": "forbidden", "hopway-reason": `no${evil}`, "hopway-failed-at": `r3${evil}` },
    ],
    ["a tunnel", { ":status": 200, "hopway-path": `r3${evil}` }],
  ])(
    "outside printable ASCII in %s: the stream fails (502), no header line reaches the application",
    async (_what, answer) => {
      const port = await compromisedNeighbour((stream) =>
        stream.respond(answer, { endStream: answer[":status"] !== 200 }),
      );
      const r2 = await startRelay({
        name: "r2",
        routes: [route("r2", "app1", [hop("r3", `ipv4://127.0.0.1:${port}`), hop("app1", "ipv4://127.0.0.1:9")])],
        peers: ["r3"],
        links: { protocol: "mux" },
      });
      cleanups.push(() => r2.close());
      const app = connect({ host: "127.0.0.1", port: r2.port });
      cleanups.push(() => app.destroy());
      app.on("error", () => {});
      const chunks: Buffer[] = [];
      app.on("data", (c: Buffer) => chunks.push(c));
      app.write("CONNECT app1 HTTP/1.1\r\nHost: app1\r\n\r\n");
      // A refusal closes the connection; a tunnel taken as up would not: bounded either way.
      await Promise.race([once(app, "close"), sleep(2000)]);
      const head = Buffer.concat(chunks).toString("latin1");
      expect(head).toMatch(/^HTTP\/1\.1 502 /);
      expect(head).toContain("Hopway-Reason: stream to r3 reset here: its answer had a header outside printable ASCII");
      expect(head.toLowerCase()).not.toContain("set-cookie");
      expect(head).not.toContain("X-Evil");
      // Only printable ASCII, CR and LF in what the relay wrote; its Content-Length is the body's length.
      expect(head).toMatch(/^[\x20-\x7e\r\n]*$/);
      const [top, body] = head.split("\r\n\r\n") as [string, string];
      expect(Number(/Content-Length: (\d+)/.exec(top)?.[1])).toBe(Buffer.byteLength(body, "latin1"));
      // The link to r3 is kept: the next tunnel crosses it again.
      expect(r2.relay.linksByPeer().get("r3")).toBe(1);
    },
  );
});
