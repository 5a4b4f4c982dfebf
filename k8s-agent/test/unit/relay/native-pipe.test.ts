// Native pipes (NativePipe in native-splice.ts, listen.c's PIPED state) through real relays, real
// links and real loopback sockets: a native listener's connection whose path goes on over links,
// and the last relay's connection to the target, read and written with no net.Socket at either end.
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { ListenerManager, type ListenerResult } from "../../../src/listeners/manager.ts";
import {
  cutOff,
  listen,
  nativeHub,
  openFds,
  type Running,
  readAll,
  receiveHash,
  sendRandom,
  startByteCounter,
  startChain,
  startStalledTarget,
  until,
} from "./helpers.ts";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

const hub = nativeHub;

/**
 * r2 → r3 → r1 over links to the target on `targetPort`, with a native listener on r2 for it:
 * the listener's port, the relays, and what the listener reported of each connection.
 */
async function listenerChain(
  targetPort: number,
  extra: Parameters<typeof startChain>[2] = {},
): Promise<{ port: number; relays: Running[]; results: ListenerResult[] }> {
  const relays = await startChain(["r2", "r3", "r1"], `ipv4://127.0.0.1:${targetPort}`, extra);
  const results: ListenerResult[] = [];
  const listeners = new ListenerManager({
    carrier: (relays[0] as Running).relay,
    clientCidrs: ["127.0.0.0/8"],
    log: () => {},
    observer: { connection: (x) => results.push(x) },
  });
  cleanups.push(async () => {
    await listeners.close();
    for (const r of relays) await r.close();
  });
  expect(await listeners.apply([{ listen: "127.0.0.1:0", target: `app1:${targetPort}` }])).toEqual([]);
  const address = listeners.list()[0]?.address as string;
  return { port: Number(address.slice(address.lastIndexOf(":") + 1)), relays, results };
}

async function target(onConnection: (s: Socket) => void): Promise<number> {
  const server: Server = createServer({ allowHalfOpen: true }, (s) => {
    s.on("error", () => {});
    onConnection(s);
  });
  const port = await listen(server);
  cleanups.push(() => server.close());
  return port;
}

async function client(port: number): Promise<Socket> {
  const s = connect({ host: "127.0.0.1", port, noDelay: true, allowHalfOpen: true });
  s.on("error", () => {});
  await once(s, "connect");
  return s;
}

const linux = process.platform === "linux";

describe.runIf(linux)("native pipes: a listener's path over links, and the last relay's target", () => {
  it("carry 64 MiB each way with no net.Socket at either end, every byte counted", { timeout: 60_000 }, async () => {
    const total = 64 * 1024 * 1024;
    let atTarget: Promise<[{ bytes: number; sha: string }, string]> | undefined;
    const port = await target((s) => {
      atTarget = Promise.all([receiveHash(s), sendRandom(s, total)]);
    });
    const l = await listenerChain(port);
    const [r2, , r1] = l.relays as [Running, Running, Running];
    const before = hub().stats();
    const s = await client(l.port);
    const [down, sentUp] = await Promise.all([receiveHash(s), sendRandom(s, total)]);
    for (let i = 0; i < 100 && atTarget === undefined; i++) await new Promise((r) => setTimeout(r, 10));
    const [up, sentDown] = await (atTarget as NonNullable<typeof atTarget>);
    expect(up).toEqual({ bytes: total, sha: sentUp });
    expect(down).toEqual({ bytes: total, sha: sentDown });
    // Written by pipes: the first relay's down direction to the client, the last's up direction to the target.
    expect(hub().stats().pipedWritten - before.pipedWritten).toBe(2 * total);
    expect(r2.relay.counters.up.client).toBeGreaterThanOrEqual(total);
    expect(r2.relay.counters.down.client).toBeGreaterThanOrEqual(total);
    expect(r1.relay.counters.up.relay).toBeGreaterThanOrEqual(total);
    expect(r1.relay.counters.down.relay).toBeGreaterThanOrEqual(total);
    await until("the tunnels to close", () => l.relays.every((r) => r.relay.activeTunnels === 0));
    await until("the native connections to be gone", () => hub().stats().connections === before.connections);
    expect(l.results).toEqual(["carried"]);
  });

  it("forward each FIN after what came before it, both ways round", async () => {
    // Client FIN first: the target answers only after it.
    const counter = await startByteCounter();
    cleanups.push(() => counter.server.close());
    const a = await listenerChain(counter.port);
    const first = await client(a.port);
    const answer = readAll(first);
    first.end(Buffer.alloc(100_000, 7));
    expect((await answer).toString()).toBe("got 100000 bytes");

    // Target FIN first: the client still sends after it, and the target still gets it.
    let gotAfterFin: Promise<Buffer> | undefined;
    const port = await target((s) => {
      s.end("bye first");
      gotAfterFin = readAll(s);
    });
    const b = await listenerChain(port);
    const second = await client(b.port);
    const chunks: Buffer[] = [];
    second.on("data", (c: Buffer) => chunks.push(c));
    await once(second, "end");
    expect(Buffer.concat(chunks).toString()).toBe("bye first");
    second.end("still talking");
    await until("the target's half", () => gotAfterFin !== undefined);
    expect((await gotAfterFin)?.toString()).toBe("still talking");
    for (const l of [a, b]) {
      await until("the tunnels to close", () => l.relays.every((r) => r.relay.activeTunnels === 0));
    }
  });

  it("hold a bounded amount for a client that stops reading, and lose nothing", { timeout: 30_000 }, async () => {
    const total = 32 * 1024 * 1024;
    let sent: Promise<string> | undefined;
    const port = await target((s) => {
      sent = sendRandom(s, total);
    });
    const l = await listenerChain(port);
    const s = await client(l.port);
    s.pause();
    await until("the target to start sending", () => sent !== undefined);
    // The client reads nothing: its kernel buffers fill, then the first relay's pipe keeps what
    // the last write left over and the link stream stops, so the bytes wait behind its window.
    await until("a write the kernel did not take", () => hub().stats().waiting > 0);
    await new Promise((r) => setTimeout(r, 300));
    // The pipe: at most the relay's buffer_bytes (256 KiB) and one chunk past it. The relay in
    // all: that, and what the link stream received within its window and holds for it (2 MiB,
    // which may grow to max_stream_window_bytes, 16 MiB, on a slow machine): not the 32 MiB sent.
    const r2 = l.relays[0] as Running;
    expect(hub().stats().waiting).toBeGreaterThan(0);
    expect(hub().stats().waiting).toBeLessThanOrEqual(256 * 1024 + 64 * 1024);
    expect(r2.relay.checkBufferedForTest()).toBeLessThanOrEqual(16 * 1024 * 1024 + 320 * 1024);
    const got = receiveHash(s);
    s.resume();
    expect(await got).toEqual({ bytes: total, sha: await sent });
    s.end();
    await until("the tunnels to close", () => l.relays.every((r) => r.relay.activeTunnels === 0));
    expect(hub().stats().waiting).toBe(0);
  });

  it("reset the other application when one end resets", async () => {
    const accepted: Socket[] = [];
    const port = await target((s) => {
      accepted.push(s);
      s.pipe(s);
    });
    const l = await listenerChain(port);
    // The target resets: the client is cut, not ended.
    const a = await client(l.port);
    const cutA = cutOff(a);
    a.write("x");
    await once(a, "data");
    (accepted.at(-1) as Socket).resetAndDestroy();
    await cutA;
    // The client resets: the target is cut.
    const b = await client(l.port);
    b.write("y");
    await once(b, "data");
    const t = accepted.at(-1) as Socket;
    const cutB = cutOff(t);
    b.resetAndDestroy();
    await cutB;
    await until("the tunnels to close", () => l.relays.every((r) => r.relay.activeTunnels === 0));
  });

  it("close the client when the target refuses (next_hop_failed), and give every descriptor back", async () => {
    // A port nothing listens on: the last relay's native dial fails, and the listener's client is closed.
    const closed = createServer();
    const deadPort = await listen(closed);
    await new Promise((r) => closed.close(r));
    const l = await listenerChain(deadPort);
    // The first one brings the links up; they stay.
    const warmUp = await client(l.port);
    expect((await readAll(warmUp)).length).toBe(0);
    warmUp.destroy();
    await until("the links", () => l.relays[0]?.relay.linksByPeer().size === 1);
    const before = openFds();
    for (let i = 0; i < 20; i++) {
      const s = await client(l.port);
      expect((await readAll(s)).length).toBe(0);
      s.destroy();
    }
    await until("the listener's reports", () => l.results.length === 21);
    expect(new Set(l.results)).toEqual(new Set(["next_hop_failed"]));
    // r2's own (r3 and r1 also count the links they accepted, which stay up).
    await until("the first relay's connections to close", () => l.relays[0]?.relay.openConnections === 0);
    await until("the native connections to be gone", () => hub().stats().connections === 0);
    await until("the descriptors to close", () => openFds() <= before);
  });

  it("are closed when idle, and kept while they talk", async () => {
    const echo = await target((s) => s.pipe(s));
    const l = await listenerChain(echo, { limits: { idleTimeoutMs: 150 } });
    const s = await client(l.port);
    s.on("data", () => {});
    for (let i = 0; i < 8; i++) {
      s.write("x");
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(s.destroyed).toBe(false);
    expect(l.relays[0]?.relay.activeTunnels).toBe(1);
    // Silent past the idle timeout: the relays close it (the client sees its end).
    await new Promise((resolve) => {
      s.once("end", resolve);
      s.once("close", resolve);
    });
    await until("the tunnels to close", () => l.relays.every((r) => r.relay.activeTunnels === 0));
    await until("the native connections to be gone", () => hub().stats().connections === 0);
  });

  it("carry on through a drain, which ends once they end", async () => {
    const echo = await target((s) => s.pipe(s));
    const l = await listenerChain(echo);
    const r2 = l.relays[0] as Running;
    const s = await client(l.port);
    s.write("before");
    await once(s, "data");
    r2.relay.startDrain();
    expect(await r2.relay.waitIdle(100)).toBe(false);
    s.write("during");
    expect(String((await once(s, "data"))[0])).toBe("during");
    const idle = r2.relay.waitIdle(5000);
    s.end();
    expect(await idle).toBe(true);
    // The last relay's connection to the target closes once the echo's end reached it.
    await until("the native connections to be gone", () => hub().stats().connections === 0);
  });

  it("are closed by destroyAll while carrying", async () => {
    const stalled = await startStalledTarget();
    cleanups.push(() => stalled.server.close());
    const l = await listenerChain(stalled.port);
    const s = await client(l.port);
    await until("the target's connection", () => stalled.accepted() !== undefined);
    stalled.accepted()?.on("error", () => {});
    // Closed gracefully (FIN) or reset: either ends it here.
    const cut = new Promise((resolve) => {
      s.once("end", resolve);
      s.once("close", resolve);
    });
    s.write(randomBytes(1024));
    await until("the tunnel", () => l.relays.every((r) => r.relay.activeTunnels === 1));
    for (const r of l.relays) r.relay.destroyAll();
    await cut;
    await until("the native connections to be gone", () => hub().stats().connections === 0);
  });
});
