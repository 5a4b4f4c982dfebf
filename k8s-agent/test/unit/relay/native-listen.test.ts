// Native listeners (k8s-agent/native/listen.c) behind a real relay and real loopback sockets:
// a listener on an IP address accepts, dials and carries its connections on the event loop in C,
// and hands the ones that keep carrying to the splice thread. The listener behaviours every
// listener shares run in k8s-agent/test/unit/listeners/manager.test.ts for both ways of accepting.
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { connect, createServer, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { ListenerManager, type ListenerResult } from "../../../src/listeners/manager.ts";
import { type NativeConn, type NativeEnd, nativeSplicer } from "../../../src/relay/native-splice.ts";
import { HANDOVER_READS } from "../../../src/relay/pump.ts";
import type { Relay } from "../../../src/relay/relay.ts";
import {
  blackholePort,
  cutOff,
  hop,
  listen,
  nativeHub,
  openFds,
  readAll,
  route,
  sha,
  sleep,
  startByteCounter,
  startEcho,
  startRelay,
  startStalledTarget,
  until,
  warm,
} from "./helpers.ts";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

const hub = nativeHub;

/** What the native code still holds: tunnels on the splice thread, connections of listeners. */
const heldNatively = () => ({ tunnels: nativeSplicer()?.stats().tunnels, connections: hub().stats().connections });

/**
 * A relay whose route to app1 lists `addresses` in order, and a native listener for app1:`port` on
 * it; port 0 targets `app1` alone, whose gateway addresses are then all of them, in that order.
 */
async function listenerTo(
  addresses: string[],
  port: number,
  extra: Partial<Parameters<typeof startRelay>[0]> = {},
): Promise<{ relay: Relay; port: number; results: ListenerResult[] }> {
  const [first, ...alternatives] = addresses;
  const r = await startRelay({
    name: "relay-a",
    routes: [route("relay-a", "app1", [hop("app1", first as string, alternatives)])],
    ...extra,
  });
  const results: ListenerResult[] = [];
  const listeners = new ListenerManager({
    carrier: r.relay,
    clientCidrs: ["127.0.0.0/8"],
    log: () => {},
    observer: { connection: (x) => results.push(x) },
  });
  cleanups.push(async () => {
    await listeners.close();
    await r.close();
  });
  const target = port === 0 ? "app1" : `app1:${port}`;
  expect(await listeners.apply([{ listen: "127.0.0.1:0", target }])).toEqual([]);
  const address = listeners.list()[0]?.address as string;
  return { relay: r.relay, port: Number(address.slice(address.lastIndexOf(":") + 1)), results };
}

/** An echo server that keeps its accepted sockets, so a test can reset the target side. */
async function keptEcho(): Promise<{ port: number; accepted: Socket[] }> {
  const accepted: Socket[] = [];
  const server = createServer({ allowHalfOpen: true }, (t) => {
    accepted.push(t);
    t.on("error", () => {});
    t.pipe(t);
  });
  const port = await listen(server);
  cleanups.push(() => server.close());
  return { port, accepted };
}

async function client(port: number): Promise<Socket> {
  const s = connect({ host: "127.0.0.1", port, noDelay: true });
  s.on("error", () => {});
  await once(s, "connect");
  return s;
}

const linux = process.platform === "linux";

describe.runIf(linux)("native listeners", () => {
  it("carry 64 MiB each way with no net.Socket, handed to the thread mid-stream, every byte counted", async () => {
    const echo = await startEcho({ halfClose: true });
    cleanups.push(() => echo.server.close());
    const l = await listenerTo([`ipv4://127.0.0.1:${echo.port}`], echo.port);
    const attached = nativeSplicer()?.stats().attachedTotal ?? 0;
    const s = await client(l.port);
    const sent = randomBytes(64 * 1024 * 1024);
    const got = readAll(s);
    s.end(sent);
    const back = await got;
    expect(back.length).toBe(sent.length);
    expect(sha(back)).toBe(sha(sent));
    await until("the tunnel to close", () => l.relay.activeTunnels === 0);
    expect(nativeSplicer()?.stats().attachedTotal).toBe(attached + 1);
    expect(l.relay.counters.up.client).toBe(sent.length);
    expect(l.relay.counters.down.client).toBe(sent.length);
    expect(l.results).toEqual(["carried"]);
    expect(l.relay.openConnections).toBe(0);
  });

  it("keep short connections on the event loop, and give every descriptor and connection back", async () => {
    const echo = await startEcho({ halfClose: true });
    cleanups.push(() => echo.server.close());
    const l = await listenerTo([`ipv4://127.0.0.1:${echo.port}`], echo.port);
    const before = openFds();
    const attached = nativeSplicer()?.stats().attachedTotal ?? 0;
    const one = async (i: number) => {
      const s = await client(l.port);
      const got = readAll(s);
      s.end(`request ${i}`);
      expect((await got).toString()).toBe(`request ${i}`);
    };
    for (let i = 0; i < 400; i += 16) await Promise.all(Array.from({ length: 16 }, (_, k) => one(i + k)));
    await until("every connection to close", () => l.relay.openConnections === 0);
    expect(l.relay.activeTunnels).toBe(0);
    expect(nativeSplicer()?.stats().attachedTotal).toBe(attached);
    expect(l.results.filter((x) => x === "carried")).toHaveLength(400);
    expect(hub().stats().connections).toBe(0);
    await until("the relay's descriptors to close", () => openFds() <= before);
  });

  it("hold at most one read per direction for a reader that stops, and lose nothing", async () => {
    const target = await startStalledTarget();
    cleanups.push(() => target.server.close());
    const l = await listenerTo([`ipv4://127.0.0.1:${target.port}`], target.port);
    // On the event loop throughout (the thread's own bound is native-splice.test.ts's).
    const handover = hub().handoverReadsForTest(1_000_000);
    cleanups.push(() => hub().handoverReadsForTest(handover));
    const s = await client(l.port);
    const sent = randomBytes(32 * 1024 * 1024);
    s.write(sent);
    // The target reads nothing: the kernel's buffers fill, then the listener keeps what the last
    // write left over and stops reading that direction, and the client's writes back up in the client.
    await until("a write the kernel did not take", () => hub().stats().waiting > 0);
    await sleep(200);
    const waiting = hub().stats().waiting;
    expect(waiting).toBeGreaterThan(0);
    expect(waiting).toBeLessThanOrEqual(256 * 1024);
    expect(s.writableLength).toBeGreaterThan(0);
    expect(l.relay.nativeSplicedTunnels).toBe(0);
    const held = target.accepted() as Socket;
    const chunks: Buffer[] = [];
    held.on("data", (c: Buffer) => chunks.push(c));
    held.resume();
    await until("every byte at the target", () => chunks.reduce((n, c) => n + c.length, 0) === sent.length, 20_000);
    expect(sha(Buffer.concat(chunks))).toBe(sha(sent));
    s.destroy();
    await until("the connection to close", () => l.relay.openConnections === 0);
    expect(hub().stats().waiting).toBe(0);
  });

  it("forward each FIN after what came before it, both ways round, on the loop and on the thread", async () => {
    const counter = await startByteCounter();
    cleanups.push(() => counter.server.close());
    const l = await listenerTo([`ipv4://127.0.0.1:${counter.port}`], counter.port);
    // On the loop: a request and its FIN, then the answer after it.
    const short = await client(l.port);
    const shortAnswer = readAll(short);
    short.end(Buffer.alloc(1000, 1));
    expect((await shortAnswer).toString()).toBe("got 1000 bytes");
    // On the thread: paced writes past HANDOVER_READS (the counter answers nothing until our FIN).
    const long = await client(l.port);
    let sent = 0;
    for (let i = 0; i < 20 * HANDOVER_READS && l.relay.nativeSplicedTunnels === 0; i++) {
      long.write("0123456789abcdef");
      sent += 16;
      await sleep(2);
    }
    expect(l.relay.nativeSplicedTunnels).toBe(1);
    const longAnswer = readAll(long);
    long.end(Buffer.alloc(100_000, 7));
    expect((await longAnswer).toString()).toBe(`got ${sent + 100_000} bytes`);
    await until("the tunnels to close", () => l.relay.activeTunnels === 0);
  });

  it("reset the application when the target resets, on the loop and on the thread", async () => {
    const { port, accepted } = await keptEcho();
    const l = await listenerTo([`ipv4://127.0.0.1:${port}`], port);
    for (const handOver of [false, true]) {
      const s = await client(l.port);
      const cut = cutOff(s);
      if (handOver) await warm(l.relay, s, true);
      else {
        s.write("x");
        await once(s, "data");
      }
      (accepted.at(-1) as Socket).resetAndDestroy();
      await cut;
      await until("the tunnel to close", () => l.relay.activeTunnels === 0);
    }
  });

  it("reset the application when the target reset just before the relay closed gracefully", async () => {
    // The thread's report of the reset is still queued when the close is asked (the event loop
    // was busy): the failure wins, so a cut-off stream never looks complete to the application.
    const { port, accepted } = await keptEcho();
    let conn: NativeConn | undefined;
    let ended: Promise<NativeEnd> | undefined;
    const l = hub().listen("127.0.0.1", 0, (c) => {
      conn = c;
      ended = new Promise((resolve) => {
        c.onEnded = resolve;
      });
      c.onDial = () => {};
      c.dial("127.0.0.1", port);
    });
    cleanups.push(() => hub().unlisten(l.id));
    const s = await client(l.port);
    const cut = cutOff(s);
    const onThread = {
      get nativeSplicedTunnels() {
        return conn?.counts()[2] ?? 0;
      },
    };
    await warm(onThread, s, true);
    // Bytes on the thread, which its report carries once it ended there.
    const handedOver = conn?.counts()[0] ?? 0;
    s.write("on the thread");
    await until("bytes moved on the thread", () => (conn?.counts()[0] ?? 0) > handedOver);
    const before = conn?.counts() ?? [0, 0, 0];
    (accepted.at(-1) as Socket).resetAndDestroy();
    const busyUntil = Date.now() + 200;
    while (Date.now() < busyUntil) {
      // No event runs meanwhile: the thread meets the reset and its report waits for the loop.
    }
    // Still counted while the report waits (the relay sums these at scrape time).
    const waiting = conn?.counts() ?? [0, 0, 0];
    expect(waiting[0]).toBeGreaterThanOrEqual(before[0]);
    expect(waiting[1]).toBeGreaterThanOrEqual(before[1]);
    conn?.destroy(false);
    await cut;
    const end = await ended;
    expect(end?.error).toBe("ECONNRESET");
    expect(end?.up).toBeGreaterThan(0);
    await until("the listener's connections to be gone", () => hub().stats().connections === 0);
  });

  it("keep connection ids exact however often a slot is reused", async () => {
    // An id is generation × 2^24 + slot. Were generations not to wrap, a slot reused 2^29 times
    // would give ids past 2^53 that no call finds, and its connection would hang, held.
    const echo = await startEcho();
    cleanups.push(() => echo.server.close());
    const l = await listenerTo([`ipv4://127.0.0.1:${echo.port}`], echo.port);
    const exchange = async () => {
      const s = await client(l.port);
      s.write("ping");
      const [back] = (await once(s, "data")) as [Buffer];
      expect(back.toString()).toBe("ping");
      s.end();
      await readAll(s);
      await until("the tunnel to close", () => l.relay.activeTunnels === 0);
    };
    await exchange();
    hub().generationsForTest(2 ** 29 - 1);
    for (let i = 0; i < 3; i++) await exchange();
    expect(hub().stats().connections).toBe(0);
  });

  it("close idle connections, on the thread too, and keep ones that talk", async () => {
    const echo = await startEcho();
    cleanups.push(() => echo.server.close());
    const l = await listenerTo([`ipv4://127.0.0.1:${echo.port}`], echo.port, { limits: { idleTimeoutMs: 150 } });
    const s = await client(l.port);
    await warm(l.relay, s, true);
    for (let i = 0; i < 8; i++) {
      s.write("x");
      await sleep(50);
    }
    expect(s.destroyed).toBe(false);
    expect(l.relay.activeTunnels).toBe(1);
    await readAll(s);
    await until("the tunnel to close", () => l.relay.activeTunnels === 0);
    expect(l.relay.nativeSplicedTunnels).toBe(0);
    // Taken back from the thread before its descriptors closed.
    expect(heldNatively()).toEqual({ tunnels: 0, connections: 0 });
  });

  it("try the hop's next address when a dial fails, and refuse (closing) when none answers", async () => {
    const echo = await startEcho();
    cleanups.push(() => echo.server.close());
    // A port nothing listens on: taken and released.
    const gone = createServer();
    const deadPort = await listen(gone);
    gone.close();
    const failed: unknown[] = [];
    const l = await listenerTo([`ipv4://127.0.0.1:${deadPort}`, `ipv4://127.0.0.1:${echo.port}`], 0, {
      log: (_level, msg, fields) => msg === "next hop address failed" && failed.push(fields.why),
    });
    const s = await client(l.port);
    s.write("ping");
    expect(String((await once(s, "data"))[0])).toBe("ping");
    expect(failed).toEqual([`ipv4://127.0.0.1:${deadPort}: ECONNREFUSED`]);
    s.destroy();
    const none = await listenerTo([`ipv4://127.0.0.1:${deadPort}`], deadPort);
    const refused = await client(none.port);
    refused.write("hello");
    // Closed with a FIN, not reset: what it sent was read and dropped.
    await once(refused, "end");
    expect(none.results).toEqual(["next_hop_failed"]);
    await until("the refused connection to close", () => none.relay.openConnections === 0);
  });

  it("give up a dial at the connect timeout and try the next address", async () => {
    const echo = await startEcho();
    cleanups.push(() => echo.server.close());
    const blackhole = await blackholePort(cleanups);
    const failed: unknown[] = [];
    const l = await listenerTo([`ipv4://127.0.0.1:${blackhole}`, `ipv4://127.0.0.1:${echo.port}`], 0, {
      limits: { connectTimeoutMs: 300 },
      log: (_level, msg, fields) => msg === "next hop address failed" && failed.push(fields.why),
    });
    const t0 = performance.now();
    const s = await client(l.port);
    s.write("ping");
    expect(String((await once(s, "data"))[0])).toBe("ping");
    // The first address took the whole timeout (the sweep runs late by at most 1/8 of it).
    expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
    expect(failed).toEqual([`connect to ipv4://127.0.0.1:${blackhole} timed out`]);
    s.destroy();
    const only = await listenerTo([`ipv4://127.0.0.1:${blackhole}`], blackhole, { limits: { connectTimeoutMs: 300 } });
    const refused = await client(only.port);
    await new Promise((resolve) => refused.once("close", resolve));
    expect(only.results).toEqual(["connect_timeout"]);
    await until("the refused connection to close", () => only.relay.openConnections === 0);
  });

  it("are closed by destroyAll, on the loop, on the thread and while waiting for their path", async () => {
    const echo = await startEcho();
    cleanups.push(() => echo.server.close());
    const l = await listenerTo([`ipv4://127.0.0.1:${echo.port}`], echo.port);
    const onThread = await Promise.all(Array.from({ length: 10 }, () => client(l.port)));
    for (const s of onThread) await warm(l.relay, s, true);
    expect(l.relay.nativeSplicedTunnels).toBe(10);
    const onLoop = await Promise.all(Array.from({ length: 10 }, () => client(l.port)));
    for (const s of onLoop) {
      s.write("x");
      await once(s, "data");
    }
    expect(l.relay.activeTunnels).toBe(20);
    const ended = [...onThread, ...onLoop].map((s) => readAll(s));
    l.relay.destroyAll();
    await Promise.all(ended);
    await until("every connection to close", () => l.relay.openConnections === 0);
    expect(l.relay.activeTunnels).toBe(0);
    expect(heldNatively()).toEqual({ tunnels: 0, connections: 0 });
  });

  it("survive 600 connections that end every way at once, and give everything back", async () => {
    // Behind the listener: an echo that resets its connection when it reads a "!".
    const server = createServer({ allowHalfOpen: true }, (t) => {
      t.on("error", () => {});
      t.on("data", (c: Buffer) => (c.includes(0x21) ? t.resetAndDestroy() : t.write(c)));
      t.on("end", () => t.end());
    });
    const port = await listen(server);
    cleanups.push(() => server.close());
    const l = await listenerTo([`ipv4://127.0.0.1:${port}`], port);
    const before = openFds();
    // A fixed mix, so a failure is the same every run: short and long, clean ends, resets from
    // either side, half-closes, a client that goes before its path is up.
    const kinds = ["echo", "long", "client-reset", "target-reset", "half-close", "early-reset"] as const;
    const one = async (i: number): Promise<void> => {
      const kind = kinds[i % kinds.length] as (typeof kinds)[number];
      const s = await client(l.port);
      const closed = new Promise((resolve) => s.once("close", resolve));
      if (kind === "early-reset") {
        s.resetAndDestroy();
      } else if (kind === "echo" || kind === "half-close") {
        const got = readAll(s);
        const msg = Buffer.alloc(kind === "echo" ? 100 : 70_000, 97 + (i % 26));
        s.end(msg);
        expect((await got).equals(msg)).toBe(true);
      } else {
        const n = kind === "long" ? 2 * HANDOVER_READS : 3;
        await warm(l.relay, s, true, n);
        if (kind === "client-reset") s.resetAndDestroy();
        else if (kind === "target-reset") s.write("!");
        else s.end();
      }
      await closed;
    };
    for (let i = 0; i < 600; i += 30) await Promise.all(Array.from({ length: 30 }, (_, k) => one(i + k)));
    await until("every connection to close", () => l.relay.openConnections === 0, 10_000);
    expect(l.relay.activeTunnels).toBe(0);
    expect(l.relay.nativeSplicedTunnels).toBe(0);
    expect(heldNatively()).toEqual({ tunnels: 0, connections: 0 });
    await until("the relay's descriptors to close", () => openFds() <= before, 10_000);
  });

  it("listen on IPv6 and on a dual-stack wildcard as net.Server does", async () => {
    const echo = await startEcho();
    cleanups.push(() => echo.server.close());
    const r = await startRelay({
      name: "relay-a",
      routes: [route("relay-a", "app1", [hop("app1", `ipv4://127.0.0.1:${echo.port}`)])],
    });
    const results: ListenerResult[] = [];
    const listeners = new ListenerManager({
      carrier: r.relay,
      clientCidrs: ["127.0.0.0/8", "::1/128"],
      log: () => {},
      observer: { connection: (x) => results.push(x) },
    });
    cleanups.push(async () => {
      await listeners.close();
      await r.close();
    });
    await listeners.apply([
      { listen: "[::1]:0", target: `app1:${echo.port}` },
      { listen: "[::]:0", target: `app1:${echo.port}` },
    ]);
    const [v6, wildcard] = listeners.list().map((l) => Number(l.address.slice(l.address.lastIndexOf(":") + 1)));
    expect(listeners.list()[0]?.address).toMatch(/^\[::1\]:\d+$/);
    for (const [host, port] of [
      ["::1", v6],
      ["::1", wildcard],
      // An IPv4 client of the wildcard arrives as ::ffff:127.0.0.1, which client_cidrs admits as 127.0.0.1.
      ["127.0.0.1", wildcard],
    ] as const) {
      const s = connect({ host, port: port as number });
      s.on("error", () => {});
      await once(s, "connect");
      s.write("ping");
      expect(String((await once(s, "data"))[0])).toBe("ping");
      s.destroy();
    }
    expect(results).toEqual(["carried", "carried", "carried"]);
  });

  it("refuse new connections while the relay drains, and leave carried ones alone", async () => {
    const echo = await startEcho();
    cleanups.push(() => echo.server.close());
    const l = await listenerTo([`ipv4://127.0.0.1:${echo.port}`], echo.port);
    const carried = await client(l.port);
    carried.write("one");
    await once(carried, "data");
    l.relay.startDrain();
    const late = await client(l.port);
    await once(late, "end");
    expect(l.results).toEqual(["carried", "over_capacity"]);
    carried.write("two");
    expect(String((await once(carried, "data"))[0])).toBe("two");
    carried.destroy();
  });
});
