// The native splice (k8s-agent/native/splice.c) behind a real relay and real loopback sockets:
// the relay hands every plain socket-to-socket tunnel to it by default where it was built.
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { closeSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { nativeSplicer, nativeSpliceStatus, type SpliceEnd } from "../../../src/relay/native-splice.ts";
import { HANDOVER_READS } from "../../../src/relay/pump.ts";
import {
  cutOff,
  hop,
  listen,
  openFds,
  readAll,
  request,
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

async function relayTo(port: number, extra: Partial<Parameters<typeof startRelay>[0]> = {}) {
  const r = await startRelay({
    name: "relay-a",
    routes: [route("relay-a", "app1", [hop("app1", `ipv4://127.0.0.1:${port}`)])],
    ...extra,
  });
  cleanups.push(() => r.close());
  return r;
}

/**
 * A relay to a target that reads and never answers, and a tunnel through it on the splice's thread:
 * `cut` settles once the application sees a reset, `target` is the target's side.
 */
async function splicedToSilentTarget() {
  let accepted: Socket | undefined;
  const server = createServer((t) => {
    accepted = t;
    t.on("error", () => {});
  });
  const port = await listen(server);
  cleanups.push(() => server.close());
  const r = await relayTo(port);
  const s = await tunnel(r.port);
  const cut = cutOff(s);
  await warm(r.relay, s, false);
  await until("the target's connection", () => accepted !== undefined);
  return { r, s, cut, target: () => accepted as Socket };
}

async function tunnel(port: number): Promise<Socket> {
  const a = await request(port, "CONNECT app1 HTTP/1.1\r\n\r\n");
  expect(a.status).toBe(200);
  return a.socket;
}

// The agent runs on Linux, where `npm install` builds the splice; a checkout that lost it must fail here, not skip.
const linux = process.platform === "linux";

describe.runIf(linux)("native splice", () => {
  it("is built and loaded", () => {
    expect(nativeSplicer(), nativeSpliceStatus()).toBeDefined();
  });

  it("takes a streaming tunnel over mid-stream: 64 MiB each way intact, half-close forwarded, every byte counted", async () => {
    const echo = await startEcho({ halfClose: true });
    cleanups.push(() => echo.server.close());
    const r = await relayTo(echo.port);
    const s = await tunnel(r.port);
    const attached = nativeSplicer()?.stats().attachedTotal ?? 0;
    // It starts on the JavaScript path and is handed over between two reads of the stream.
    expect(r.relay.nativeSplicedTunnels).toBe(0);
    const sent = randomBytes(64 * 1024 * 1024);
    const got = readAll(s);
    s.end(sent);
    const back = await got;
    expect(back.length).toBe(sent.length);
    expect(sha(back)).toBe(sha(sent));
    await until("the tunnel to close", () => r.relay.activeTunnels === 0);
    expect(r.relay.nativeSplicedTunnels).toBe(0);
    expect(nativeSplicer()?.stats().attachedTotal).toBe(attached + 1);
    expect(r.relay.counters.up.client).toBe(sent.length);
    expect(r.relay.counters.down.client).toBe(sent.length);
  });

  it("leaves a short tunnel on the JavaScript path: a request, an answer, the ends", async () => {
    const echo = await startEcho({ halfClose: true });
    cleanups.push(() => echo.server.close());
    const r = await relayTo(echo.port);
    const attached = nativeSplicer()?.stats().attachedTotal ?? 0;
    for (let i = 0; i < 20; i++) {
      const s = await tunnel(r.port);
      const got = readAll(s);
      s.end("GET / HTTP/1.0\r\n\r\n");
      expect((await got).toString()).toBe("GET / HTTP/1.0\r\n\r\n");
    }
    await until("the tunnels to close", () => r.relay.activeTunnels === 0);
    expect(nativeSplicer()?.stats().attachedTotal).toBe(attached);
  });

  it("keeps the other direction open after one side's FIN, both ways round", async () => {
    const counter = await startByteCounter();
    cleanups.push(() => counter.server.close());
    const r = await relayTo(counter.port);
    const s = await tunnel(r.port);
    const warmed = await warm(r.relay, s, false);
    const answer = readAll(s);
    s.end(Buffer.alloc(100_000, 7));
    // The target answers only after it read our FIN: the tunnel carried it and kept the way back open.
    expect((await answer).toString()).toBe(`got ${100_000 + warmed} bytes`);
    await until("the tunnel to close", () => r.relay.activeTunnels === 0);
  });

  it("counts live tunnels' bytes while they are open", async () => {
    const echo = await startEcho();
    cleanups.push(() => echo.server.close());
    const r = await relayTo(echo.port);
    const s = await tunnel(r.port);
    const warmed = await warm(r.relay, s, true);
    let got = 0;
    s.on("data", (c: Buffer) => {
      got += c.length;
    });
    s.resume();
    s.write(Buffer.alloc(5000, 1));
    await until("the echo", () => got === 5000);
    expect(r.relay.counters.up.client).toBe(warmed + 5000);
    expect(r.relay.counters.down.client).toBe(warmed + 5000);
    s.destroy();
  });

  it("counts bytes sent ahead of the 200 while other tunnels are live on the thread", async () => {
    const echo = await startEcho();
    cleanups.push(() => echo.server.close());
    const r = await relayTo(echo.port);
    const live = await tunnel(r.port);
    const warmed = await warm(r.relay, live, true);
    // The request's first bytes ride behind its head: the relay forwards them itself, before the splice.
    const s = connect(r.port, "127.0.0.1");
    s.on("error", () => {});
    await once(s, "connect");
    let got = "";
    s.on("data", (c: Buffer) => {
      got += c.toString("latin1");
    });
    s.write("CONNECT app1 HTTP/1.1\r\n\r\nahead");
    await until("the bytes sent ahead to come back", () => got.endsWith("ahead"));
    expect(r.relay.nativeSplicedTunnels).toBe(1);
    expect(r.relay.counters.up.client).toBe(warmed + 5);
    expect(r.relay.counters.down.client).toBe(warmed + 5);
    s.destroy();
    live.destroy();
  });

  it("holds at most one read per direction for a reader that stops, and loses nothing", async () => {
    const target = await startStalledTarget();
    cleanups.push(() => target.server.close());
    const r = await relayTo(target.port);
    const s = await tunnel(r.port);
    const splicer = nativeSplicer();
    const sent = randomBytes(32 * 1024 * 1024);
    s.write(sent);
    // The target reads nothing: the kernel's buffers fill, then the thread holds what the last
    // write left over and stops reading, so the client's writes back up in the client.
    await until("a write the kernel did not take", () => (splicer?.stats().waiting ?? 0) > 0);
    await sleep(200);
    const waiting = splicer?.stats().waiting ?? 0;
    expect(waiting).toBeGreaterThan(0);
    expect(waiting).toBeLessThanOrEqual(256 * 1024);
    expect(s.writableLength).toBeGreaterThan(0);
    const held = target.accepted() as Socket;
    const chunks: Buffer[] = [];
    held.on("data", (c: Buffer) => chunks.push(c));
    held.resume();
    await until("every byte at the target", () => chunks.reduce((n, c) => n + c.length, 0) === sent.length, 20_000);
    expect(sha(Buffer.concat(chunks))).toBe(sha(sent));
    s.destroy();
  });

  it("resets the application when the target resets mid-transfer", async () => {
    const { r, cut, target } = await splicedToSilentTarget();
    target().resetAndDestroy();
    await cut;
    await until("the tunnel to close", () => r.relay.activeTunnels === 0);
  });

  it("never lets the byte counters go back while an ended tunnel's report waits for the event loop", async () => {
    // Prometheus reads a counter that goes down as a restart: the bytes a tunnel moved on the
    // thread must count from its end until its report reaches JavaScript, not drop out between.
    const { r, s, cut, target } = await splicedToSilentTarget();
    const total = () => {
      const c = r.relay.counters;
      return Object.values(c.up).reduce((a, b) => a + b, 0) + Object.values(c.down).reduce((a, b) => a + b, 0);
    };
    const handedOver = total();
    s.write(Buffer.alloc(4096, 1));
    await until("bytes moved on the thread", () => total() >= handedOver + 4096);
    const before = total();
    target().resetAndDestroy();
    const busyUntil = Date.now() + 200;
    while (Date.now() < busyUntil) {
      // No event runs meanwhile: the thread meets the reset and its report waits for the loop.
    }
    expect(total()).toBeGreaterThanOrEqual(before);
    await cut;
    await until("the tunnel to close", () => r.relay.activeTunnels === 0);
    expect(total()).toBeGreaterThanOrEqual(before);
  });

  it("closes idle tunnels, taking them back from the thread first", async () => {
    const echo = await startEcho();
    cleanups.push(() => echo.server.close());
    const r = await relayTo(echo.port, { limits: { idleTimeoutMs: 150 } });
    const s = await tunnel(r.port);
    await warm(r.relay, s, true);
    // Traffic keeps it open past the idle time: the sweep sees the thread's bytes.
    for (let i = 0; i < 8; i++) {
      s.write("x");
      await sleep(50);
    }
    expect(s.destroyed).toBe(false);
    expect(r.relay.activeTunnels).toBe(1);
    // Then quiet: the relay closes both sockets, and the application reads the end.
    await readAll(s);
    await until("the tunnel to close", () => r.relay.activeTunnels === 0);
    expect(r.relay.nativeSplicedTunnels).toBe(0);
    expect(nativeSplicer()?.stats().tunnels).toBe(0);
  });

  it("gives every descriptor back: 512 tunnels, 16 at a time, and destroyAll on live ones", async () => {
    const echo = await startEcho();
    cleanups.push(() => echo.server.close());
    const r = await relayTo(echo.port);
    const before = openFds();
    const attached = nativeSplicer()?.stats().attachedTotal ?? 0;
    const one = async (i: number) => {
      const s = await tunnel(r.port);
      // Each long enough to be handed to the thread, and ended there.
      await warm(r.relay, s, true, 2 * HANDOVER_READS);
      const msg = Buffer.from(`message ${i}`);
      const got = readAll(s);
      s.end(msg);
      expect((await got).toString()).toBe(msg.toString());
    };
    for (let i = 0; i < 512; i += 16) await Promise.all(Array.from({ length: 16 }, (_, k) => one(i + k)));
    await until("every tunnel to close", () => r.relay.activeTunnels === 0);
    expect(nativeSplicer()?.stats().attachedTotal).toBe(attached + 512);
    // Live tunnels torn down from outside (the drain deadline): taken back, then closed.
    const live = await Promise.all(Array.from({ length: 20 }, () => tunnel(r.port)));
    for (const s of live) await warm(r.relay, s, true);
    expect(r.relay.nativeSplicedTunnels).toBe(20);
    const ended = live.map((s) => readAll(s));
    r.relay.destroyAll();
    await Promise.all(ended);
    for (const s of live) s.destroy();
    await until("the live tunnels to close", () => r.relay.activeTunnels === 0);
    expect(nativeSplicer()?.stats().tunnels).toBe(0);
    await until("the relay's descriptors to close", () => openFds() <= before);
  });

  it("stays off for a relay built with nativeSplice: false", async () => {
    const echo = await startEcho();
    cleanups.push(() => echo.server.close());
    const r = await relayTo(echo.port, { nativeSplice: false });
    const s = await tunnel(r.port);
    expect(r.relay.activeTunnels).toBe(1);
    expect(r.relay.nativeSplicedTunnels).toBe(0);
    s.destroy();
  });

  it("reports a tunnel whose descriptors the thread cannot watch instead of keeping it silent", async () => {
    const splicer = nativeSplicer();
    if (splicer === undefined) throw new Error(nativeSpliceStatus());
    // epoll refuses regular files (EPERM): a tunnel it cannot watch would otherwise never end.
    const dir = mkdtempSync(join(tmpdir(), "hopway-splice-"));
    const up = openSync(join(dir, "up"), "w+");
    const down = openSync(join(dir, "down"), "w+");
    cleanups.push(() => {
      closeSync(up);
      closeSync(down);
      rmSync(dir, { recursive: true });
    });
    const live = splicer.stats().tunnels;
    const ended = new Promise<SpliceEnd>((resolve) => splicer.attachFdsForTest(up, down, resolve));
    expect(await ended).toEqual({ up: 0, down: 0, error: "EPERM" });
    expect(splicer.stats().tunnels).toBe(live);
  });

  it("refuses bad descriptors with a stable code and leaves sockets it cannot take alone", async () => {
    const splicer = nativeSplicer();
    if (splicer === undefined) throw new Error(nativeSpliceStatus());
    // A unix socket is not a TCP handle: attach declines and nothing changes.
    const path = `/tmp/hopway-splice-test-${process.pid}.sock`;
    const server = createServer((c) => c.end());
    server.listen(path);
    await once(server, "listening");
    cleanups.push(() => server.close());
    const u = connect(path);
    await once(u, "connect");
    const echo = await startEcho();
    cleanups.push(() => echo.server.close());
    const t = connect(echo.port, "127.0.0.1");
    await once(t, "connect");
    expect(splicer.attach(u, t, 0, () => {})).toBeUndefined();
    t.write("still Node's");
    const [back] = (await once(t, "data")) as [Buffer];
    expect(back.toString()).toBe("still Node's");
    u.destroy();
    t.destroy();
  });

  it("knows a tunnel by its exact id only: not by a fraction beside it, Infinity or 2^64", async () => {
    const splicer = nativeSplicer();
    if (splicer === undefined) throw new Error(nativeSpliceStatus());
    const echo = await startEcho();
    cleanups.push(() => echo.server.close());
    const held: Socket[] = [];
    const server = createServer((c) => held.push(c));
    const port = await listen(server);
    cleanups.push(() => {
      for (const h of held) h.destroy();
      server.close();
    });
    const a = connect(port, "127.0.0.1");
    const b = connect(echo.port, "127.0.0.1");
    await Promise.all([once(a, "connect"), once(b, "connect")]);
    cleanups.push(() => {
      a.destroy();
      b.destroy();
    });
    const id = splicer.attach(a, b, 0, () => {});
    if (id === undefined) throw new Error("attach declined two TCP sockets");
    expect(splicer.bytes(id)).toEqual([0, 0]);
    for (const other of [id + 0.5, id + 0.25, Number.POSITIVE_INFINITY, 2 ** 64, Number.NaN]) {
      expect(splicer.bytes(other), String(other)).toBeUndefined();
      expect(splicer.moved(other), String(other)).toBe(false);
    }
    expect(splicer.cancel(id + 0.5)).toBeUndefined();
    expect(splicer.cancel(id)).toEqual([0, 0]);
  });
});
