// A tunnel's leg from a hopway-mux/1 stream into a plain socket (the last relay, towards the
// target): each record the link reads goes straight to the socket's descriptor when nothing waits
// in the socket, and never ahead of bytes that do.
import { once } from "node:events";
import { connect, createServer, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { pipeLeg } from "../../../../src/relay/links/legs.ts";
import type { MuxStream } from "../../../../src/relay/links/mux/session.ts";
import { writtenThroughForTest } from "../../../../src/relay/pump.ts";
import type { RelayCounters, Tunnel } from "../../../../src/relay/relay.ts";
import { listen, sleep, until } from "../helpers.ts";
import { muxStreamOverTls } from "./tls-pair.ts";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const SETTINGS = { maxConcurrentStreams: 10, streamWindowBytes: 2 * 1024 * 1024 };

/** A link stream as the accepting relay gets it, its sender, and a target socket with what it received. */
async function streamIntoSocket(): Promise<{
  sender: MuxStream;
  received: MuxStream;
  target: Socket;
  got: () => string;
  counters: RelayCounters;
}> {
  const { sender, received } = await muxStreamOverTls(cleanups, SETTINGS, "target:1");

  const chunks: Buffer[] = [];
  const srv = createServer((s) => s.on("data", (c: Buffer) => chunks.push(c)));
  const port = await listen(srv);
  cleanups.push(() => srv.close());
  const target = connect({ host: "127.0.0.1", port });
  await once(target, "connect");
  cleanups.push(() => target.destroy());

  const counters: RelayCounters = { up: { client: 0, relay: 0 }, down: { client: 0, relay: 0 } };
  return { sender, received, target, got: () => Buffer.concat(chunks).toString(), counters };
}

function tunnelOf(client: MuxStream, upstream: Socket): Tunnel {
  return {
    client,
    upstream,
    peer: "relay",
    next: "target",
    openedAt: 0,
    moved: false,
    native: null,
    quietSweeps: 0,
    closed: 0,
    tenant: undefined,
  };
}

describe("link stream into a socket (pipeLeg)", () => {
  it("writes a record straight to an idle socket, and behind bytes that wait in it", async () => {
    const { sender, received, target, got, counters } = await streamIntoSocket();
    pipeLeg(received, target, tunnelOf(received, target), true, counters, 256 * 1024);

    // Nothing waits in the socket: the record goes to its descriptor, not through its Writable.
    let through = writtenThroughForTest();
    sender.write("first;");
    await until("the first record", () => got() === "first;", 1000);
    expect(writtenThroughForTest() - through).toBe("first;".length);

    // Bytes wait in the socket (corked): the next record queues behind them rather than overtake.
    target.cork();
    target.write("queued;");
    through = writtenThroughForTest();
    sender.write("behind;");
    await until("the record at the leg", () => counters.up.relay === "first;behind;".length, 1000);
    await sleep(50);
    expect(writtenThroughForTest() - through).toBe(0);
    target.uncork();
    await until("both", () => got().length === "first;queued;behind;".length, 1000);
    expect(got()).toBe("first;queued;behind;");
  });
});

describe("a leg that stops reading says so (pipeLeg's held)", () => {
  it("is called once the target stops reading and the leg pauses its stream; not for bytes the socket takes", async () => {
    for (const reads of [true, false]) {
      const { sender, received } = await muxStreamOverTls(cleanups, SETTINGS, "target:1");
      const srv = createServer((s) => {
        s.on("error", () => {});
        if (reads) s.resume();
        else s.pause();
      });
      const port = await listen(srv);
      cleanups.push(() => srv.close());
      const target = connect({ host: "127.0.0.1", port });
      target.on("error", () => {});
      await once(target, "connect");
      cleanups.push(() => target.destroy());
      const counters: RelayCounters = { up: { client: 0, relay: 0 }, down: { client: 0, relay: 0 } };
      let held = 0;
      pipeLeg(received, target, tunnelOf(received, target), true, counters, 256 * 1024, () => held++);
      if (reads) {
        // Less than the leg's limit, to a target that reads: nothing waits, nothing is held. (Bulk
        // to a reading target also pauses the leg now and then: that is flow control, and the
        // relay's check it brings forward is cheap.)
        sender.write(Buffer.alloc(64 * 1024, 1));
        await until("the target to get it", () => counters.up.relay === 64 * 1024, 5_000);
        await sleep(50);
        expect(held).toBe(0);
      } else {
        // More than the kernel's socket buffers take: a target that does not read makes the leg pause.
        const chunk = Buffer.alloc(1024 * 1024, 1);
        for (let i = 0; i < 16; i++) sender.write(chunk);
        await until("the leg to pause", () => held > 0, 5_000);
        expect(target.writableLength).toBeGreaterThanOrEqual(256 * 1024);
      }
    }
  });
});
