import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { connect, createServer, type Socket } from "node:net";
import { createServer as createTlsServer, type TLSSocket, connect as tlsConnect } from "node:tls";
import { afterEach, describe, expect, it } from "vitest";
import { testPki } from "../../../../test/support/identity.ts";
import {
  adopt,
  heldReadBuffersForTest,
  lentReadBuffersForTest,
  pump,
  readThroughNode,
  setSink,
  setWriteThroughForTest,
  writtenThroughForTest,
} from "../../../src/relay/pump.ts";
import { Relay, type RelayCounters, type Tunnel } from "../../../src/relay/relay.ts";
import { RoutingTable } from "../../../src/relay/table.ts";
import {
  cutOff,
  hop,
  listen,
  readAll,
  request,
  route,
  sha,
  sleep,
  startByteCounter,
  startEcho,
  startRelay,
  startStalledTarget,
} from "./helpers.ts";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

/** Reads everything, stopping for `stallMs` after every `every` bytes so the writer's side backs up. */
function readStalling(socket: Socket, every: number, stallMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let sinceStall = 0;
    socket.on("data", (c: Buffer) => {
      chunks.push(c);
      sinceStall += c.length;
      if (sinceStall >= every) {
        sinceStall = 0;
        socket.pause();
        setTimeout(() => socket.resume(), stallMs);
      }
    });
    socket.once("end", () => resolve(Buffer.concat(chunks)));
    socket.once("error", reject);
    socket.resume();
  });
}

/** A loopback connection whose accepted side reads through the relay's buffers (`adopt`), and its client. */
async function adoptedClient(): Promise<{ src: Socket; client: Socket }> {
  let src: Socket | undefined;
  const front = createServer({ allowHalfOpen: true }, (s) => {
    src = adopt(s, 64 * 1024);
  });
  const frontPort = await listen(front);
  cleanups.push(() => front.close());
  const client = connect({ port: frontPort, host: "127.0.0.1", allowHalfOpen: true });
  await once(client, "connect");
  while (src === undefined) await sleep(5);
  return { src, client };
}

// These tests are about the JavaScript path (pump.ts); native-splice.test.ts covers the tunnels
// the native splice's thread carries, which is where the relay sends them by default.
async function relayTo(port: number, bufferBytes = 256 * 1024, reuseReadBuffers = true) {
  const r = await startRelay({
    name: "relay-a",
    routes: [route("relay-a", "app1", [hop("app1", `ipv4://127.0.0.1:${port}`)])],
    limits: { bufferBytes },
    reuseReadBuffers,
    nativeSplice: false,
  });
  cleanups.push(() => r.close());
  return r;
}

describe("relay read path", () => {
  it.each([
    ["in place, when its write buffer is the relay's", 64 * 1024, true],
    ["by moving its handle into a new socket, when it is not", 32 * 1024, false],
  ])("makes an accepted socket read through the relay's buffers %s", async (_, hwm, inPlace) => {
    let adopted: Socket | undefined;
    let original: Socket | undefined;
    const server = createServer(
      { allowHalfOpen: true, highWaterMark: 64 * 1024 } as Parameters<typeof createServer>[0],
      (s) => {
        original = s;
        adopted = adopt(s, hwm);
        adopted.on("error", () => {});
      },
    );
    const port = await listen(server);
    cleanups.push(() => server.close());
    const client = connect({ port, host: "127.0.0.1" });
    await once(client, "connect");
    while (adopted === undefined) await sleep(5);
    if (inPlace) {
      expect(adopted).toBe(original);
    } else {
      expect(adopted).not.toBe(original);
      expect(original?.destroyed).toBe(true);
    }
    expect(adopted.remotePort).toBe(client.localPort);
    // Reads reach the relay's sink, never Node's `data` path.
    const sunk: string[] = [];
    let dataEvents = 0;
    setSink(adopted, (chunk) => {
      sunk.push(String(chunk));
      return true;
    });
    adopted.on("data", () => dataEvents++);
    client.write("to the adopted socket");
    while (sunk.join("") !== "to the adopted socket") await sleep(5);
    expect(dataEvents).toBe(0);
    setSink(adopted, undefined);
    // The server still counts the connection, through the adopted socket.
    const count = () => new Promise<number>((res) => server.getConnections((_, n) => res(n)));
    expect(await count()).toBe(1);
    adopted.write("from the adopted socket");
    const [chunk] = (await once(client, "data")) as [Buffer];
    expect(String(chunk)).toBe("from the adopted socket");
    client.end();
    // It reads (and, with no sink, discards) until the peer's FIN; half-open, so it ends its side itself.
    await once(adopted, "end");
    adopted.end();
    await once(adopted, "close");
    expect(await count()).toBe(0);
  });

  // Node's reads are the bench's reference lane (reuseReadBuffers: false), so they must carry bytes as well.
  it.each([
    ["the relay's buffers", true],
    ["Node's reads", false],
  ])("carries random bytes intact both ways while each reader stalls, reading through %s", async (_, reuse) => {
    const size = 24 * 1024 * 1024;
    const up = randomBytes(size);
    const down = randomBytes(size);
    let upAtTarget: Promise<Buffer> | undefined;
    const server = createServer({ allowHalfOpen: true }, (s) => {
      // The target stalls too, so the relay's writes towards it back up as well. The stalls are long
      // enough to fill the kernel buffers on the way (several MiB on loopback).
      upAtTarget = readStalling(s, 6 * 1024 * 1024, 300);
      s.end(down);
    });
    const port = await listen(server);
    cleanups.push(() => server.close());
    // A queue of several read buffers, so reads go on while earlier writes are pending.
    const r = await relayTo(port, 2 * 1024 * 1024, reuse);
    const a = await request(r.port, "CONNECT app1 HTTP/1.1\r\n\r\n");
    expect(a.status).toBe(200);
    const closed = once(a.socket, "close");
    const downAtClient = readStalling(a.socket, 6 * 1024 * 1024, 300);
    a.socket.end(up);
    expect(sha(Buffer.concat([a.rest, await downAtClient]))).toBe(sha(down));
    expect(sha((await upAtTarget) ?? Buffer.alloc(0))).toBe(sha(up));
    await closed;
    for (let i = 0; i < 100 && r.relay.openConnections > 0; i++) await sleep(10);
    // Closed tunnels hand their private read buffers back.
    expect(heldReadBuffersForTest()).toBe(0);
  });

  it("copies chunks that wait behind other writes instead of holding a whole pool buffer for each", async () => {
    const target = await startStalledTarget();
    cleanups.push(() => target.server.close());
    const r = await relayTo(target.port);
    const a = await request(r.port, "CONNECT app1 HTTP/1.1\r\n\r\n");
    // 20 KiB writes arrive as reads well under half a buffer, but large enough to stream.
    const sent = randomBytes(60 * 1024 * 1024);
    let offset = 0;
    let most = 0;
    // Until the relay stops reading: the kernel buffers on the way hold several MiB first.
    let lastRead = -1;
    for (let i = 0, still = 0; i < 3000 && still < 50 && offset < sent.length; i++) {
      if (a.socket.writableLength < 1024 * 1024) {
        a.socket.write(sent.subarray(offset, offset + 20 * 1024));
        offset += 20 * 1024;
      }
      await sleep(1);
      most = Math.max(most, lentReadBuffersForTest());
      const read = r.relay.counters.up.client;
      still = read === lastRead ? still + 1 : 0;
      lastRead = read;
    }
    // The target never read: the relay's queue towards it filled and it stopped reading.
    expect(r.relay.counters.up.client).toBeGreaterThan(1024 * 1024);
    expect(most).toBeLessThanOrEqual(2);
    a.socket.end();
    const received = await readAll(target.accepted() as Socket);
    expect(received.length).toBe(offset);
    expect(sha(received)).toBe(sha(sent.subarray(0, offset)));
  });

  it("reads a socket that arrives with bytes already buffered through Node's own path", async () => {
    const target = createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
    const targetPort = await listen(target);
    cleanups.push(() => target.close());
    const table = new RoutingTable("relay-a");
    table.set({
      node: "relay-a",
      version: 1,
      routes: [route("relay-a", "app1", [hop("app1", `ipv4://127.0.0.1:${targetPort}`)])],
    });
    const relay = new Relay({ name: "relay-a", table, nativeSplice: false });
    cleanups.push(() => relay.destroyAll());
    let adoptedAway: boolean | undefined;
    const server = createServer({ allowHalfOpen: true }, (s) => {
      // Something read before the relay got the socket and put the bytes back.
      s.once("data", (c: Buffer) => {
        s.pause();
        s.unshift(c);
        relay.handle(s);
        // An adopted socket gives its handle away and is destroyed at once; this one must be kept.
        adoptedAway = s.destroyed;
      });
    });
    const port = await listen(server);
    cleanups.push(() => server.close());
    const payload = randomBytes(3 * 1024 * 1024);
    const client = connect({ port, host: "127.0.0.1", allowHalfOpen: true });
    await once(client, "connect");
    client.write("CONNECT app1 HTTP/1.1\r\n\r\n");
    const echoed = readAll(client);
    client.end(payload);
    const all = await echoed;
    expect(adoptedAway).toBe(false);
    expect(String(all.subarray(0, 12))).toBe("HTTP/1.1 200");
    const body = all.subarray(all.indexOf("\r\n\r\n") + 4);
    expect(sha(body)).toBe(sha(payload));
    expect(relay.counters.up.client).toBe(payload.length);
  });
});

describe("writing straight to the destination socket", () => {
  afterEach(() => setWriteThroughForTest(true));

  /** Sends `size` random bytes in `chunk`-byte writes, a timer tick apart so the relay reads them one by one. */
  async function sendPaced(socket: Socket, size: number, chunk: number): Promise<Buffer> {
    const sent = randomBytes(size);
    // Without Nagle's delay each write leaves as its own segment instead of being gathered.
    socket.setNoDelay(true);
    for (let off = 0; off < size; off += chunk) {
      socket.write(sent.subarray(off, off + chunk));
      await sleep(0);
      while (socket.writableLength > 1024 * 1024) await sleep(2);
    }
    socket.end();
    return sent;
  }

  it.each([
    ["written through, no copy", true],
    ["through the Writable, as before", false],
  ])("carries request/response messages %s", async (_, on) => {
    setWriteThroughForTest(on);
    const echo = await startEcho();
    cleanups.push(() => echo.server.close());
    const r = await relayTo(echo.port);
    const a = await request(r.port, "CONNECT app1 HTTP/1.1\r\n\r\n");
    expect(a.status).toBe(200);
    const before = writtenThroughForTest();
    let got = Buffer.alloc(0);
    a.socket.on("data", (c: Buffer) => {
      got = Buffer.concat([got, c]);
    });
    a.socket.resume();
    let total = 0;
    for (let i = 0; i < 200; i++) {
      const msg = randomBytes(50 + (i % 7) * 300);
      got = Buffer.alloc(0);
      a.socket.write(msg);
      while (got.length < msg.length) await sleep(1);
      expect(sha(got)).toBe(sha(msg));
      total += msg.length;
    }
    // Every message went out whole at once, both ways: nothing was copied, queued or lent.
    expect(writtenThroughForTest() - before).toBe(on ? 2 * total : 0);
    expect(lentReadBuffersForTest()).toBe(0);
    // The relay's byte counters (its metrics) count the same either way.
    expect(r.relay.counters.up.client).toBe(total);
    expect(r.relay.counters.down.client).toBe(total);
    a.socket.destroy();
  });

  it("keeps the bytes the kernel did not take intact while later reads reuse the read buffer", async () => {
    const target = await startStalledTarget();
    cleanups.push(() => target.server.close());
    const r = await relayTo(target.port);
    const a = await request(r.port, "CONNECT app1 HTTP/1.1\r\n\r\n");
    expect(a.status).toBe(200);
    const before = writtenThroughForTest();
    // 15 KiB writes arrive as reads too small to stream, which land in the buffer every idle
    // socket shares, while the target reads nothing: the kernel takes the first ones whole,
    // part of one, then none.
    const sending = sendPaced(a.socket, 32 * 1024 * 1024, 15 * 1024);
    // Until the relay stops reading (its queue towards the target is full), then the target reads.
    for (let last = -1; r.relay.counters.up.client !== last; ) {
      last = r.relay.counters.up.client;
      await sleep(200);
    }
    const received = readAll(target.accepted() as Socket);
    const sent = await sending;
    expect(sha(await received)).toBe(sha(sent));
    // Some bytes went straight through and some had to wait for the stalled reader.
    const through = writtenThroughForTest() - before;
    expect(through).toBeGreaterThan(0);
    expect(through).toBeLessThan(sent.length);
    a.socket.destroy();
  });

  it("forwards a half-close after bytes written through", async () => {
    const counter = await startByteCounter();
    cleanups.push(() => counter.server.close());
    const r = await relayTo(counter.port);
    const a = await request(r.port, "CONNECT app1 HTTP/1.1\r\n\r\n");
    expect(a.status).toBe(200);
    const before = writtenThroughForTest();
    const answer = readAll(a.socket);
    a.socket.write(randomBytes(3000));
    await sleep(20);
    a.socket.end(randomBytes(1000));
    expect(String(Buffer.concat([a.rest, await answer]))).toBe("got 4000 bytes");
    // The 4000 bytes up and the answer down.
    expect(writtenThroughForTest() - before).toBe(4000 + "got 4000 bytes".length);
  });

  it("cuts the tunnel off when the destination resets while the relay writes to it", async () => {
    let accepted: Socket | undefined;
    const target = createServer((s) => {
      accepted = s;
      s.on("error", () => {});
      s.once("data", () => setTimeout(() => s.resetAndDestroy(), 20));
    });
    const port = await listen(target);
    cleanups.push(() => target.close());
    const r = await relayTo(port);
    const a = await request(r.port, "CONNECT app1 HTTP/1.1\r\n\r\n");
    expect(a.status).toBe(200);
    const cut = cutOff(a.socket);
    // Keeps writing through the reset, until the relay has cut the client off.
    let closed = false;
    a.socket.once("close", () => {
      closed = true;
    });
    for (let i = 0; i < 2000 && !closed; i++) {
      a.socket.write(randomBytes(1024));
      await sleep(1);
    }
    await cut;
    expect(accepted?.destroyed).toBe(true);
    for (let i = 0; i < 100 && r.relay.openConnections > 0; i++) await sleep(10);
    expect(r.relay.openConnections).toBe(0);
  });
});

describe("writing straight to the destination socket, order", () => {
  it("waits behind bytes already queued in the destination's Writable", async () => {
    let atTarget: Promise<Buffer> | undefined;
    const target = createServer({ allowHalfOpen: true }, (s) => {
      atTarget = readAll(s);
    });
    const targetPort = await listen(target);
    cleanups.push(() => target.close());
    const dst = connect({ port: targetPort, host: "127.0.0.1", allowHalfOpen: true });
    await once(dst, "connect");
    const { src, client } = await adoptedClient();
    const counters: RelayCounters = { up: { client: 0, relay: 0 }, down: { client: 0, relay: 0 } };
    const tunnel = { client: src, upstream: dst, peer: "client", moved: false } as unknown as Tunnel;
    pump(src, dst, tunnel, true, counters);
    pump(dst, src, tunnel, false, counters);
    // Bytes the relay wrote itself before the tunnel's (as the answer it corks with what follows).
    dst.cork();
    dst.write("first|");
    client.write("second");
    while (counters.up.client < 6) await sleep(2);
    dst.uncork();
    client.end();
    while (atTarget === undefined) await sleep(5);
    expect(String(await atTarget)).toBe("first|second");
  });
});

describe("writing straight to the destination socket, TLS", () => {
  it("never writes past a TLS destination to the TCP socket under it", async () => {
    const material = testPki("test-realm").issue("relay-a");
    let atTls: Promise<Buffer> | undefined;
    const tlsServer = createTlsServer({ key: material.key, cert: material.certChain }, (s) => {
      atTls = readAll(s);
    });
    const tlsPort = await listen(tlsServer);
    cleanups.push(() => tlsServer.close());
    const dst = tlsConnect({ port: tlsPort, host: "127.0.0.1", rejectUnauthorized: false });
    await once(dst, "secureConnect");
    const { src, client } = await adoptedClient();
    const counters: RelayCounters = { up: { client: 0, relay: 0 }, down: { client: 0, relay: 0 } };
    const tunnel = { client: src, upstream: dst as TLSSocket, peer: "client", moved: false } as unknown as Tunnel;
    const before = writtenThroughForTest();
    pump(src, dst, tunnel, true, counters);
    // The way back, as the relay sets up a side it could not adopt.
    pump(readThroughNode(dst), src, tunnel, false, counters);
    const payload = randomBytes(256 * 1024);
    client.end(payload);
    while (atTls === undefined) await sleep(5);
    expect(sha(await atTls)).toBe(sha(payload));
    expect(writtenThroughForTest() - before).toBe(0);
    expect(counters.up.client).toBe(payload.length);
  });
});
