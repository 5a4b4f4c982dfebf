// Receive-window tuning: a stream's window grows while its reader keeps up with what the window
// lets through a long round trip, never while its reader is the limit, and only from the relay's
// budget, which closed streams give back.
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { connect, createServer, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { startWan } from "../../../../../../test/support/wan.ts";
import { MuxSession, type MuxSettings, type MuxStream } from "../../../../../src/relay/links/mux/session.ts";
import { WindowBudget, windowGrowth } from "../../../../../src/relay/links/mux/window.ts";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const KiB = 1024;
const MiB = 1024 * KiB;

describe("windowGrowth", () => {
  const cases: Array<{
    name: string;
    window: number;
    max: number;
    consumed: number;
    epoch: { at: number; consumed: number };
    now: number;
    rtt: number;
    grows: number;
    epochMoves: boolean;
  }> = [
    {
      name: "half a window or less consumed: the epoch goes on",
      window: 64 * KiB,
      max: MiB,
      consumed: 32 * KiB,
      epoch: { at: 0, consumed: 0 },
      now: 1,
      rtt: 40,
      grows: 0,
      epochMoves: false,
    },
    {
      name: "a window consumed in one round trip: doubles",
      window: 64 * KiB,
      max: MiB,
      consumed: 64 * KiB,
      epoch: { at: 0, consumed: 0 },
      now: 40,
      rtt: 40,
      grows: 64 * KiB,
      epochMoves: true,
    },
    {
      name: "doubles up to the maximum only",
      window: 768 * KiB,
      max: MiB,
      consumed: 800 * KiB,
      epoch: { at: 0, consumed: 0 },
      now: 10,
      rtt: 40,
      grows: 256 * KiB,
      epochMoves: true,
    },
    {
      name: "a reader slower than the window allows: no growth, a new epoch",
      window: 64 * KiB,
      max: MiB,
      consumed: 64 * KiB,
      epoch: { at: 0, consumed: 0 },
      now: 400,
      rtt: 40,
      grows: 0,
      epochMoves: true,
    },
    {
      name: "no round trip measured yet: no growth",
      window: 64 * KiB,
      max: MiB,
      consumed: 64 * KiB,
      epoch: { at: 0, consumed: 0 },
      now: 1,
      rtt: 0,
      grows: 0,
      epochMoves: true,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const epoch = { ...c.epoch };
      expect(windowGrowth(c.window, c.max, c.consumed, epoch, c.now, c.rtt)).toBe(c.grows);
      expect(epoch).toEqual(c.epochMoves ? { at: c.now, consumed: c.consumed } : c.epoch);
    });
  }

  it("a budget lends what it has and takes back no more than it lent", () => {
    const b = new WindowBudget(100);
    expect(b.take(60)).toBe(60);
    expect(b.take(60)).toBe(40);
    expect(b.take(1)).toBe(0);
    b.give(70);
    expect(b.available).toBe(70);
    b.give(1000);
    expect(b.available).toBe(100);
  });

  it("a tenant's links take at most a quarter of the budget together; others still get theirs", () => {
    const b = new WindowBudget(400);
    expect(b.take(60, "tenant-a")).toBe(60);
    expect(b.take(60, "tenant-a")).toBe(40);
    expect(b.take(1, "tenant-a")).toBe(0);
    expect(b.heldBy("tenant-a")).toBe(100);
    expect(b.take(150, "tenant-b")).toBe(100);
    expect(b.take(150)).toBe(150);
    expect(b.available).toBe(50);
    // What a tenant gives back it may take again, and no more.
    b.give(30, "tenant-a");
    expect(b.heldBy("tenant-a")).toBe(70);
    expect(b.take(60, "tenant-a")).toBe(30);
    b.give(100, "tenant-a");
    expect(b.heldBy("tenant-a")).toBe(0);
  });
});

/** A dialling and an accepting session whose link crosses the WAN emulator (`delayMs` one way). */
async function pairOverWan(settings: MuxSettings, delayMs: number) {
  const streams: MuxStream[] = [];
  let server: MuxSession | undefined;
  const srv = createServer({ allowHalfOpen: true }, (s: Socket) => {
    server = new MuxSession(s, "server", settings);
    server.on("error", () => {});
    server.on("stream", (st: MuxStream) => streams.push(st));
  });
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  cleanups.push(() => srv.close());
  const port = (srv.address() as { port: number }).port;
  const wan = await startWan({ target: { host: "127.0.0.1", port }, delayMs });
  cleanups.push(() => wan.close());
  const sock = connect({ host: wan.host, port: wan.port, allowHalfOpen: true });
  await once(sock, "connect");
  cleanups.push(() => sock.destroy());
  const client = new MuxSession(sock, "client", settings);
  client.on("error", () => {});
  cleanups.push(() => client.destroy());
  while (server === undefined) await new Promise((r) => setTimeout(r, 1));
  cleanups.push(() => server?.destroy());
  return { client, streams };
}

/**
 * A pair over a 20 ms one-way path whose streams start at 64 KiB and may grow to 1 MiB from a
 * budget of `budgetBytes` (or `budget`, shared with other pairs), as a link of `budgetTenant`.
 */
async function tunedPair(budgetBytes: number, budget = new WindowBudget(budgetBytes), budgetTenant?: string) {
  const settings = {
    maxConcurrentStreams: 10,
    streamWindowBytes: 64 * KiB,
    maxStreamWindowBytes: MiB,
    windowBudget: budget,
    budgetTenant,
  };
  return { budget, ...(await pairOverWan(settings, 20)) };
}

async function nextStream(streams: MuxStream[], n: number): Promise<MuxStream> {
  for (let i = 0; i < 1000 && streams.length < n; i++) await new Promise((r) => setTimeout(r, 2));
  const s = streams[n - 1];
  if (s === undefined) throw new Error("no stream");
  return s;
}

/** Writes `data` on `s` as fast as its credit allows, then ends it. */
async function send(s: MuxStream, data: Buffer): Promise<void> {
  for (let at = 0; at < data.length; at += 64 * KiB) {
    if (!s.write(data.subarray(at, at + 64 * KiB))) await once(s, "drain");
  }
  s.end();
}

describe("hopway-mux/1 receive windows over a 20 ms one-way path", () => {
  it("a reader that keeps up grows its stream's window to the maximum; the bytes arrive intact", async () => {
    const { budget, client, streams } = await tunedPair(4 * MiB);
    const data = randomBytes(6 * MiB);
    const sender = client.request({ ":method": "CONNECT", ":authority": "t:1" });
    const sending = send(sender, data);
    const received = await nextStream(streams, 1);
    const hash = createHash("sha256");
    let bytes = 0;
    let largest = received.window;
    received.on("data", (c: Buffer) => {
      hash.update(c);
      bytes += c.length;
      largest = Math.max(largest, received.window);
    });
    received.resume();
    await sending;
    await once(received, "end");
    expect(bytes).toBe(data.length);
    expect(hash.digest("hex")).toBe(createHash("sha256").update(data).digest("hex"));
    // 64 KiB per 40 ms round trip is 1.6 MB/s; grown to 1 MiB, the same bytes take a sixteenth of the round trips.
    expect(largest).toBe(MiB);
    expect(budget.available).toBe(4 * MiB - (MiB - 64 * KiB));
    received.destroy();
    sender.destroy();
    await new Promise((r) => setTimeout(r, 10));
    expect(budget.available).toBe(4 * MiB);
  }, 30_000);

  it("a reader that stops never grows its window: the stream holds at most the window it started with", async () => {
    const { budget, client, streams } = await tunedPair(4 * MiB);
    const sender = client.request({ ":method": "CONNECT", ":authority": "t:1" });
    void send(sender, randomBytes(2 * MiB)).catch(() => {});
    // Never resumed: its reader takes nothing.
    const received = await nextStream(streams, 1);
    await new Promise((r) => setTimeout(r, 400));
    expect(received.window).toBe(64 * KiB);
    expect(received.readableLength).toBeLessThanOrEqual(64 * KiB);
    expect(budget.available).toBe(4 * MiB);
  }, 30_000);

  it("streams share the relay's budget, and one link takes at most a quarter of it", async () => {
    const { budget, client, streams } = await tunedPair(512 * KiB);
    const ends: MuxStream[] = [];
    const sendings: Array<Promise<void>> = [];
    for (let i = 1; i <= 3; i++) {
      const sender = client.request({ ":method": "CONNECT", ":authority": "t:1" });
      sendings.push(send(sender, randomBytes(3 * MiB)));
      const received = await nextStream(streams, i);
      received.on("data", () => {});
      received.resume();
      ends.push(received);
    }
    let most = 0;
    const watch = setInterval(() => {
      most = Math.max(
        most,
        ends.reduce((sum, s) => sum + (s.window - 64 * KiB), 0),
      );
    }, 5);
    await Promise.all(sendings);
    await Promise.all(ends.map((s) => (s.readableEnded ? undefined : once(s, "end"))));
    clearInterval(watch);
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(128 * KiB);
    expect(budget.available).toBe(512 * KiB - ends.reduce((sum, s) => sum + s.grown, 0));
  }, 30_000);

  it("a tenant's links share one quarter of the budget, however many it opens; a link of no tenant still grows", async () => {
    const budget = new WindowBudget(512 * KiB);
    const links = [
      await tunedPair(0, budget, "tenant-a"),
      await tunedPair(0, budget, "tenant-a"),
      await tunedPair(0, budget),
    ];
    const ends: MuxStream[] = [];
    const sendings: Array<Promise<void>> = [];
    for (const { client, streams } of links) {
      const sender = client.request({ ":method": "CONNECT", ":authority": "t:1" });
      sendings.push(send(sender, randomBytes(3 * MiB)));
      const received = await nextStream(streams, 1);
      received.on("data", () => {});
      received.resume();
      ends.push(received);
    }
    const grown = (s: MuxStream | undefined) => (s === undefined ? 0 : s.window - 64 * KiB);
    let tenantMost = 0;
    let otherMost = 0;
    const watch = setInterval(() => {
      tenantMost = Math.max(tenantMost, grown(ends[0]) + grown(ends[1]));
      otherMost = Math.max(otherMost, grown(ends[2]));
      expect(budget.heldBy("tenant-a")).toBeLessThanOrEqual(128 * KiB);
    }, 5);
    await Promise.all(sendings);
    await Promise.all(ends.map((s) => (s.readableEnded ? undefined : once(s, "end"))));
    clearInterval(watch);
    // Each link alone may take a quarter (128 KiB): without the tenant's share the two would hold 256 KiB.
    expect(tenantMost).toBeGreaterThan(0);
    expect(tenantMost).toBeLessThanOrEqual(128 * KiB);
    expect(otherMost).toBeGreaterThan(0);
    for (const s of ends) s.destroy();
    await new Promise((r) => setTimeout(r, 10));
    expect(budget.heldBy("tenant-a")).toBe(0);
    expect(budget.available).toBe(512 * KiB);
  }, 30_000);
});
