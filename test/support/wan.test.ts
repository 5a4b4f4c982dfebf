// The WAN emulator against real loopback sockets: its delays, handshake hold,
// integrity, rate cap, half-close and resets, and the bound on what it holds
// when the reader stalls. Timings are compared with the same measurement taken
// directly (no emulator) in the same run, so a loaded machine widens both alike.
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { startWan, type WanLink } from "./wan.ts";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function listen(server: Server): Promise<number> {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  const a = server.address();
  return typeof a === "object" && a ? a.port : 0;
}

async function link(port: number, delayMs: number, extra: { rateBytesPerSec?: number; windowBytes?: number } = {}) {
  const l = await startWan({ target: { host: "127.0.0.1", port }, delayMs, ...extra });
  cleanups.push(() => l.close());
  return l;
}

/** A target that hands each accepted socket (and its accept time) to the test. */
async function target(): Promise<{ port: number; next: () => Promise<{ socket: Socket; at: number }> }> {
  const waiting: Array<(v: { socket: Socket; at: number }) => void> = [];
  const ready: Array<{ socket: Socket; at: number }> = [];
  const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    socket.on("error", () => {});
    cleanups.push(() => void socket.destroy());
    const v = { socket, at: performance.now() };
    const w = waiting.shift();
    if (w) w(v);
    else ready.push(v);
  });
  const port = await listen(server);
  return {
    port,
    next: () => {
      const v = ready.shift();
      return v ? Promise.resolve(v) : new Promise((r) => waiting.push(r));
    },
  };
}

function dial(port: number): Socket {
  const s = connect({ host: "127.0.0.1", port, noDelay: true, allowHalfOpen: true });
  s.on("error", () => {});
  cleanups.push(() => void s.destroy());
  return s;
}

/** One-way times of `n` one-byte messages from `a` to `b`, measured on this process's clock. */
async function oneWay(a: Socket, b: Socket, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    a.write("x");
    await once(b, "data");
    out.push(performance.now() - t);
    await new Promise((r) => setTimeout(r, 5));
  }
  return out;
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] as number;

async function pair(port: number, t: Awaited<ReturnType<typeof target>>) {
  const c = dial(port);
  await once(c, "connect");
  c.write("h");
  const { socket } = await t.next();
  await once(socket, "data");
  return { c, s: socket };
}

describe("WAN emulator", () => {
  it("delays each direction by the one-way delay, never less and only a few ms more than a direct link", async () => {
    const d = 30;
    const t = await target();
    const direct = await pair(t.port, t);
    const base = [...(await oneWay(direct.c, direct.s, 8)), ...(await oneWay(direct.s, direct.c, 8))];
    const l = await link(t.port, d);
    const via = await pair(l.port, t);
    const forward = await oneWay(via.c, via.s, 8);
    const backward = await oneWay(via.s, via.c, 8);
    // Never early, on every sample. Late only by scheduling: a loaded machine delays some samples
    // (so the median gets a wide margin) but not the best one, unless the emulator adds time itself.
    for (const ms of [...forward, ...backward]) expect(ms).toBeGreaterThanOrEqual(d);
    for (const dir of [forward, backward]) {
      expect(Math.min(...dir)).toBeLessThanOrEqual(d + Math.min(...base) + 3);
      expect(median(dir)).toBeLessThanOrEqual(d + median(base) + 15);
    }
  });

  it("holds a new connection for the handshake: the target accepts and sees the first byte 3 × d after connect", async () => {
    const d = 40;
    const t = await target();
    const l = await link(t.port, d);
    const firstBytes: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      const c = dial(l.port);
      c.write("first");
      const { socket, at } = await t.next();
      await once(socket, "data");
      firstBytes.push(performance.now() - t0);
      expect(at - t0).toBeGreaterThanOrEqual(3 * d - 1);
      if (i === 0) {
        // Later bytes on the same connection pay only the one-way delay.
        const [later] = await oneWay(c, socket, 1);
        expect(later).toBeGreaterThanOrEqual(d);
        expect(later).toBeLessThan(2 * d);
      }
    }
    for (const ms of firstBytes) expect(ms).toBeGreaterThanOrEqual(3 * d);
    // One more one-way delay (4d) would be 40 ms more: the best of three stays well below that.
    expect(Math.min(...firstBytes)).toBeLessThanOrEqual(3 * d + 15);
  });

  it("delivers every byte, in order, both ways at once, and passes the half-closes through", async () => {
    const size = 4 * 1024 * 1024;
    const up = randomBytes(size);
    const down = randomBytes(size);
    const t = await target();
    const l = await link(t.port, 5);
    const c = dial(l.port);
    const hashOf = (s: Socket) =>
      new Promise<string>((resolve) => {
        const h = createHash("sha256");
        s.on("data", (chunk: Buffer) => h.update(chunk));
        s.on("end", () => resolve(h.digest("hex")));
      });
    const atClient = hashOf(c);
    c.end(up);
    const { socket } = await t.next();
    const atTarget = hashOf(socket);
    socket.end(down);
    expect(await atTarget).toBe(createHash("sha256").update(up).digest("hex"));
    expect(await atClient).toBe(createHash("sha256").update(down).digest("hex"));
    expect(l.stats().deliveredBytes).toBe(2 * size);
  });

  it("keeps a half-closed connection usable in the other direction", async () => {
    const t = await target();
    const l = await link(t.port, 5);
    const c = dial(l.port);
    c.end("request");
    const { socket } = await t.next();
    let got = "";
    socket.on("data", (b: Buffer) => {
      got += b.toString();
    });
    await once(socket, "end");
    expect(got).toBe("request");
    socket.end("answer after the client's FIN");
    let answer = "";
    c.on("data", (b: Buffer) => {
      answer += b.toString();
    });
    await once(c, "end");
    expect(answer).toBe("answer after the client's FIN");
  });

  it("caps the rate of each direction within ±15 %", async () => {
    const rate = 2_000_000;
    const total = 3_000_000;
    const t = await target();
    const l = await link(t.port, 5, { rateBytesPerSec: rate });
    const c = dial(l.port);
    c.end(Buffer.alloc(total, 1));
    const { socket } = await t.next();
    let n = 0;
    let first = 0;
    let firstLen = 0;
    socket.on("data", (b: Buffer) => {
      if (n === 0) {
        first = performance.now();
        firstLen = b.length;
      }
      n += b.length;
    });
    await once(socket, "end");
    const measured = ((n - firstLen) / (performance.now() - first)) * 1000;
    expect(n).toBe(total);
    expect(measured).toBeGreaterThan(rate * 0.85);
    expect(measured).toBeLessThan(rate * 1.15);
  });

  it("passes a reset on either side to the other, and resets the client when the target refuses", async () => {
    const d = 10;
    const t = await target();
    const l = await link(t.port, d);
    const c1 = dial(l.port);
    c1.write("x");
    const s1 = (await t.next()).socket;
    await once(s1, "data");
    const reset1 = once(c1, "error");
    s1.resetAndDestroy();
    const [e1] = (await reset1) as [NodeJS.ErrnoException];
    expect(e1.code).toBe("ECONNRESET");

    const c2 = dial(l.port);
    c2.write("x");
    const s2 = (await t.next()).socket;
    await once(s2, "data");
    const reset2 = once(s2, "error");
    c2.resetAndDestroy();
    const [e2] = (await reset2) as [NodeJS.ErrnoException];
    expect(e2.code).toBe("ECONNRESET");

    const closed = createServer();
    const closedPort = await listen(closed);
    await new Promise<void>((r) => closed.close(() => r()));
    const refusing = await link(closedPort, d);
    const c3 = dial(refusing.port);
    const [e3] = (await once(c3, "error")) as [NodeJS.ErrnoException];
    expect(e3.code).toBe("ECONNRESET");
  });

  it("holds a bounded number of bytes when the reader stalls: the writer is paused instead", async () => {
    const windowBytes = 256 * 1024;
    const t = await target();
    const l: WanLink = await link(t.port, 5, { windowBytes });
    const c = dial(l.port);
    await once(c, "connect");
    const { socket } = await t.next(); // never read from: the stalled reader
    socket.pause();
    const block = Buffer.alloc(1024 * 1024, 7);
    let written = 0;
    let stalled = false;
    const deadline = performance.now() + 10_000;
    while (written < 64 * 1024 * 1024 && performance.now() < deadline) {
      written += block.length;
      if (!c.write(block)) {
        const drained = await Promise.race([
          once(c, "drain").then(() => true),
          new Promise<boolean>((r) => setTimeout(() => r(false), 500)),
        ]);
        if (!drained) {
          stalled = true;
          break;
        }
      }
    }
    await new Promise((r) => setTimeout(r, 200));
    const s = l.stats();
    expect(stalled).toBe(true);
    // What the kernel buffers on the way is not this process's memory; what the emulator holds is bounded.
    expect(written).toBeGreaterThan(8 * windowBytes);
    expect(s.maxHeldBytes).toBeLessThanOrEqual(windowBytes + 256 * 1024);
    expect(s.heldBytes).toBeLessThanOrEqual(windowBytes + 256 * 1024);
    expect(s.heldBytes).toBeGreaterThan(0);
  });

  it("refuses to forward anywhere but loopback", async () => {
    await expect(startWan({ target: { host: "10.0.0.1", port: 1234 }, delayMs: 1 })).rejects.toThrow(/loopback/);
  });
});
