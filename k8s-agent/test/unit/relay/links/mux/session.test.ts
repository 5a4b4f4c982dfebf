// hopway-mux/1 over real loopback sockets: streams, half-close, resets, GOAWAY,
// PING, per-stream flow control, and a peer that breaks the protocol (each
// violation closes that link with its stable reason; the process carries on).
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterEach, describe, expect, it } from "vitest";
import { copyIn, isLent, linkBuffersForTest } from "../../../../../src/relay/links/buffers.ts";
import {
  Code,
  encodeHeaders,
  FLAG_FIN,
  FrameType,
  frameHeader,
  HEADER_BYTES,
  MAX_FRAME,
  MAX_HEADER_BLOCK,
  wordsFrame,
} from "../../../../../src/relay/links/mux/frame.ts";
import { MuxProtocolError, MuxSession, type MuxStream } from "../../../../../src/relay/links/mux/session.ts";
import type { LinkHeaders } from "../../../../../src/relay/links/session.ts";
import { muxStreamOverTls } from "../tls-pair.ts";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const SETTINGS = { maxConcurrentStreams: 100, streamWindowBytes: 65_535 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `ok` every 2 ms until it holds; throws after `ms`. */
async function until(ok: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await sleep(2);
  }
}

async function listening(onSocket: (s: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer({ allowHalfOpen: true }, onSocket);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const addr = server.address();
  if (addr === null || typeof addr === "string") throw new Error("no port");
  cleanups.push(() => server.close());
  return { server, port: addr.port };
}

async function dial(port: number): Promise<Socket> {
  const s = connect({ port, host: "127.0.0.1", allowHalfOpen: true });
  await once(s, "connect");
  cleanups.push(() => s.destroy());
  return s;
}

/** A dialling and an accepting session over one loopback connection. */
async function pair(
  settings = SETTINGS,
): Promise<{ client: MuxSession; server: MuxSession; streams: Array<[MuxStream, LinkHeaders]> }> {
  const streams: Array<[MuxStream, LinkHeaders]> = [];
  let server: MuxSession | undefined;
  const { port } = await listening((s) => {
    server = new MuxSession(s, "server", settings);
    server.on("error", () => {});
    server.on("stream", (st: MuxStream, h: LinkHeaders) => streams.push([st, h]));
  });
  const client = new MuxSession(await dial(port), "client", settings);
  client.on("error", () => {});
  while (server === undefined) await sleep(1);
  cleanups.push(() => client.destroy());
  cleanups.push(() => server?.destroy());
  return { client, server, streams };
}

async function nextStream(streams: Array<[MuxStream, LinkHeaders]>, n: number): Promise<[MuxStream, LinkHeaders]> {
  for (let i = 0; i < 500 && streams.length < n; i++) await sleep(2);
  const s = streams[n - 1];
  if (s === undefined) throw new Error(`stream ${n} never arrived`);
  return s;
}

/** Resolves once the stream has closed (at once if it already has). */
function closed(stream: MuxStream): Promise<unknown> {
  return stream.closed ? Promise.resolve() : once(stream, "close");
}

function read(stream: MuxStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  stream.on("data", (c: Buffer) => chunks.push(c));
  stream.resume();
  return once(stream, "end").then(() => Buffer.concat(chunks));
}

/**
 * An accepting session behind a raw client socket the test writes frames on (after SETTINGS, unless
 * told not to); `onStream` answers each stream it accepts.
 */
async function rawPeer(
  settingsFirst = true,
  onStream?: (st: MuxStream) => void,
): Promise<{
  raw: Socket;
  errors: Error[];
  closed: Promise<unknown>;
  got: Buffer[];
  streams: MuxStream[];
  accepted: () => Socket;
}> {
  const errors: Error[] = [];
  const streams: MuxStream[] = [];
  let closed: Promise<unknown> | undefined;
  let accepted: Socket | undefined;
  const { port } = await listening((s) => {
    accepted = s;
    const session = new MuxSession(s, "server", SETTINGS);
    session.on("error", (e: Error) => errors.push(e));
    session.on("stream", (st: MuxStream) => {
      st.on("error", () => {});
      streams.push(st);
      onStream?.(st);
    });
    // Not events.once: it would reject on the session's 'error', which comes first.
    closed = new Promise((resolve) => session.once("close", resolve));
  });
  const raw = await dial(port);
  const got: Buffer[] = [];
  raw.on("data", (c: Buffer) => got.push(c));
  raw.on("error", () => {});
  while (closed === undefined) await sleep(1);
  if (settingsFirst) raw.write(wordsFrame(FrameType.SETTINGS, 0, [100, 65_535, MAX_FRAME]));
  return { raw, errors, closed, got, streams, accepted: () => accepted as Socket };
}

/** The frames in `bytes`: type, stream id and payload. */
function frames(bytes: Buffer): Array<{ type: number; flags: number; id: number; payload: Buffer }> {
  const out = [];
  let at = 0;
  while (at + HEADER_BYTES <= bytes.length) {
    const len = bytes.readUInt32BE(at + 6);
    out.push({
      type: bytes[at] as number,
      flags: bytes[at + 1] as number,
      id: bytes.readUInt32BE(at + 2),
      payload: bytes.subarray(at + HEADER_BYTES, at + HEADER_BYTES + len),
    });
    at += HEADER_BYTES + len;
  }
  return out;
}

const OPEN_1 = () => {
  const h = encodeHeaders({ ":method": "CONNECT", ":authority": "app1", "hopway-hops": "r2" });
  return Buffer.concat([frameHeader(FrameType.OPEN, 0, 1, h.length), h]);
};

describe("hopway-mux/1 sessions", () => {
  it("carries a request, its reply and data both ways, with half-close each way and a clean close", async () => {
    const { client, streams } = await pair();
    const stream = client.request({ ":method": "CONNECT", ":authority": "app1:80", "hopway-hops": "r2,r3" });
    const [srv, headers] = await nextStream(streams, 1);
    expect(headers[":authority"]).toBe("app1:80");
    expect(headers["hopway-hops"]).toBe("r2,r3");
    const response = once(stream, "response");
    srv.respond({ ":status": 200, "hopway-path": "r2, r3" });
    const [answer] = (await response) as [LinkHeaders];
    expect(answer[":status"]).toBe(200);
    expect(answer["hopway-path"]).toBe("r2, r3");
    // Client → server, then the client's FIN: the server still answers after it.
    const atServer = read(srv);
    const atClient = read(stream);
    stream.end(Buffer.from("ping over mux"));
    expect(String(await atServer)).toBe("ping over mux");
    srv.write("after your FIN ");
    srv.end("bye");
    expect(String(await atClient)).toBe("after your FIN bye");
    await Promise.all([closed(stream), closed(srv)]);
    expect(stream.rstCode).toBe(Code.NO_ERROR);
    expect(srv.rstCode).toBe(Code.NO_ERROR);
    expect(client.streamCount).toBe(0);
  });

  it("a refusal ends the stream with the reply; a stream destroyed by one side is reset at the other", async () => {
    const { client, streams } = await pair();
    const refused = client.request({ ":authority": "x" });
    const [srv] = await nextStream(streams, 1);
    const response = once(refused, "response");
    srv.respond({ ":status": 403, "hopway-error": "forbidden" }, { endStream: true });
    const [answer] = (await response) as [LinkHeaders];
    expect(answer[":status"]).toBe(403);
    expect(answer["hopway-error"]).toBe("forbidden");
    refused.resume();
    await once(refused, "end");
    refused.destroy();
    await closed(srv);
    expect(srv.rstCode).toBe(Code.CANCEL);

    const second = client.request({ ":authority": "y" });
    const [srv2] = await nextStream(streams, 2);
    srv2.respond({ ":status": 200 });
    await once(second, "response");
    srv2.destroy();
    await closed(second);
    expect(second.rstCode).toBe(Code.CANCEL);
  });

  it("a reader that stops holds its own stream at one window; another stream of the link keeps flowing", async () => {
    const { client, streams } = await pair();
    const slow = client.request({ ":authority": "slow" });
    const [slowSrv] = await nextStream(streams, 1);
    slowSrv.pause();
    slowSrv.respond({ ":status": 200 });
    const chunk = Buffer.alloc(16 * 1024, 1);
    let queued = 0;
    for (let i = 0; i < 64; i++) {
      slow.write(chunk);
      queued += chunk.length;
    }
    await sleep(100);
    // What reached the stalled reader is bounded by its window; the rest waits at the sender.
    expect(slowSrv.readableLength).toBeLessThanOrEqual(SETTINGS.streamWindowBytes);
    expect(slowSrv.readableLength).toBeGreaterThan(0);
    expect(slow.writableLength).toBeGreaterThan(0);

    const fast = client.request({ ":authority": "fast" });
    const [fastSrv] = await nextStream(streams, 2);
    fastSrv.respond({ ":status": 200 });
    const fastGot = read(fastSrv);
    const big = Buffer.alloc(4 * 1024 * 1024, 2);
    fast.end(big);
    expect((await fastGot).length).toBe(big.length);

    // The stalled reader resumes: everything arrives, in order.
    const slowGot = read(slowSrv);
    slow.end();
    slowSrv.resume();
    expect((await slowGot).length).toBe(queued);
  });

  it("answers PING; GOAWAY stops new streams while open ones finish", async () => {
    const { client, server, streams } = await pair();
    const rtt = await new Promise<number>((resolve, reject) => {
      const sent = client.ping((err, duration) => (err ? reject(err) : resolve(duration)));
      expect(sent).toBe(true);
    });
    expect(rtt).toBeGreaterThanOrEqual(0);
    const open = client.request({ ":authority": "a" });
    const [srv] = await nextStream(streams, 1);
    srv.respond({ ":status": 200 });
    await once(open, "response");
    const goaway = once(client, "goaway");
    server.goaway();
    const [code, lastId] = (await goaway) as [number, number];
    expect(code).toBe(Code.NO_ERROR);
    expect(lastId).toBe(1);
    expect(() => client.request({ ":authority": "b" })).toThrow(/closing/);
    // The open stream still works both ways.
    const got = read(srv);
    open.end("still open");
    expect(String(await got)).toBe("still open");
    const back = read(open);
    srv.end("done");
    expect(String(await back)).toBe("done");
    // With its last stream finished the link closes.
    await once(client, "close");
  });

  it("the frames of one event-loop pass leave in one socket write, a large payload copied right behind its header", async () => {
    const got: Buffer[] = [];
    const { port } = await listening((s) => {
      s.on("data", (c: Buffer) => got.push(c));
      s.write(wordsFrame(FrameType.SETTINGS, 0, [100, 65_535, MAX_FRAME]));
    });
    const socket = await dial(port);
    const client = new MuxSession(socket, "client", SETTINGS);
    client.on("error", () => {});
    cleanups.push(() => client.destroy());
    // The peer's SETTINGS (its 1 MiB frames) first, so the large write below is one DATA frame.
    for (let i = 0; i < 200 && client.remoteSettings.maxConcurrentStreams === undefined; i++) await sleep(2);
    await sleep(10);
    const writes: Buffer[] = [];
    const write = socket.write.bind(socket) as (chunk: Buffer) => boolean;
    socket.write = ((chunk: Buffer) => {
      writes.push(chunk);
      return write(chunk);
    }) as typeof socket.write;
    // Twenty small tunnels in one pass, each OPEN, 16 bytes of DATA and FIN, and one large write.
    for (let i = 0; i < 20; i++) {
      const st = client.request({ ":method": "CONNECT", ":authority": `app${i}:80`, "hopway-hops": "r1" });
      st.end(Buffer.alloc(16, i));
    }
    const big = Buffer.alloc(32 * 1024, 7);
    client.request({ ":authority": "bulk:80" }).write(big);
    // After the client's SETTINGS: 20 × (OPEN, DATA, FIN), then OPEN and DATA.
    const want = 1 + 20 * 3 + 2;
    for (let i = 0; i < 200 && frames(Buffer.concat(got)).length < want; i++) await sleep(2);
    // One buffer: TLSWrap copies a write of several buffers into one before encrypting it.
    expect(writes).toHaveLength(1);
    const seen = frames(Buffer.concat(got));
    expect(seen).toHaveLength(want);
    expect(seen.filter((f) => f.type === FrameType.OPEN)).toHaveLength(21);
    const small = seen.filter((f) => f.type === FrameType.DATA && f.payload.length === 16);
    expect(small.map((f) => f.payload[0])).toEqual([...Array(20).keys()]);
    expect(seen.filter((f) => f.type === FrameType.DATA && (f.flags & FLAG_FIN) !== 0)).toHaveLength(20);
    expect(seen.at(-1)?.payload.equals(big)).toBe(true);
  });

  it("a graceful close sends its GOAWAY before the socket ends, whatever else that pass framed", async () => {
    const got: Buffer[] = [];
    const ended = new Promise<void>((resolve) => {
      void listening((s) => {
        s.on("data", (c: Buffer) => got.push(c));
        s.on("end", () => resolve());
        s.write(wordsFrame(FrameType.SETTINGS, 0, [100, 65_535, MAX_FRAME]));
      }).then(async ({ port }) => {
        const client = new MuxSession(await dial(port), "client", SETTINGS);
        client.on("error", () => {});
        cleanups.push(() => client.destroy());
        client.ping(() => {});
        client.close();
      });
    });
    await ended;
    const types = frames(Buffer.concat(got)).map((f) => f.type);
    expect(types).toEqual([FrameType.SETTINGS, FrameType.PING, FrameType.GOAWAY]);
  });

  it("streams the peer never took (past GOAWAY's last id) are refused, safe to retry", async () => {
    const got: Buffer[] = [];
    let raw: Socket | undefined;
    const { port } = await listening((s) => {
      raw = s;
      s.on("data", (c: Buffer) => got.push(c));
      s.write(wordsFrame(FrameType.SETTINGS, 0, [100, 65_535, MAX_FRAME]));
    });
    const client = new MuxSession(await dial(port), "client", SETTINGS);
    client.on("error", () => {});
    cleanups.push(() => client.destroy());
    const first = client.request({ ":authority": "a" });
    const second = client.request({ ":authority": "b" });
    for (let i = 0; i < 200 && frames(Buffer.concat(got)).filter((f) => f.type === FrameType.OPEN).length < 2; i++) {
      await sleep(2);
    }
    raw?.write(wordsFrame(FrameType.GOAWAY, 0, [1, Code.NO_ERROR]));
    await closed(second);
    expect(second.rstCode).toBe(Code.REFUSED_STREAM);
    expect(first.destroyed).toBe(false);
  });
});

describe("hopway-mux/1: a peer that breaks the protocol loses its link, never the process", () => {
  const cases: Array<[string, () => Buffer, string]> = [
    ["a first frame that is not SETTINGS", () => OPEN_1(), "settings_expected"],
    ["an unknown frame type", () => frameHeader(42, 0, 0, 0), "unknown_frame_type"],
    ["a DATA frame over the largest frame", () => frameHeader(FrameType.DATA, 0, 1, MAX_FRAME + 1), "frame_too_large"],
    [
      "a header block over its bound",
      () => frameHeader(FrameType.OPEN, 0, 1, MAX_HEADER_BLOCK + 1),
      "header_block_too_large",
    ],
    [
      "a header block that does not parse",
      () => Buffer.concat([frameHeader(FrameType.OPEN, 0, 1, 3), Buffer.from([5, 0x61, 0x62])]),
      "bad_header_block",
    ],
    ["DATA on a stream never opened", () => frameHeader(FrameType.DATA, 0, 9, 0), "bad_stream_id"],
    ["an OPEN with an even stream id", () => frameHeader(FrameType.OPEN, 0, 2, 0), "bad_stream_id"],
    ["a WINDOW of the wrong length", () => frameHeader(FrameType.WINDOW, 0, 1, 3), "bad_frame_length"],
    [
      "more DATA than the stream's window",
      () => Buffer.concat([OPEN_1(), frameHeader(FrameType.DATA, 0, 1, 65_536), Buffer.alloc(65_536)]),
      "flow_control",
    ],
    [
      "DATA after the stream's FIN",
      () =>
        Buffer.concat([
          OPEN_1(),
          frameHeader(FrameType.DATA, FLAG_FIN, 1, 1),
          Buffer.from("x"),
          frameHeader(FrameType.DATA, 0, 1, 1),
          Buffer.from("y"),
        ]),
      "data_after_fin",
    ],
    ["a second SETTINGS", () => wordsFrame(FrameType.SETTINGS, 0, [1, 65_535, MAX_FRAME]), "settings_repeated"],
  ];

  it.each(cases)("%s", async (_what, bytes, reason) => {
    const { raw, errors, closed, got } = await rawPeer(reason !== "settings_expected");
    raw.write(bytes());
    await closed;
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(MuxProtocolError);
    expect((errors[0] as MuxProtocolError).reason).toBe(reason);
    // The peer learns why before the socket closes: GOAWAY with PROTOCOL_ERROR.
    if (!raw.readableEnded) await once(raw, "end");
    expect(raw.errored).toBe(null);
    const goaway = frames(Buffer.concat(got)).find((f) => f.type === FrameType.GOAWAY);
    expect(goaway?.payload.readUInt32BE(4)).toBe(Code.PROTOCOL_ERROR);
  });

  it("frames split at every byte boundary parse the same", async () => {
    const { raw, errors, got } = await rawPeer();
    const bytes = Buffer.concat([OPEN_1(), frameHeader(FrameType.DATA, 0, 1, 5), Buffer.from("hello")]);
    for (const b of bytes) {
      raw.write(Buffer.from([b]));
      await sleep(0);
    }
    raw.write(wordsFrame(FrameType.PING, 0, [7, 8]));
    for (let i = 0; i < 200 && !frames(Buffer.concat(got)).some((f) => f.type === FrameType.PONG); i++) await sleep(2);
    const pong = frames(Buffer.concat(got)).find((f) => f.type === FrameType.PONG);
    expect(pong?.payload.readUInt32BE(4)).toBe(8);
    expect(errors).toEqual([]);
  });
});

describe("hopway-mux/1: a peer that floods a link it does not read", () => {
  /**
   * A peer that sends `frame(i)` and never reads, until its link closes or `max` went; the
   * session's errors and how many went. In batches of 500 with a turn of the event loop between,
   * so that the session reads each batch by itself: what closes the link is answers piling up
   * behind a peer that does not read, not one burst.
   */
  async function floodUnread(
    frame: (i: number) => Buffer,
    max: number,
    onStream?: (st: MuxStream) => void,
  ): Promise<{ errors: Error[]; sent: number }> {
    const { raw, errors, closed } = await rawPeer(true, onStream);
    raw.pause();
    let done = false;
    void closed.then(() => {
      done = true;
    });
    const batch = 500;
    let sent = 0;
    while (sent < max && !done) {
      const parts: Buffer[] = [];
      for (let j = 0; j < batch; j++) parts.push(frame(sent + j));
      sent += batch;
      if (!raw.write(Buffer.concat(parts))) await Promise.race([once(raw, "drain"), sleep(200)]);
      await sleep(1);
    }
    // Bounded: a link that is never closed fails the test rather than time it out.
    await Promise.race([closed, sleep(5000)]);
    return { errors, sent };
  }

  it("PINGs whose PONGs pile up: the link closes (flood) instead of queueing them without end", async () => {
    // Loopback socket buffers take a few hundred KiB of PONGs before any waits in the session.
    const { errors, sent } = await floodUnread((i) => wordsFrame(FrameType.PING, 0, [0, i]), 2_000_000);
    expect((errors[0] as MuxProtocolError | undefined)?.reason, `after ${sent} PINGs`).toBe("flood");
  });

  it("OPENs past the stream limit, each refused with an RST it never reads: the link closes (flood)", async () => {
    const h = encodeHeaders({ ":method": "CONNECT", ":authority": "app1", "hopway-hops": "r2" });
    const open = (i: number) => Buffer.concat([frameHeader(FrameType.OPEN, 0, 2 * i + 1, h.length), h]);
    const { errors, sent } = await floodUnread(open, 1_500_000);
    expect((errors[0] as MuxProtocolError | undefined)?.reason, `after ${sent} OPENs`).toBe("flood");
  });

  // As the relay refuses a stream (a 405 from the link server, a 400 to 508 from the relay): a
  // REPLY with FIN and an RST behind it, the stream forgotten at once.
  const refuse = (st: MuxStream) => {
    st.respond({ ":status": 405, "hopway-error": "method_not_allowed" }, { endStream: true });
    st.destroy();
  };

  it("OPENs the session's user refuses (a REPLY and an RST each), never read: the link closes (flood)", async () => {
    // Empty header maps: 10 bytes an OPEN, answered with about 60.
    const open = (i: number) => frameHeader(FrameType.OPEN, 0, 2 * i + 1, 0);
    const { errors, sent } = await floodUnread(open, 200_000, refuse);
    expect((errors[0] as MuxProtocolError | undefined)?.reason, `after ${sent} OPENs`).toBe("flood");
    // Closed once the answers stopped leaving, not after the whole flood: a few socket buffers'
    // worth of refusals, then the stream limit's and MAX_UNSENT_ANSWERS' worth.
    expect(sent).toBeLessThan(200_000);
  });

  it("a peer that reads and keeps to the stream limit gets every refusal, in bursts of the whole limit", async () => {
    const { raw, errors, got } = await rawPeer(true, refuse);
    const rounds = 30;
    const limit = SETTINGS.maxConcurrentStreams;
    const replies = () => frames(Buffer.concat(got)).filter((f) => f.type === FrameType.REPLY).length;
    for (let round = 0; round < rounds; round++) {
      // An honest dialler opens again only once it has read the answers to the streams it had.
      raw.write(
        Buffer.concat(
          Array.from({ length: limit }, (_, i) => frameHeader(FrameType.OPEN, 0, 2 * (round * limit + i) + 1, 0)),
        ),
      );
      await until(() => replies() === (round + 1) * limit);
    }
    const all = frames(Buffer.concat(got));
    expect(all.filter((f) => f.type === FrameType.RST && f.payload.readUInt32BE(0) === 7)).toEqual([]);
    expect(errors).toEqual([]);
  });

  it("a peer that reads is answered however many PINGs it sends", async () => {
    const { raw, errors, got } = await rawPeer();
    for (let round = 0; round < 20; round++) {
      raw.write(
        Buffer.concat(Array.from({ length: 500 }, (_, i) => wordsFrame(FrameType.PING, 0, [0, round * 500 + i]))),
      );
      await sleep(2);
    }
    await until(() => frames(Buffer.concat(got)).filter((f) => f.type === FrameType.PONG).length === 10_000);
    expect(errors).toEqual([]);
  });

  it("a second GOAWAY closes the link (unexpected_frame)", async () => {
    const { raw, errors, closed, streams } = await rawPeer();
    raw.write(OPEN_1());
    await until(() => streams.length === 1);
    // Graceful: the open stream keeps the link; the repeat is what breaks it.
    raw.write(wordsFrame(FrameType.GOAWAY, 0, [0, Code.NO_ERROR]));
    raw.write(wordsFrame(FrameType.GOAWAY, 0, [0, Code.NO_ERROR]));
    await closed;
    expect((errors[0] as MuxProtocolError | undefined)?.reason).toBe("unexpected_frame");
  });

  it("a PONG must echo the PING's random word: a peer that does not read cannot answer pings blind", async () => {
    const got: Buffer[] = [];
    let raw: Socket | undefined;
    const { port } = await listening((s) => {
      raw = s;
      s.on("data", (c: Buffer) => got.push(c));
      s.on("error", () => {});
      s.write(wordsFrame(FrameType.SETTINGS, 0, [100, 65_535, MAX_FRAME]));
    });
    const client = new MuxSession(await dial(port), "client", SETTINGS);
    client.on("error", () => {});
    cleanups.push(() => client.destroy());
    let answered = 0;
    expect(client.ping(() => answered++)).toBe(true);
    await until(() => frames(Buffer.concat(got)).some((f) => f.type === FrameType.PING));
    const ping = frames(Buffer.concat(got)).find((f) => f.type === FrameType.PING);
    const seq = ping?.payload.readUInt32BE(4) as number;
    // The sequence number alone (what a peer could count without reading) answers nothing.
    (raw as Socket).write(wordsFrame(FrameType.PONG, 0, [((ping?.payload.readUInt32BE(0) as number) + 1) >>> 0, seq]));
    (raw as Socket).write(wordsFrame(FrameType.PONG, 0, [0, seq]));
    await sleep(50);
    expect(answered).toBe(0);
    (raw as Socket).write(Buffer.concat([frameHeader(FrameType.PONG, 0, 0, 8), ping?.payload as Buffer]));
    await until(() => answered === 1);
  });
});

describe("hopway-mux/1: random input", () => {
  it("300 links fed mutated and random frames: violations close their link as protocol errors, nothing escapes to the process", async () => {
    const errors: Error[] = [];
    const sessions: MuxSession[] = [];
    const { port } = await listening((s) => {
      const session = new MuxSession(s, "server", SETTINGS);
      session.on("error", (e: Error) => errors.push(e));
      session.on("stream", (st: MuxStream) => {
        st.on("error", () => {});
        st.resume();
        st.respond({ ":status": 200 });
      });
      sessions.push(session);
    });
    // Valid traffic a dialling relay sends, to mutate: OPEN, DATA, WINDOW, PING, RST, GOAWAY.
    const valid = Buffer.concat([
      OPEN_1(),
      frameHeader(FrameType.DATA, 0, 1, 4),
      Buffer.from("data"),
      wordsFrame(FrameType.WINDOW, 1, [1024]),
      wordsFrame(FrameType.PING, 0, [1, 2]),
      wordsFrame(FrameType.RST, 1, [Code.CANCEL]),
      wordsFrame(FrameType.GOAWAY, 0, [0, 0]),
    ]);
    let seed = 12345;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const started = performance.now();
    for (let i = 0; i < 300 && performance.now() - started < 20_000; i++) {
      const raw = await dial(port);
      raw.on("error", () => {});
      raw.resume();
      raw.write(wordsFrame(FrameType.SETTINGS, 0, [100, 65_535, MAX_FRAME]));
      const bytes = Buffer.from(valid);
      if (i % 3 === 0) {
        for (let k = 0; k < 1 + rand(8); k++) bytes[rand(bytes.length)] = rand(256);
        raw.write(bytes);
      } else if (i % 3 === 1) {
        raw.write(bytes.subarray(0, rand(bytes.length)));
        raw.write(Buffer.from(Array.from({ length: rand(64) }, () => rand(256))));
      } else {
        raw.write(Buffer.from(Array.from({ length: 1 + rand(512) }, () => rand(256))));
      }
      await sleep(2);
      raw.destroy();
    }
    await sleep(100);
    expect(sessions.length).toBeGreaterThanOrEqual(250);
    // Every error a session reported is a protocol violation (or its socket's own error), and every session ended.
    for (const e of errors) expect(e instanceof MuxProtocolError || "errno" in e).toBe(true);
    expect(errors.filter((e) => e instanceof MuxProtocolError).length).toBeGreaterThan(50);
    expect(sessions.every((x) => x.destroyed)).toBe(true);
  });
});

describe("hopway-mux/1: reused payload buffers", () => {
  it("a chunk split into frames is copied into them: its reused buffer goes back once all of it is framed", async () => {
    const got: Buffer[] = [];
    let peer: Socket | undefined;
    const { port } = await listening((s) => {
      peer = s;
      s.on("data", (c: Buffer) => got.push(c));
      // Frames of at most 2 KiB: a 128 KiB chunk leaves as 65 frames.
      s.write(wordsFrame(FrameType.SETTINGS, 0, [100, 4 * 1024 * 1024, 2048]));
    });
    const client = new MuxSession(await dial(port), "client", SETTINGS);
    client.on("error", () => {});
    cleanups.push(() => client.destroy());
    while (client.peerMaxFrame !== 2048) await sleep(1);
    const stream = client.request({ ":method": "CONNECT", ":authority": "app1:80", "hopway-hops": "r2" });
    stream.on("error", () => {});
    const data = Buffer.alloc(128 * 1024 + 500);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    // A whole reused buffer (buffers.ts), as a relay socket's read becomes on its way to a link.
    const chunk = copyIn(data);
    expect(isLent(chunk)).toBe(true);
    stream.write(chunk);
    // Framed, so copied: the buffer is given back before anything was written, and reusing it at
    // once (as the next socket read would) changes none of the bytes that leave.
    expect(isLent(chunk)).toBe(false);
    chunk.fill(0xee);
    const framed = () => frames(Buffer.concat(got)).filter((f) => f.type === FrameType.DATA && f.id === 1);
    for (let i = 0; i < 500 && framed().reduce((n, f) => n + f.payload.length, 0) < data.length; i++) await sleep(2);
    expect(framed().every((f) => f.payload.length <= 2048)).toBe(true);
    expect(Buffer.concat(framed().map((f) => f.payload)).equals(data)).toBe(true);
    peer?.destroy();
  });
});

describe("hopway-mux/1: memory", () => {
  it("an idle stream costs a few KiB at each end", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const { client, streams } = await pair({ maxConcurrentStreams: 5000, streamWindowBytes: 2 * 1024 * 1024 });
    const N = 2000;
    gc();
    const before = process.memoryUsage().heapUsed;
    const held: MuxStream[] = [];
    for (let i = 0; i < N; i++) {
      const s = client.request({ ":method": "CONNECT", ":authority": `app${i}:80`, "hopway-hops": "r2" });
      s.on("error", () => {});
      held.push(s);
    }
    await nextStream(streams, N);
    for (const [s] of streams) s.respond({ ":status": 200 });
    await sleep(50);
    gc();
    const perPair = (process.memoryUsage().heapUsed - before) / N;
    console.log(`mux: one idle stream, both ends, ${(perPair / 1024).toFixed(1)} KiB of heap`);
    expect(held).toHaveLength(N);
    // Both ends of the stream live in this process: each end is half of it.
    expect(perPair).toBeLessThan(8 * 1024);
  });
});

describe("hopway-mux/1: an idle link holds no frame buffer", () => {
  it("100 links that sent SETTINGS, a stream and PINGs, then went quiet, hold at most the shared free list of frame slabs", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const outside = () => {
      const m = process.memoryUsage();
      return m.external + m.arrayBuffers;
    };
    await pair();
    gc();
    const before = outside();
    const N = 100;
    for (let i = 0; i < N; i++) {
      const { client, streams } = await pair();
      const st = client.request({ ":method": "CONNECT", ":authority": "app1:80", "hopway-hops": "r2" });
      st.on("error", () => {});
      const [server] = await nextStream(streams, 1);
      server.respond({ ":status": 200 });
      await once(st, "response");
      for (let k = 0; k < 5; k++) await new Promise((r) => client.ping(r));
    }
    await sleep(50);
    gc();
    const perLink = (outside() - before) / N;
    console.log(`mux: an idle link, both ends, ${(perLink / 1024).toFixed(1)} KiB outside the heap`);
    // Each end used to keep its 260 KiB slab for the link's life: 520 KiB per link here.
    expect(perLink).toBeLessThan(64 * 1024);
  });
});

/** Total WINDOW credit the frames in `bytes` return for stream `id`. */
function credited(bytes: Buffer[], id: number): number {
  return frames(Buffer.concat(bytes))
    .filter((f) => f.type === FrameType.WINDOW && f.id === id)
    .reduce((n, f) => n + f.payload.readUInt32BE(0), 0);
}

describe("hopway-mux/1 streams", () => {
  it("a paused reader returns no credit, so its sender stops at one window; resuming returns it", async () => {
    const { raw, got, streams } = await rawPeer();
    // The whole window in four DATA frames; the accepted stream is never resumed.
    const quarter = Math.ceil(SETTINGS.streamWindowBytes / 4);
    const data: Buffer[] = [OPEN_1()];
    for (let sent = 0; sent < SETTINGS.streamWindowBytes; sent += quarter) {
      const n = Math.min(quarter, SETTINGS.streamWindowBytes - sent);
      data.push(frameHeader(FrameType.DATA, 0, 1, n), Buffer.alloc(n, 3));
    }
    raw.write(Buffer.concat(data));
    for (let i = 0; i < 200 && (streams[0]?.readableLength ?? 0) < SETTINGS.streamWindowBytes; i++) await sleep(2);
    const st = streams[0] as MuxStream;
    await sleep(50);
    expect(st.readableLength).toBe(SETTINGS.streamWindowBytes);
    expect(credited(got, 1)).toBe(0);
    // Read: the credit comes back, as much as was read.
    const chunks: Buffer[] = [];
    st.on("data", (c: Buffer) => chunks.push(c));
    st.resume();
    for (let i = 0; i < 200 && credited(got, 1) < SETTINGS.streamWindowBytes; i++) await sleep(2);
    expect(Buffer.concat(chunks).length).toBe(SETTINGS.streamWindowBytes);
    expect(credited(got, 1)).toBe(SETTINGS.streamWindowBytes);
    expect(st.readableLength).toBe(0);
  });

  it("what a paused reader's stream holds fills one reused slab of its own, bytes intact; it goes back when the stream is destroyed", async () => {
    for (const destroyUnread of [false, true]) {
      const { raw, streams } = await rawPeer();
      const outBefore = linkBuffersForTest().out;
      // Fifteen DATA frames of 4 KiB of random bytes (the window): each is read borrowed and must be copied.
      const payload = randomBytes(15 * 4096);
      const data: Buffer[] = [OPEN_1()];
      for (let at = 0; at < payload.length; at += 4096) {
        data.push(frameHeader(FrameType.DATA, 0, 1, 4096), payload.subarray(at, at + 4096));
      }
      raw.write(Buffer.concat(data));
      for (let i = 0; i < 500 && (streams[0]?.readableLength ?? 0) < payload.length; i++) await sleep(2);
      const st = streams[0] as MuxStream;
      expect(st.readableLength).toBe(payload.length);
      // One 64 KiB slab holds them all, not a fresh buffer per frame.
      expect(linkBuffersForTest().out - outBefore).toBe(1);
      if (destroyUnread) {
        st.destroy();
        expect(linkBuffersForTest().out - outBefore).toBe(0);
        continue;
      }
      const chunks: Buffer[] = [];
      st.on("data", (c: Buffer) => chunks.push(c));
      st.resume();
      await until(() => chunks.length > 0);
      expect(chunks).toHaveLength(1);
      expect(isLent(chunks[0] as Buffer)).toBe(true);
      expect((chunks[0] as Buffer).equals(payload)).toBe(true);
    }
  });

  it("credit goes back once per stream per pass: sixteen small DATA frames read at once cost one WINDOW", async () => {
    const { raw, got, streams } = await rawPeer();
    raw.write(OPEN_1());
    for (let i = 0; i < 200 && streams.length === 0; i++) await sleep(2);
    const st = streams[0] as MuxStream;
    let read = 0;
    st.on("data", (c: Buffer) => {
      read += c.length;
    });
    st.resume();
    await sleep(10);
    // Under 4 KiB each: every one reaches the reader at once, and 16 KiB of them are a credit step.
    const data: Buffer[] = [];
    for (let i = 0; i < 16; i++) data.push(frameHeader(FrameType.DATA, 0, 1, 4000), Buffer.alloc(4000, i));
    raw.write(Buffer.concat(data));
    for (let i = 0; i < 200 && credited(got, 1) < 64_000; i++) await sleep(2);
    expect(read).toBe(64_000);
    const windows = frames(Buffer.concat(got)).filter((f) => f.type === FrameType.WINDOW && f.id === 1);
    expect(windows.map((f) => f.payload.readUInt32BE(0))).toEqual([64_000]);
  });

  it("a sender without credit stops: its writes wait, count in writableLength, and complete once credit comes", async () => {
    const { client, streams } = await pair();
    const stream = client.request({ ":authority": "a" });
    const [srv] = await nextStream(streams, 1);
    srv.respond({ ":status": 200 });
    const done: number[] = [];
    const chunk = Buffer.alloc(48 * 1024, 5);
    for (let i = 0; i < 4; i++) stream.write(chunk, () => done.push(i));
    await sleep(50);
    // One window (64 KiB less a byte) went; the rest waits at the sender.
    expect(srv.readableLength).toBe(SETTINGS.streamWindowBytes);
    expect(stream.sendCredit).toBe(0);
    expect(stream.writableLength).toBeGreaterThan(chunk.length);
    expect(done.length).toBeLessThan(4);
    const drained = once(stream, "drain");
    const got = read(srv);
    await drained;
    expect(done).toEqual([0, 1, 2, 3]);
    expect(stream.writableLength).toBe(0);
    stream.end();
    expect((await got).length).toBe(4 * chunk.length);
  });

  it("half-closes either way: the side that ended still reads, and both close clean", async () => {
    const { client, streams } = await pair();
    const stream = client.request({ ":authority": "a" });
    const [srv] = await nextStream(streams, 1);
    srv.respond({ ":status": 200 });
    await once(stream, "response");
    // The accepting side ends first; the dialling side reads that end and still writes.
    const atClient = read(stream);
    const atServer = read(srv);
    srv.end("answer first");
    expect(String(await atClient)).toBe("answer first");
    expect(stream.readableEnded).toBe(true);
    expect(srv.writableFinished).toBe(true);
    expect(stream.destroyed).toBe(false);
    stream.write("then the question");
    stream.end();
    expect(String(await atServer)).toBe("then the question");
    await Promise.all([closed(stream), closed(srv)]);
    expect(stream.rstCode).toBe(Code.NO_ERROR);
    expect(srv.rstCode).toBe(Code.NO_ERROR);
    // A write after the end fails, and says so.
    const err = await new Promise<Error | null | undefined>((r) => stream.write(Buffer.from("late"), r));
    expect(err?.message).toMatch(/destroyed|after end/);
  });

  it("destroyed mid-write: writes not yet framed and a partly framed one give their reused buffers back at once", async () => {
    const got: Buffer[] = [];
    const { port } = await listening((s) => {
      s.on("data", (c: Buffer) => got.push(c));
      // A 4 KiB stream window and never a WINDOW: the first write is framed in part, the rest wait.
      s.write(wordsFrame(FrameType.SETTINGS, 0, [100, 4096, MAX_FRAME]));
    });
    const client = new MuxSession(await dial(port), "client", SETTINGS);
    client.on("error", () => {});
    cleanups.push(() => client.destroy());
    while (client.peerMaxFrame !== MAX_FRAME) await sleep(1);
    const stream = client.request({ ":authority": "a" });
    // Whole reused buffers (buffers.ts), as relay socket reads become on their way to a link.
    const [a, b, c] = [1, 2, 3].map((i) => copyIn(Buffer.alloc(200 * 1024, i))) as [Buffer, Buffer, Buffer];
    const errors: Array<Error | null | undefined> = [];
    stream.write(a, (e) => errors.push(e));
    stream.write(b, (e) => errors.push(e));
    stream.write(c);
    expect([a, b, c].every(isLent)).toBe(true);
    stream.destroy();
    expect(isLent(b)).toBe(false);
    expect(isLent(c)).toBe(false);
    // 4 KiB of `a` is framed, as a copy: its buffer goes back too, and reusing it changes nothing sent.
    expect(isLent(a)).toBe(false);
    a.fill(0xee);
    expect(errors).toHaveLength(2);
    expect(errors.every((e) => e instanceof Error)).toBe(true);
    for (let i = 0; i < 200 && !frames(Buffer.concat(got)).some((f) => f.type === FrameType.RST); i++) await sleep(2);
    const seen = frames(Buffer.concat(got));
    expect(seen.filter((f) => f.type === FrameType.DATA).every((f) => f.payload.every((x) => x === 1))).toBe(true);
    expect(seen.filter((f) => f.type === FrameType.DATA).reduce((n, f) => n + f.payload.length, 0)).toBe(4096);
    expect(seen.find((f) => f.type === FrameType.RST)?.payload.readUInt32BE(0)).toBe(Code.CANCEL);
    await closed(stream);
    expect(stream.rstCode).toBe(Code.CANCEL);
  });
});

describe("hopway-mux/1: the receive path", () => {
  it("a small message is handed to the reader within the read that brought it, not later in the pass", async () => {
    const { raw, streams, accepted } = await rawPeer();
    raw.write(OPEN_1());
    const st = (await (async () => {
      for (let i = 0; i < 200 && streams.length === 0; i++) await sleep(2);
      return streams[0];
    })()) as MuxStream;
    // Wraps the session's read callback (reads.ts) to see whether a chunk arrives inside it.
    const socket = accepted() as Socket & Record<symbol, (c: Buffer, b: boolean) => void>;
    const slot = Object.getOwnPropertySymbols(socket).find((k) => k.description === "hopway.linkReader");
    expect(slot).toBeDefined();
    const reader = socket[slot as symbol] as (c: Buffer, b: boolean) => void;
    let inRead = false;
    socket[slot as symbol] = (c, b) => {
      inRead = true;
      reader(c, b);
      inRead = false;
    };
    const seen: Array<{ length: number; inRead: boolean }> = [];
    st.on("data", (c: Buffer) => seen.push({ length: c.length, inRead }));
    st.resume();
    await sleep(10);
    // 16 bytes, then 6 KiB: large enough for a reused buffer, in a read short of a full record.
    raw.write(Buffer.concat([frameHeader(FrameType.DATA, 0, 1, 16), Buffer.alloc(16, 1)]));
    for (let i = 0; i < 200 && seen.length < 1; i++) await sleep(2);
    raw.write(Buffer.concat([frameHeader(FrameType.DATA, 0, 1, 6144), Buffer.alloc(6144, 2)]));
    for (let i = 0; i < 200 && seen.length < 2; i++) await sleep(2);
    expect(seen).toEqual([
      { length: 16, inRead: true },
      { length: 6144, inRead: true },
    ]);
  });

  it("over TLS, consecutive records of one stream reach its reader as one chunk of up to 64 KiB, bytes intact", async () => {
    // Stream windows as large as a relay's: frames are cut by size, not by credit.
    const BULK = { maxConcurrentStreams: 100, streamWindowBytes: 4 * 1024 * 1024 };
    const { sender: stream, received: st } = await muxStreamOverTls(cleanups, BULK, "bulk");
    const sizes: number[] = [];
    const hash = createHash("sha256");
    st.on("data", (c: Buffer) => {
      sizes.push(c.length);
      hash.update(c);
    });
    const ended = once(st as MuxStream, "end");
    st.resume();
    const data = Buffer.alloc(4 * 1024 * 1024);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
    stream.end(data);
    await ended;
    expect(hash.digest("hex")).toBe(createHash("sha256").update(data).digest("hex"));
    // One chunk per 16 KiB record would be 256 of them; coalesced, most carry several records.
    expect(Math.max(...sizes)).toBeGreaterThan(32 * 1024);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(64 * 1024);
    expect(sizes.length).toBeLessThan(128);
  });
});

describe("hopway-mux/1: borrowed chunks (writeBorrowed)", () => {
  /** 8 MiB that differ at every 4 bytes, so a chunk read into again shows in the hash. */
  function pattern(bytes: number, seed: number): Buffer {
    const data = Buffer.alloc(bytes);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(((i + seed) * 2654435761) >>> 0, i);
    return data;
  }
  const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

  /** A reader that stalls: paused for `ms` after every `every` bytes, so its sender runs out of credit. */
  function stallingReader(st: MuxStream, every: number, ms: number): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let since = 0;
    st.on("data", (c: Buffer) => {
      chunks.push(Buffer.from(c));
      since += c.length;
      if (since >= every) {
        since = 0;
        st.pause();
        setTimeout(() => st.resume(), ms);
      }
    });
    st.resume();
    return once(st, "end").then(() => Buffer.concat(chunks));
  }

  it("a relay socket's read buffer, written borrowed and read into again at once, arrives intact past a stalled reader", async () => {
    const { client, streams } = await pair();
    const stream = client.request({ ":authority": "bulk" });
    const [st] = await nextStream(streams, 1);
    const got = stallingReader(st, 48 * 1024, 5);
    const data = pattern(8 * 1024 * 1024, 1);
    // One buffer read into again after every write, as pump.ts's sink hands its reads on; the
    // 64 KiB window runs out often, so writes find no credit and go the waiting way.
    const readBuffer = Buffer.alloc(24 * 1024);
    let waited = 0;
    for (let at = 0; at < data.length; ) {
      const n = Math.min(readBuffer.length, data.length - at, 1 + ((at * 7919) % readBuffer.length));
      data.copy(readBuffer, 0, at, at + n);
      at += n;
      if (!stream.writeBorrowed(readBuffer.subarray(0, n))) {
        waited++;
        readBuffer.fill(0xee);
        await once(stream, "drain");
      }
      readBuffer.fill(0xee);
    }
    stream.end();
    const out = await got;
    expect(waited).toBeGreaterThan(10);
    expect(out.length).toBe(data.length);
    expect(sha(out)).toBe(sha(data));
  });

  it("a middle relay hands a link's read buffer on borrowed; a stalled next hop makes it copy what waits, bytes intact", async () => {
    // a → b → c over two links; at b the stream's reader writes what it is handed on to the next
    // link as legs.ts does, borrowed views of the link's read buffer included. c's reader stalls,
    // so b's next stream runs out of credit while the read buffer is read into again.
    const ab = await pair();
    const bc = await pair();
    const up = ab.client.request({ ":authority": "c" });
    const [mid] = await nextStream(ab.streams, 1);
    const down = bc.client.request({ ":authority": "c" });
    const [end] = await nextStream(bc.streams, 1);
    let borrowedChunks = 0;
    mid.takesBorrowed = true;
    mid.reader = (chunk, borrowed) => {
      if (borrowed) {
        borrowedChunks++;
        down.writeBorrowed(chunk);
      } else down.write(chunk);
      if (down.writableLength >= 64 * 1024) mid.pause();
    };
    down.on("drain", () => mid.resume());
    mid.on("end", () => down.end());
    mid.resume();
    // A second stream on the first link keeps its read buffer busy with other bytes.
    const other = ab.client.request({ ":authority": "other" });
    const [otherEnd] = await nextStream(ab.streams, 2);
    const otherGot = stallingReader(otherEnd, 1 << 30, 0);
    const got = stallingReader(end, 40 * 1024, 4);
    const data = pattern(8 * 1024 * 1024, 2);
    const noise = pattern(2 * 1024 * 1024, 3);
    for (let at = 0; at < data.length; at += 16 * 1024) up.write(data.subarray(at, at + 16 * 1024));
    up.end();
    other.end(noise);
    const out = await got;
    expect(borrowedChunks).toBeGreaterThan(0);
    expect(out.length).toBe(data.length);
    expect(sha(out)).toBe(sha(data));
    expect(sha(await otherGot)).toBe(sha(noise));
  });
});
