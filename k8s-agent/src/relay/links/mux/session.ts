// hopway-mux/1: tunnels multiplexed over one already-verified TLS socket
// (docs/contract/relay-protocol.md §4). The API mirrors the node:http2 subset the
// link code uses (../session.ts). Only the dialling side opens streams (odd ids).
//
// Bounds: a DATA payload ≤ MAX_FRAME, a header block ≤ MAX_HEADER_BLOCK, open
// streams ≤ the local maxConcurrentStreams (more are refused), and per stream at
// most the announced stream window unread at the receiver: a sender spends credit
// and the receiver returns it (WINDOW) only as its reader consumes, so a stalled
// reader stops its own stream and no other. What this end has queued to send is
// bounded by LINK_SEND_BUFFER plus one write per stream. Any violation closes the
// link (GOAWAY with PROTOCOL_ERROR, then the socket) with a stable reason.
import { randomInt } from "node:crypto";
import { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import { KeyMap } from "../../churn.ts";
import { READ_BUFFER_BYTES } from "../../pump.ts";
import { appendOwn, copyIn, extendIn, isLent, release } from "../buffers.ts";
import { readLink } from "../reads.ts";
import type { LinkClientSession, LinkHeaders, LinkOutgoingHeaders, LinkServerStream } from "../session.ts";
import {
  Code,
  DEFAULT_MAX_FRAME,
  DEFAULT_STREAM_WINDOW,
  decodeHeaders,
  FIXED_LENGTH,
  FLAG_FIN,
  FrameType,
  HEADER_BYTES,
  headerBlockLength,
  MAX_FRAME,
  MAX_HEADER_BLOCK,
  putFrameHeader,
  wordsFrame,
  writeHeaderBlock,
} from "./frame.ts";
import { type WindowBudget, type WindowEpoch, windowGrowth } from "./window.ts";

/** Bytes queued on the TLS socket past which writers wait for its `drain`. */
export const LINK_SEND_BUFFER = 1 << 20;
const MAX_WINDOW = 2 ** 31 - 1;
const EMPTY = Buffer.alloc(0);
/**
 * Where a session writes the frames of one event-loop pass. Room for a relay socket's largest read
 * (pump.ts) and its frame header, so the DATA frames copied from one read (`sendDataCopy`) leave as
 * one contiguous buffer: TLSWrap copies a multi-buffer write into one buffer before encrypting it,
 * and a perf profile of the middle relay put that copy among its largest costs (docs/benchmarks/links.md,
 * "Where the bulk CPU goes"). A full slab goes back to a small free list once every write that
 * carried a part of it has called back; a slab is never reused while a write holds it.
 */
const SLAB_BYTES = READ_BUFFER_BYTES + 4 * 1024;
/** Slabs kept for reuse, process-wide. */
const MAX_FREE_SLABS = 16;
const freeSlabs: Buffer[] = [];
/** Socket writes a session keeps not called back (`send`). */
const MAX_IN_FLIGHT = 2;
/**
 * Answers to the peer's own frames (a PONG per PING, an RST per OPEN refused past the stream
 * limit or with a header map outside printable ASCII) framed and not yet handed to the socket. A peer that sends such frames and does not read
 * would otherwise grow this queue without end; past the bound its link is closed (`flood`), as
 * nghttp2 bounds its queue of outbound acknowledgements. A peer that reads never comes near it.
 */
const MAX_UNSENT_ANSWERS = 1000;
/**
 * Bytes of every answer not yet handed to the socket: those above and the REPLY and RST of each
 * refused stream (which `refusedUnsent` bounds in number). A backstop: past it the link is closed
 * (`flood`). An honest peer, which opens no more streams than `max_concurrent_streams`, waits on at
 * most that many refusals (REFUSAL_BYTES each at most: a refusal's values are cut to 512 bytes)
 * besides the answers above, so the bound grows with that setting (mayAnswer).
 */
const MAX_UNSENT_ANSWER_BYTES = 4 * LINK_SEND_BUFFER;
const REFUSAL_BYTES = 1280;
/** An RST frame on the wire. */
const RST_BYTES = HEADER_BYTES + 4;
/** The part of the relay's window budget (window.ts) one link's streams may hold together. */
const LINK_BUDGET_SHARE = 1 / 4;
/** A copied DATA frame is split to fill what is left of the slab rather than start a new one, when that is at least this much. */
const SPLIT_MIN = 16 * 1024;

/** A frame slab and the writes that hold parts of it. */
interface FrameSlab {
  buf: Buffer;
  /** Parts handed to the socket whose writes have not called back. */
  out: number;
  /** Nothing more is written into it. */
  full: boolean;
  /** A write of it failed: it is not reused (the socket may not be done with it). */
  kept: boolean;
}

function takeSlab(n: number): FrameSlab {
  const buf = n <= SLAB_BYTES ? (freeSlabs.pop() ?? Buffer.allocUnsafeSlow(SLAB_BYTES)) : Buffer.allocUnsafeSlow(n);
  return { buf, out: 0, full: false, kept: false };
}

function giveSlab(sl: FrameSlab): void {
  if (!sl.kept && sl.buf.length === SLAB_BYTES && freeSlabs.length < MAX_FREE_SLABS) freeSlabs.push(sl.buf);
}

/** A write holding part of `sl` called back: the slab goes back once it is full and no write holds it. A failed write keeps it (the garbage collector takes it). */
function slabWritten(sl: FrameSlab, err: Error | null | undefined): void {
  if (err != null) sl.kept = true;
  if (--sl.out === 0 && sl.full) giveSlab(sl);
}

/** Frame slabs in the free list (tests check that written slabs come back). */
export function freeFrameSlabsForTest(): number {
  return freeSlabs.length;
}

export interface MuxSettings {
  maxConcurrentStreams: number;
  /** The receive window each stream starts with, announced in SETTINGS. */
  streamWindowBytes: number;
  /**
   * How far a stream's receive window may grow while its reader keeps up (window.ts), taking the
   * growth from `windowBudget`; without both, windows stay at streamWindowBytes.
   */
  maxStreamWindowBytes?: number;
  windowBudget?: WindowBudget;
  /** The tenant whose share of `windowBudget` this link's growth counts against (the peer's namespace; none: undefined). */
  budgetTenant?: string | undefined;
  /** Milliseconds, for window tuning (tests set it). */
  now?: () => number;
}

/** Why a link was closed for a protocol violation: a closed set of stable strings. */
export type MuxViolation =
  | "settings_expected"
  | "settings_repeated"
  | "bad_settings"
  | "unknown_frame_type"
  | "bad_frame_length"
  | "frame_too_large"
  | "header_block_too_large"
  | "bad_header_block"
  | "bad_stream_id"
  | "unexpected_frame"
  | "flow_control"
  | "data_after_fin"
  | "flood";

export class MuxProtocolError extends Error {
  readonly code = "ERR_HOPWAY_MUX_PROTOCOL";
  constructor(
    readonly reason: MuxViolation,
    detail: string,
  ) {
    super(`hopway-mux protocol violation (${reason}): ${detail}`);
  }
}

type PingCallback = (err: Error | null, duration: number, payload: Buffer) => void;
type WriteCallback = (err?: Error | null) => void;

/** Bytes written past which `write` returns false and 'drain' follows, as a Writable's default. */
const WRITE_HIGH_WATER = 16 * 1024;

/**
 * One tunnel's end on a hopway-mux/1 link: the LinkStream subset (../session.ts) and no more.
 * Not a Duplex: a tunnel's bytes pass through a handful of fields and direct calls instead of a
 * Readable's and a Writable's state, callbacks and ticks (docs/benchmarks/links.md, "Where a
 * tunnel's CPU goes").
 */
export class MuxStream extends EventEmitter implements LinkServerStream {
  rstCode: number | undefined = undefined;
  headersSent = false;
  /** Client side: the REPLY arrived. */
  replied = false;
  /**
   * Accepting side: this end refused the stream (a REPLY with FIN, or a reset before any REPLY).
   * Its REPLY and RST are answers to the peer's OPEN with no tunnel behind them; until they are
   * handed to the socket the stream keeps its place against the stream limit (MuxSession.forget).
   */
  refused = false;
  /** This end sent FIN / the peer's FIN arrived. */
  localFin = false;
  remoteFin = false;
  /** Bytes this end may still send. */
  sendCredit: number;
  /** Bytes the peer may still send. */
  recvWindow: number;
  /** Bytes received and bytes of them credited back. */
  received = 0;
  granted = 0;
  /** The receive window now: the announced one, plus what tuning added (`grown`, from the relay's WindowBudget). */
  window: number;
  grown = 0;
  /** Made at the stream's first credit with tuning on: an idle tunnel carries none. */
  epoch: WindowEpoch | undefined = undefined;
  /** Its credit is due at the end of this pass (MuxSession.credit). */
  creditQueued = false;
  destroyed = false;
  /** 'close' was emitted. */
  closed = false;
  /** A mux stream never errors: a reset or a lost link sets `rstCode`. */
  readonly errored: Error | null = null;
  readableEnded = false;
  writableFinished = false;
  writableLength = 0;
  /** Bytes received that the reader has not taken yet (held for coalescing, or waiting while paused). */
  readableLength = 0;
  /**
   * Takes the stream's bytes instead of 'data' events (legs.ts sets it). The chunk is the
   * reader's; one from buffers.ts goes back with `release` once written on.
   */
  reader: ((chunk: Buffer, borrowed: boolean) => void) | undefined = undefined;
  /**
   * The reader also takes borrowed chunks (`borrowed` true: a view of the link's read buffer, read
   * into again once the reader returns), which it writes on at once with `writeBorrowed`; the
   * receive path then skips its own copy (legs.ts sets it for a link-to-link leg).
   */
  takesBorrowed = false;
  private flowing = false;
  /** Bytes that arrived while the reader was paused (or before it resumed), in order. */
  private inbox: Buffer[] | undefined = undefined;
  private flowScheduled = false;
  /** `end()` was called: FIN follows the last write. */
  private ending = false;
  private needDrain = false;
  /** The write in progress: all of it, and the part of it not framed yet. */
  private pendingWhole: Buffer | undefined = undefined;
  private pendingChunk: Buffer | undefined = undefined;
  private pendingCb: WriteCallback | undefined = undefined;
  /** Framed whole, waiting for the link's send queue to drain below LINK_SEND_BUFFER. */
  private waitingLink = false;
  /** Writes after the one in progress: chunk, callback, chunk, callback, ... */
  private queue: Array<Buffer | WriteCallback | undefined> | undefined = undefined;
  private pumping = false;

  constructor(
    private readonly session: MuxSession,
    readonly id: number,
    sendCredit: number,
    recvWindow: number,
  ) {
    super();
    this.sendCredit = sendCredit;
    this.recvWindow = recvWindow;
    this.window = recvWindow;
  }

  respond(headers: LinkOutgoingHeaders, options?: { endStream?: boolean }): void {
    if (this.headersSent) throw new Error("reply already sent");
    if (this.destroyed) return;
    this.headersSent = true;
    const end = options?.endStream === true;
    this.session.reply(this, headers, end);
    if (end) {
      this.localFin = true;
      this.end();
    }
  }

  // ---- writing

  write(chunk: Buffer | string, cb?: WriteCallback): boolean {
    const b = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    if (this.destroyed || this.ending) {
      if (cb !== undefined) process.nextTick(cb, new Error(this.destroyed ? "stream destroyed" : "write after end"));
      return false;
    }
    this.writableLength += b.length;
    if (this.pendingWhole === undefined && this.queue === undefined) {
      this.pendingWhole = b;
      this.pendingChunk = b;
      this.pendingCb = cb;
    } else {
      this.queue ??= [];
      this.queue.push(b, cb);
    }
    this.pump();
    if (this.writableLength < WRITE_HIGH_WATER) return true;
    this.needDrain = true;
    return false;
  }

  /**
   * `write` for a chunk that is read into again once this returns (a relay socket's read buffer,
   * a link's read buffer): when nothing of this stream waits, what credit allows is copied straight
   * into DATA frames (the one copy on its way), and only a rest the peer has no credit for yet is
   * copied into a reused buffer and written as usual. A congested link takes the usual way too, so
   * the bounds stay those of `write`.
   */
  writeBorrowed(chunk: Buffer): boolean {
    if (this.destroyed || this.ending) return false;
    let rest = chunk;
    if (this.pendingWhole === undefined && this.queue === undefined && !this.session.congested()) {
      const n = this.session.sendDataCopy(this, chunk);
      if (n === chunk.length) {
        if (this.sendCredit > 0) return true;
        // Out of credit: false and a 'drain' once credit came (`flush`), so a socket source stops
        // reading and its next bytes wait in the kernel rather than in a copy here.
        this.needDrain = true;
        return false;
      }
      rest = chunk.subarray(n);
    }
    this.write(copyIn(rest));
    this.needDrain = true;
    return false;
  }

  end(chunk?: Buffer | string): this {
    if (chunk !== undefined) this.write(chunk);
    if (this.ending || this.destroyed) return this;
    this.ending = true;
    this.pump();
    return this;
  }

  /** Sends what credit allows (the session calls it when credit arrives); the FIN after the last write. */
  flush(): void {
    this.pump();
  }

  /** The link's send queue drained (or the link is gone): the framed write completes. */
  linkDrained(): void {
    if (!this.waitingLink || this.destroyed) return;
    this.waitingLink = false;
    this.completeWrite();
    this.pump();
  }

  /**
   * Moves writes on as far as credit and the link allow: a write completes once all of it is
   * framed and the link is not congested; then the next; with none left, 'drain' and the FIN.
   */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    while (!this.destroyed) {
      if (this.pendingWhole !== undefined) {
        if (this.pendingChunk !== undefined && !this.frameOut(this.pendingChunk)) break;
        if (this.waitingLink) break;
        if (this.session.congested()) {
          this.waitingLink = true;
          this.session.waitDrain(this);
          break;
        }
        this.completeWrite();
        continue;
      }
      const q = this.queue;
      if (q !== undefined) {
        this.pendingWhole = q.shift() as Buffer;
        this.pendingChunk = this.pendingWhole;
        this.pendingCb = q.shift() as WriteCallback | undefined;
        if (q.length === 0) this.queue = undefined;
        continue;
      }
      if (this.needDrain) {
        this.needDrain = false;
        this.emit("drain");
        // A 'drain' listener may have written again.
        if (this.pendingWhole !== undefined) continue;
      }
      if (this.ending && !this.writableFinished) {
        if (!this.localFin) {
          this.localFin = true;
          this.session.sendFrame(FrameType.DATA, FLAG_FIN, this.id, EMPTY);
        }
        this.writableFinished = true;
        this.maybeClose();
      }
      break;
    }
    this.pumping = false;
  }

  /** Frames what credit allows of `chunk` (the unframed rest of the write in progress); true once all of it is. */
  private frameOut(chunk: Buffer): boolean {
    // Copied into the frames (sendDataCopy): a reused buffer goes back once all of it is.
    const n = this.session.sendDataCopy(this, chunk);
    if (n < chunk.length) {
      this.pendingChunk = chunk.subarray(n);
      return false;
    }
    this.pendingChunk = undefined;
    release(this.pendingWhole as Buffer);
    return true;
  }

  private completeWrite(): void {
    const cb = this.pendingCb;
    this.writableLength -= (this.pendingWhole as Buffer).length;
    this.pendingWhole = undefined;
    this.pendingChunk = undefined;
    this.pendingCb = undefined;
    if (cb !== undefined) cb();
  }

  // ---- reading

  pause(): this {
    this.flowing = false;
    return this;
  }

  resume(): this {
    if (this.destroyed || this.flowing) return this;
    this.flowing = true;
    // As a Readable does: what waited is handed over on the next tick, after the caller's own setup.
    if (!this.flowScheduled && (this.inbox !== undefined || (this.remoteFin && !this.readableEnded))) {
      this.flowScheduled = true;
      process.nextTick(flowOut, this);
    }
    return this;
  }

  /** Whether bytes arriving now go straight to the reader (so a reused buffer may carry them). */
  get takesNow(): boolean {
    return this.flowing && this.inbox === undefined && !this.flowScheduled;
  }

  /** Received bytes for the reader (the session calls it): handed over now when flowing, else kept. */
  take(chunk: Buffer, borrowed = false): void {
    if (this.takesNow) {
      this.hand(chunk, borrowed);
      return;
    }
    // Bytes that wait (a slow reader) go into reused slabs of this stream's own (appendOwn), so
    // they pin no slab another stream shares, and consecutive pieces fill one slab.
    const q = this.inbox;
    let own = chunk;
    if (borrowed || isLent(chunk)) {
      const last = q === undefined ? undefined : q[q.length - 1];
      own = appendOwn(last, chunk);
      if (!borrowed) release(chunk);
      if (q !== undefined && last !== undefined && own.buffer === last.buffer && own.byteOffset === last.byteOffset) {
        q[q.length - 1] = own;
        return;
      }
    }
    if (q === undefined) this.inbox = [own];
    else q.push(own);
  }

  /** The peer's FIN: 'end' once everything before it was read. */
  remoteEnd(): void {
    this.remoteFin = true;
    if (this.takesNow) this.emitEnd();
  }

  /** Hands what waited to the reader, while it keeps flowing. */
  flowOut(): void {
    this.flowScheduled = false;
    let q = this.inbox;
    while (q !== undefined && this.flowing && !this.destroyed) {
      const chunk = q.shift() as Buffer;
      if (q.length === 0) this.inbox = q = undefined;
      this.hand(chunk, false);
    }
    if (q === undefined && this.flowing && this.remoteFin && !this.readableEnded && !this.destroyed) this.emitEnd();
  }

  private hand(chunk: Buffer, borrowed: boolean): void {
    this.readableLength -= chunk.length;
    const r = this.reader;
    if (r !== undefined) r(chunk, borrowed);
    else this.emit("data", borrowed ? Buffer.from(chunk) : chunk);
    this.session.credit(this);
  }

  private emitEnd(): void {
    this.readableEnded = true;
    this.emit("end");
    this.maybeClose();
  }

  // ---- closing

  private maybeClose(): void {
    if (this.readableEnded && this.writableFinished) this.destroy();
  }

  /** Resets the stream (CANCEL) unless both sides finished; writes not yet framed fail, their reused buffers go back. */
  destroy(): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.flowing = false;
    this.session.dropHeld(this);
    if (this.inbox !== undefined) for (const b of this.inbox) release(b);
    this.inbox = undefined;
    const failed: WriteCallback[] = [];
    // The write in progress: its frames are copies, so its buffer goes back now unless framing it
    // all gave it back already.
    const whole = this.pendingWhole;
    if (whole !== undefined) {
      if (this.pendingChunk !== undefined) release(whole);
      if (this.pendingCb !== undefined) failed.push(this.pendingCb);
    }
    const q = this.queue;
    if (q !== undefined) {
      for (let i = 0; i < q.length; i += 2) {
        release(q[i] as Buffer);
        const cb = q[i + 1] as WriteCallback | undefined;
        if (cb !== undefined) failed.push(cb);
      }
    }
    this.pendingWhole = this.pendingChunk = this.pendingCb = this.queue = undefined;
    this.waitingLink = false;
    if (this.rstCode === undefined) {
      if (this.localFin && this.remoteFin && this.readableEnded) this.rstCode = Code.NO_ERROR;
      else {
        this.rstCode = Code.CANCEL;
        this.session.cancel(this);
      }
    }
    this.session.forget(this);
    if (failed.length > 0) {
      const err = new Error("stream destroyed");
      for (const cb of failed) cb(err);
    }
    process.nextTick(emitClose, this);
    return this;
  }

  /** Why this end reset the stream for the peer's fault (LinkStream.resetHere). */
  resetHere: string | undefined;

  /** The peer reset it, or the link went away: no error event, `rstCode` says why. */
  cut(code: number): void {
    if (this.rstCode === undefined) this.rstCode = code;
    this.destroy();
  }
}

function ignorePong(): void {}

function flowOut(s: MuxStream): void {
  s.flowOut();
}

function emitClose(s: MuxStream): void {
  s.closed = true;
  s.emit("close");
}

export class MuxSession extends EventEmitter implements LinkClientSession {
  destroyed = false;
  readonly remoteSettings: { maxConcurrentStreams?: number | undefined } = {};
  /** The peer's largest DATA payload. */
  peerMaxFrame = DEFAULT_MAX_FRAME;
  private peerWindow = DEFAULT_STREAM_WINDOW;
  private readonly streams = new KeyMap<number, MuxStream>();
  private nextId = 1;
  /** Highest stream id the peer opened (accepting side). */
  private highestPeerId = 0;
  private gotSettings = false;
  private goawaySent = false;
  private goawayReceived = false;
  private closing = false;
  private closeEmitted = false;
  /** Pings in flight by sequence number, each with a random word its PONG must echo. */
  private readonly pings = new Map<number, { at: number; cb: PingCallback; nonce: number }>();
  private pingSeq = 0;
  /** Answers (see MAX_UNSENT_ANSWERS) not yet handed to the socket, in all and in the slab since the last cut. */
  private unsentAnswers = 0;
  private answersInSlab = 0;
  /** Per entry of `queued`: the answers in it. */
  private queuedAnswers: number[] = [];
  /** The same for the bytes of answers (MAX_UNSENT_ANSWER_BYTES), refusals' REPLY and RST included. */
  private unsentAnswerBytes = 0;
  private answerBytesInSlab = 0;
  private queuedAnswerBytes: number[] = [];
  /**
   * Streams this end refused whose last frame is not yet handed to the socket: each keeps its place
   * against the stream limit until then, as it does at an honest dialling peer, which frees a
   * stream only once it has read its answer. So a peer that does not read gets at most
   * `maxConcurrentStreams` refusals queued; past them, its OPENs are refused with an RST each,
   * which counts in MAX_UNSENT_ANSWERS.
   */
  private refusedUnsent = 0;
  /** MAX_UNSENT_ANSWER_BYTES, and room for a refusal per stream the peer may hold open. */
  private readonly maxAnswerBytes: number;
  private refusedInSlab = 0;
  private queuedRefused: number[] = [];
  private finishing = false;
  // Frames of this pass: written into `slab` from `slabAt` on; `sealed` is the part of them
  // already cut into `queued` (with payloads too large to copy), handed to the socket at once.
  private slab: Buffer = EMPTY;
  private slabRef: FrameSlab | undefined = undefined;
  private slabAt = 0;
  private sealed = 0;
  /** Where the last DATA frame `sendDataCopy` wrote starts and ends in the slab (-1: none). */
  private lastData = -1;
  private lastDataEnd = -1;
  private queued: Buffer[] = [];
  /** Per entry of `queued`: the frame slab it is a part of. */
  private queuedSlab: FrameSlab[] = [];
  /** Per entry of `queued`: what to call once the socket wrote it (a reused payload buffer goes back). */
  private queuedDone: Array<(() => void) | undefined> = [];
  /** What to call once the socket wrote the slab's frames since the last cut (copied payloads' `written`). */
  private slabDone: Array<() => void> | undefined = undefined;
  /** Bytes framed this pass and not yet handed to the socket. */
  private pendingBytes = 0;
  private flushScheduled = false;
  /** Socket writes of ours not yet called back. */
  private inFlight = 0;
  /** Streams with credit to return at the end of this pass. */
  private creditDue: MuxStream[] = [];
  /** Streams whose framed write waits for the socket's drain. */
  private drainWaiters: MuxStream[] = [];
  // Receive coalescing: the DATA bytes of consecutive TLS records for one stream, copied next to
  // each other into one reused slab (buffers.ts) and handed to the stream as one chunk once the
  // slab is full, another stream's bytes come, a read ends where a frame ends, or the pass ends.
  private held: Buffer | undefined = undefined;
  private heldStream: MuxStream | undefined = undefined;
  private heldScheduled = false;
  /**
   * The least round trip of this link's PINGs (ms; 0 until the first PONG), for window tuning. The
   * least, not an average: a peer can delay its PONGs to make its round trip look longer (and slow
   * readers look fast), but it cannot answer a PING before it arrives.
   */
  private rtt = 0;
  /** What this link's streams took from the relay's window budget, together (at most LINK_BUDGET_SHARE of it). */
  private grownTotal = 0;
  private readonly tuning: boolean;
  // Parser state: the current frame's header (possibly split across reads), then its payload.
  private readonly head = Buffer.alloc(HEADER_BYTES);
  private headFill = 0;
  private type = 0;
  private flags = 0;
  private id = 0;
  /** Payload bytes of the current frame still to come; -1 while reading a header. */
  private remaining = -1;
  private control: Buffer = EMPTY;
  private controlFill = 0;
  /** The stream the current DATA frame feeds; undefined when it is already gone (discarded). */
  private dataStream: MuxStream | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly role: "client" | "server",
    private readonly settings: MuxSettings,
  ) {
    super();
    this.maxAnswerBytes = MAX_UNSENT_ANSWER_BYTES + settings.maxConcurrentStreams * (REFUSAL_BYTES + RST_BYTES);
    this.tuning =
      settings.windowBudget !== undefined && (settings.maxStreamWindowBytes ?? 0) > settings.streamWindowBytes;
    readLink(socket, (chunk, borrowed) => this.onData(chunk, borrowed));
    socket.on("error", (err: Error) => this.destroy(err));
    socket.on("close", () => this.destroy());
    // The peer closed its side: nothing more arrives on any stream (it ends a link after its streams).
    socket.on("end", () => this.destroy());
    socket.on("drain", () => this.releaseWriters());
    socket.write(
      wordsFrame(FrameType.SETTINGS, 0, [settings.maxConcurrentStreams, settings.streamWindowBytes, MAX_FRAME]),
    );
  }

  /** Milliseconds (performance.now unless the settings give a clock). */
  clock(): number {
    return this.settings.now?.() ?? performance.now();
  }

  /** Streams open now. */
  get streamCount(): number {
    return this.streams.size;
  }

  request(headers: LinkOutgoingHeaders, options?: { endStream?: boolean }): MuxStream {
    if (this.role !== "client") throw new Error("only the dialling side opens streams");
    if (this.destroyed || this.closing || this.goawayReceived) throw new Error("link is closing");
    if (this.nextId > MAX_WINDOW) throw new Error("link ran out of stream ids");
    // Measured (and refused when too large) before the stream takes an id.
    const length = headerBlockLength(headers);
    const id = this.nextId;
    this.nextId += 2;
    const stream = new MuxStream(this, id, this.peerWindow, this.settings.streamWindowBytes);
    this.streams.set(id, stream);
    const end = options?.endStream === true;
    this.sendHeaders(FrameType.OPEN, end ? FLAG_FIN : 0, id, headers, undefined, length);
    if (end) {
      stream.localFin = true;
      stream.end();
    }
    return stream;
  }

  ping(cb: PingCallback): boolean {
    if (this.destroyed) return false;
    const seq = ++this.pingSeq >>> 0;
    // Random, so that a peer cannot answer pings it never read (a counter alone is guessable)
    // and keep a link it has stopped reading looking alive.
    const nonce = randomInt(0x1_0000_0000);
    this.pings.set(seq, { at: this.clock(), cb, nonce });
    this.sendWords(FrameType.PING, 0, nonce, seq);
    return true;
  }

  /** GOAWAY: the peer opens no new streams; the ones it opened so far stand. */
  goaway(code: number = Code.NO_ERROR): void {
    if (this.destroyed || this.goawaySent) return;
    this.goawaySent = true;
    this.sendWords(FrameType.GOAWAY, 0, this.highestPeerId, code);
  }

  close(): void {
    if (this.destroyed) return;
    this.closing = true;
    this.goaway();
    this.maybeFinish();
  }

  destroy(err?: Error): void {
    this.teardown(err, false);
  }

  /** `lingering`: the socket flushes what was written (a GOAWAY) and is closed a moment later. */
  private teardown(err: Error | undefined, lingering: boolean): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const s of this.streams.values()) s.cut(Code.CANCEL);
    for (const p of this.pings.values()) p.cb(new Error("link closed"), 0, EMPTY);
    this.pings.clear();
    this.drainWaiters = [];
    if (lingering) {
      // Reading on (and dropping it) until the peer closes, so unread input does not turn the close into a reset.
      setTimeout(() => this.socket.destroy(), 1000).unref();
    } else this.socket.destroy();
    if (err && this.listenerCount("error") > 0) this.emit("error", err);
    if (!this.closeEmitted) {
      this.closeEmitted = true;
      process.nextTick(() => this.emit("close"));
    }
  }

  // ---- used by MuxStream

  /** A frame with a small payload (a FIN's none, a PONG's 8 bytes), copied behind its header. */
  sendFrame(type: number, flags: number, id: number, payload: Buffer): void {
    if (this.destroyed) return;
    const n = payload.length;
    const b = this.room(HEADER_BYTES + n);
    const at = putFrameHeader(b, this.slabAt, type, flags, id, n);
    if (n > 0) payload.copy(b, at);
    this.slabAt = at + n;
    this.scheduleFlush(HEADER_BYTES + n);
  }

  /**
   * DATA frames for `s` carrying what its credit allows of `src`, copied into the slab right behind
   * their headers (so TLSWrap gets one buffer and this copy is the only one); `src` is free again
   * when this returns. Returns the bytes framed.
   */
  sendDataCopy(s: MuxStream, src: Buffer): number {
    let at = 0;
    // Bytes for the stream whose DATA frame ends the slab grow that frame: a middle relay gets a
    // link's bytes one TLS record (16 KiB) at a time, and one frame per record would cost the next
    // relay a frame's parsing and handing-over per record.
    const last = this.lastData;
    if (
      last >= this.sealed &&
      this.lastDataEnd === this.slabAt &&
      this.slab.readUInt32BE(last + 2) === s.id &&
      s.sendCredit > 0
    ) {
      const had = this.slab.readUInt32BE(last + 6);
      const n = Math.min(src.length, s.sendCredit, this.peerMaxFrame - had, this.slab.length - this.slabAt);
      if (n > 0) {
        src.copy(this.slab, this.slabAt, 0, n);
        this.slab.writeUInt32BE(had + n, last + 6);
        this.slabAt += n;
        this.lastDataEnd = this.slabAt;
        s.sendCredit -= n;
        at = n;
        this.scheduleFlush(n);
      }
    }
    while (at < src.length && s.sendCredit > 0 && !this.destroyed) {
      let n = Math.min(src.length - at, s.sendCredit, this.peerMaxFrame);
      const free = this.slab.length - this.slabAt - HEADER_BYTES;
      if (free < n) {
        if (free >= SPLIT_MIN) n = free;
        else this.newSlab(HEADER_BYTES + Math.min(n, SLAB_BYTES - HEADER_BYTES));
        n = Math.min(n, this.slab.length - this.slabAt - HEADER_BYTES);
      }
      this.lastData = this.slabAt;
      const p = putFrameHeader(this.slab, this.slabAt, FrameType.DATA, 0, s.id, n);
      src.copy(this.slab, p, at, at + n);
      this.slabAt = p + n;
      this.lastDataEnd = this.slabAt;
      s.sendCredit -= n;
      at += n;
      this.scheduleFlush(HEADER_BYTES + n);
    }
    return at;
  }

  /**
   * OPEN or REPLY: the header map encoded straight into the frame (REPLY: after the status,
   * and without `:status`). `length`: the block, when the caller measured it already.
   */
  sendHeaders(
    type: number,
    flags: number,
    id: number,
    headers: LinkOutgoingHeaders,
    status: number | undefined,
    length: number = status === undefined ? headerBlockLength(headers) : headerBlockLength(headers, 2, ":status"),
  ): void {
    if (this.destroyed) return;
    const b = this.room(HEADER_BYTES + length);
    let at = putFrameHeader(b, this.slabAt, type, flags, id, length);
    if (status === undefined) at = writeHeaderBlock(headers, b, at);
    else {
      b.writeUInt16BE(status, at);
      at = writeHeaderBlock(headers, b, at + 2, ":status");
    }
    this.slabAt = at;
    this.scheduleFlush(HEADER_BYTES + length);
  }

  /** `written`: called once the socket is done with the RST and everything framed before it. */
  sendRst(id: number, code: number, written?: () => void): void {
    if (!this.destroyed) this.sendWords(FrameType.RST, id, code, undefined, written);
  }

  /**
   * A stream's REPLY. On the accepting side a REPLY with FIN is a refusal: an answer to the peer's
   * OPEN with no tunnel behind it, counted as one (MAX_UNSENT_ANSWER_BYTES, `refusedUnsent`).
   */
  reply(s: MuxStream, headers: LinkOutgoingHeaders, end: boolean): void {
    const status = Number(headers[":status"] ?? 200);
    if (!end || this.role !== "server") {
      this.sendHeaders(FrameType.REPLY, end ? FLAG_FIN : 0, s.id, headers, status);
      return;
    }
    const length = headerBlockLength(headers, 2, ":status");
    if (!this.mayAnswer(HEADER_BYTES + length)) return;
    s.refused = true;
    this.sendHeaders(FrameType.REPLY, FLAG_FIN, s.id, headers, status, length);
    this.answered(HEADER_BYTES + length, false);
  }

  /** The RST (CANCEL) of a stream this end resets; on the accepting side, of one never taken as a tunnel, an answer. */
  cancel(s: MuxStream): void {
    if (this.destroyed) return;
    if (this.role !== "server" || (s.headersSent && !s.refused)) {
      this.sendRst(s.id, Code.CANCEL);
      return;
    }
    if (!this.mayAnswer(RST_BYTES)) return;
    s.refused = true;
    this.sendRst(s.id, Code.CANCEL);
    this.answered(RST_BYTES, false);
  }

  /** What the link holds to send: framed and not yet handed to the socket, and what the socket has not written. */
  get queuedBytes(): number {
    return this.socket.writableLength + this.pendingBytes;
  }

  /** Whether the link's send queue holds LINK_SEND_BUFFER or more: a stream's write then waits (`waitDrain`). */
  congested(): boolean {
    return this.queuedBytes >= LINK_SEND_BUFFER;
  }

  waitDrain(s: MuxStream): void {
    this.drainWaiters.push(s);
  }

  /**
   * Returns credit for what the stream's reader consumed, in steps of a quarter window: one
   * WINDOW per stream per pass, framed with the pass's other frames (what was consumed by then).
   */
  credit(s: MuxStream): void {
    if (s.creditQueued || s.remoteFin || this.destroyed) return;
    if (s.received - s.readableLength - s.granted < s.window / 4) return;
    s.creditQueued = true;
    this.creditDue.push(s);
    this.scheduleFlush(0);
  }

  private sendCredits(): void {
    const due = this.creditDue;
    if (due.length === 0) return;
    this.creditDue = [];
    for (const s of due) {
      s.creditQueued = false;
      if (s.destroyed || s.remoteFin) continue;
      const n = s.received - s.readableLength - s.granted;
      if (n <= 0) continue;
      s.granted += n;
      const more = this.tuning ? this.grow(s) : 0;
      s.recvWindow += n + more;
      this.sendWords(FrameType.WINDOW, s.id, n + more);
    }
  }

  /** What tuning adds to `s`'s window now that its reader consumed `s.granted` bytes in all (window.ts). */
  private grow(s: MuxStream): number {
    const settings = this.settings;
    const max = settings.maxStreamWindowBytes ?? s.window;
    const budget = settings.windowBudget;
    if (budget === undefined) return 0;
    const now = this.clock();
    // The first epoch starts at the first credit, with what was consumed by then behind it.
    s.epoch ??= { at: now, consumed: s.granted };
    const want = windowGrowth(s.window, max, s.granted, s.epoch, now, this.rtt);
    // One link (one neighbour, or the tunnels a tenant keeps on it) never holds all of the relay's budget.
    const room = Math.floor(budget.bytes * LINK_BUDGET_SHARE) - this.grownTotal;
    const got = want > 0 && room > 0 ? budget.take(Math.min(want, room), settings.budgetTenant) : 0;
    s.window += got;
    s.grown += got;
    this.grownTotal += got;
    return got;
  }

  forget(s: MuxStream): void {
    if (s.grown > 0) {
      this.settings.windowBudget?.give(s.grown, this.settings.budgetTenant);
      this.grownTotal -= s.grown;
      s.grown = 0;
    }
    if (this.streams.get(s.id) === s) this.streams.delete(s.id);
    // Its REPLY and RST were framed into the slab by now: its place goes back once they leave (`send`).
    if (s.refused && !this.destroyed) {
      this.refusedUnsent++;
      this.refusedInSlab++;
    }
    this.maybeFinish();
  }

  // ---- internals

  /** A control frame of one or two 32-bit words (WINDOW, RST: one; PING, GOAWAY: two). */
  private sendWords(type: number, id: number, first: number, second?: number, written?: () => void): void {
    if (this.destroyed) return;
    const length = second === undefined ? 4 : 8;
    const b = this.room(HEADER_BYTES + length);
    const at = putFrameHeader(b, this.slabAt, type, 0, id, length);
    b.writeUInt32BE(first >>> 0, at);
    if (second !== undefined) b.writeUInt32BE(second >>> 0, at + 4);
    this.slabAt = at + length;
    if (written !== undefined) {
      if (this.slabDone === undefined) this.slabDone = [written];
      else this.slabDone.push(written);
    }
    this.scheduleFlush(HEADER_BYTES + length);
  }

  /** The slab, with `n` bytes free at `slabAt`. */
  private room(n: number): Buffer {
    if (this.slabAt + n > this.slab.length) this.newSlab(n);
    return this.slab;
  }

  private newSlab(n: number): void {
    this.seal();
    const old = this.slabRef;
    if (old !== undefined) {
      old.full = true;
      if (old.out === 0) giveSlab(old);
    }
    const sl = takeSlab(n);
    this.slabRef = sl;
    this.slab = sl.buf;
    this.slabAt = 0;
    this.sealed = 0;
    this.lastData = this.lastDataEnd = -1;
  }

  /** Cuts the frames written into the slab since the last cut into the queue. */
  private seal(): void {
    if (this.slabAt === this.sealed) return;
    this.queued.push(this.slab.subarray(this.sealed, this.slabAt));
    const sl = this.slabRef as FrameSlab;
    this.queuedSlab.push(sl);
    sl.out++;
    const done = this.slabDone;
    this.slabDone = undefined;
    this.queuedDone.push(done === undefined ? undefined : done.length === 1 ? done[0] : () => runAll(done));
    this.queuedAnswers.push(this.answersInSlab);
    this.answersInSlab = 0;
    this.queuedAnswerBytes.push(this.answerBytesInSlab);
    this.answerBytesInSlab = 0;
    this.queuedRefused.push(this.refusedInSlab);
    this.refusedInSlab = 0;
    this.sealed = this.slabAt;
  }

  /**
   * Frames framed in one pass of the event loop's I/O phase leave together right after it
   * (setImmediate), mostly as one buffer: the frames a burst of reads produces (many tunnels'
   * OPEN, REPLY, small DATA and FIN) share one TLS write and one syscall, with no buffer and
   * no socket write per frame.
   */
  private scheduleFlush(n: number): void {
    this.pendingBytes += n;
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(this.flushOut);
  }

  private readonly flushOut = () => {
    // Before the flag clears, so the WINDOW frames join this write rather than schedule another.
    this.sendCredits();
    this.flushScheduled = false;
    this.send();
  };

  /** A write of ours called back: what was framed meanwhile may leave now. */
  private wrote(): void {
    this.inFlight--;
    if (!this.flushScheduled && !this.destroyed) this.send();
    if (this.inFlight === 0 && !this.flushScheduled) this.releaseSlab();
  }

  /**
   * Nothing framed, queued or in flight: the slab goes back to the free list, so an idle link holds
   * none (a link that only answers PINGs would otherwise fill one over time and keep it). The next
   * frame takes one from the list again (`room`).
   */
  private releaseSlab(): void {
    const sl = this.slabRef;
    if (sl === undefined || this.queued.length > 0 || this.slabAt !== this.sealed) return;
    sl.full = true;
    if (sl.out === 0) giveSlab(sl);
    this.slabRef = undefined;
    this.slab = EMPTY;
    this.slabAt = 0;
    this.sealed = 0;
    this.lastData = this.lastDataEnd = -1;
  }

  /**
   * Hands framed bytes to the socket with at most MAX_IN_FLIGHT writes not called back: one in
   * TLSWrap and one the socket buffers. More would reach TLSWrap as one writev, which it copies
   * into one buffer before encrypting; instead the frames gather in the slab, next to each other,
   * and leave as one buffer when a write calls back.
   */
  private send(): void {
    const socket = this.socket;
    while (this.inFlight < MAX_IN_FLIGHT) {
      if (this.queued.length === 0) {
        this.seal();
        if (this.queued.length === 0) break;
      }
      if (this.destroyed || socket.destroyed || socket.writableEnded) {
        this.dropQueued();
        return;
      }
      const chunk = this.queued.shift() as Buffer;
      this.pendingBytes -= chunk.length;
      this.unsentAnswers -= this.queuedAnswers.shift() as number;
      this.unsentAnswerBytes -= this.queuedAnswerBytes.shift() as number;
      this.refusedUnsent -= this.queuedRefused.shift() as number;
      this.write(chunk, this.queuedSlab.shift() as FrameSlab, this.queuedDone.shift());
    }
    // Writers that waited on what was framed but not yet written: the socket took it without needing a drain.
    if (this.drainWaiters.length > 0 && !socket.writableNeedDrain && !this.congested()) this.releaseWriters();
  }

  private dropQueued(): void {
    this.queued = [];
    this.queuedDone = [];
    this.queuedSlab = [];
    this.queuedAnswers = [];
    this.unsentAnswers = this.answersInSlab;
    this.queuedAnswerBytes = [];
    this.unsentAnswerBytes = this.answerBytesInSlab;
    this.queuedRefused = [];
    this.refusedUnsent = this.refusedInSlab;
    this.pendingBytes = 0;
  }

  /**
   * Whether another answer of `bytes` to the peer may be queued; past MAX_UNSENT_ANSWERS answers or
   * MAX_UNSENT_ANSWER_BYTES the link closes (`flood`).
   */
  private mayAnswer(bytes: number): boolean {
    if (this.unsentAnswers < MAX_UNSENT_ANSWERS && this.unsentAnswerBytes + bytes <= this.maxAnswerBytes) {
      return true;
    }
    this.violation(
      "flood",
      `${this.unsentAnswers} answers (${this.unsentAnswerBytes} bytes) to its frames wait: the peer does not read`,
    );
    return false;
  }

  /**
   * An answer of `bytes` was framed into the slab; `counted`: it counts in MAX_UNSENT_ANSWERS (a
   * refusal's frames do not: `refusedUnsent` bounds them).
   */
  private answered(bytes: number, counted = true): void {
    if (counted) {
      this.unsentAnswers++;
      this.answersInSlab++;
    }
    this.unsentAnswerBytes += bytes;
    this.answerBytesInSlab += bytes;
  }

  /** Hands everything framed to the socket now (before ending it, so nothing framed is lost). */
  private writeOut(): void {
    this.seal();
    const q = this.queued;
    if (q.length === 0) return;
    const done = this.queuedDone;
    const slabs = this.queuedSlab;
    this.dropQueued();
    const socket = this.socket;
    if (this.destroyed || socket.destroyed || socket.writableEnded) return;
    if (q.length === 1) this.write(q[0] as Buffer, slabs[0] as FrameSlab, done[0]);
    else {
      socket.cork();
      for (let i = 0; i < q.length; i++) this.write(q[i] as Buffer, slabs[i] as FrameSlab, done[i]);
      socket.uncork();
    }
  }

  private write(b: Buffer, sl: FrameSlab, done: (() => void) | undefined): void {
    this.inFlight++;
    this.socket.write(b, (err?: Error | null) => {
      slabWritten(sl, err);
      if (done !== undefined) done();
      this.wrote();
    });
  }

  private releaseWriters(): void {
    if (this.drainWaiters.length === 0) return;
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const s of waiters) s.linkDrained();
  }

  private maybeFinish(): void {
    if (!this.closing || this.streams.size > 0 || this.destroyed || this.finishing) return;
    this.finishing = true;
    this.writeOut();
    this.socket.end();
    // The socket's close destroys the session; a peer that never closes its side gets a bounded wait.
    setTimeout(() => this.destroy(), 5000).unref();
  }

  private violation(reason: MuxViolation, detail: string): void {
    if (this.destroyed) return;
    if (!this.goawaySent) {
      this.goawaySent = true;
      this.writeOut();
      this.socket.end(wordsFrame(FrameType.GOAWAY, 0, [this.highestPeerId, Code.PROTOCOL_ERROR]));
    }
    this.teardown(new MuxProtocolError(reason, detail), true);
  }

  /** Bytes for `s` that go to it at once, after any it holds (order). */
  private takeNow(s: MuxStream, chunk: Buffer, borrowed = false): void {
    if (this.heldStream === s) this.deliverHeld();
    s.take(chunk, borrowed);
  }

  /**
   * Copies `piece` next to what `s` holds; handed over when the slab is full, or another stream's
   * bytes come, or a read ends where a frame ends (`onData`), or the pass ends (setImmediate). A
   * piece too small for a reused buffer that starts nothing to append to goes at once.
   */
  private hold(s: MuxStream, piece: Buffer): void {
    if (this.heldStream === s) {
      const grown = extendIn(this.held as Buffer, piece);
      if (grown !== undefined) {
        this.held = grown;
        return;
      }
    }
    if (this.heldStream !== undefined) this.deliverHeld();
    const copy = copyIn(piece);
    if (!isLent(copy)) {
      s.take(copy);
      return;
    }
    this.held = copy;
    this.heldStream = s;
    if (!this.heldScheduled) {
      this.heldScheduled = true;
      setImmediate(this.deliverHeldLater);
    }
  }

  private readonly deliverHeldLater = () => {
    this.heldScheduled = false;
    this.deliverHeld();
  };

  private deliverHeld(): void {
    const s = this.heldStream;
    if (s === undefined) return;
    const b = this.held as Buffer;
    this.heldStream = undefined;
    this.held = undefined;
    if (s.destroyed) release(b);
    else s.take(b);
  }

  /** `s` is going away: what it holds goes back. */
  dropHeld(s: MuxStream): void {
    if (this.heldStream !== s) return;
    release(this.held as Buffer);
    this.heldStream = undefined;
    this.held = undefined;
  }

  /** `borrowed`: `chunk` is read into again after this returns, so a DATA payload is copied out of it. */
  private onData(chunk: Buffer, borrowed: boolean): void {
    this.parse(chunk, borrowed);
    // A read that ends where a frame ends brought a whole message (or the end of a burst): hand it
    // over now rather than at the end of the pass. Mid-frame, the rest of the frame is on its way.
    if (this.remaining < 0) this.deliverHeld();
  }

  private parse(chunk: Buffer, borrowed: boolean): void {
    let at = 0;
    while (at < chunk.length && !this.destroyed) {
      if (this.remaining < 0) {
        const take = Math.min(HEADER_BYTES - this.headFill, chunk.length - at);
        chunk.copy(this.head, this.headFill, at, at + take);
        this.headFill += take;
        at += take;
        if (this.headFill < HEADER_BYTES) return;
        this.headFill = 0;
        this.startFrame(
          this.head[0] as number,
          this.head[1] as number,
          this.head.readUInt32BE(2),
          this.head.readUInt32BE(6),
        );
        if (this.remaining === 0) this.endFrame();
      } else if (this.type === FrameType.DATA) {
        const n = Math.min(this.remaining, chunk.length - at);
        const s = this.dataStream;
        if (s !== undefined && !s.destroyed) {
          s.received += n;
          s.readableLength += n;
          const piece = chunk.subarray(at, at + n);
          // A shared reused buffer only for bytes the stream's reader takes at once: bytes that
          // wait in the stream (its reader is slow) go into reused slabs of the stream's own
          // (MuxStream.take), so they pin no slab another stream shares. A reader that writes
          // borrowed bytes on at once (a middle relay) takes a view of the read buffer: its next
          // link copies it into its frames, the only copy at this relay.
          if (!borrowed) this.takeNow(s, piece);
          else if (s.takesNow) {
            if (s.takesBorrowed) this.takeNow(s, piece, true);
            else this.hold(s, piece);
          } else this.takeNow(s, piece, true);
        }
        at += n;
        this.remaining -= n;
        if (this.remaining === 0) this.endFrame();
      } else {
        const n = Math.min(this.remaining, chunk.length - at);
        chunk.copy(this.control, this.controlFill, at, at + n);
        this.controlFill += n;
        at += n;
        this.remaining -= n;
        if (this.remaining === 0) this.endFrame();
      }
    }
  }

  private startFrame(type: number, flags: number, id: number, length: number): void {
    this.type = type;
    this.flags = flags;
    this.id = id;
    if (type > FrameType.GOAWAY) {
      this.violation("unknown_frame_type", `frame type ${type}`);
      return;
    }
    if (!this.gotSettings && type !== FrameType.SETTINGS) {
      this.violation("settings_expected", "the first frame must be SETTINGS");
      return;
    }
    const fixed = FIXED_LENGTH[type];
    if (fixed !== undefined && length !== fixed) {
      this.violation("bad_frame_length", `frame type ${type} of ${length} bytes, not ${fixed}`);
      return;
    }
    const connectionLevel =
      type === FrameType.SETTINGS || type === FrameType.PING || type === FrameType.PONG || type === FrameType.GOAWAY;
    if (connectionLevel !== (id === 0)) {
      this.violation("bad_stream_id", `frame type ${type} on stream ${id}`);
      return;
    }
    if (type === FrameType.DATA) {
      if (length > MAX_FRAME) {
        this.violation("frame_too_large", `DATA of ${length} bytes`);
        return;
      }
      const s = this.known(id);
      if (s === null) return;
      if (s !== undefined) {
        if (s.remoteFin) {
          this.violation("data_after_fin", `DATA on stream ${id} after its FIN`);
          return;
        }
        if (length > s.recvWindow) {
          this.violation("flow_control", `DATA of ${length} bytes on stream ${id} with ${s.recvWindow} of window`);
          return;
        }
        s.recvWindow -= length;
      }
      this.dataStream = s;
      this.remaining = length;
      return;
    }
    const cap = type === FrameType.REPLY ? MAX_HEADER_BLOCK + 2 : MAX_HEADER_BLOCK;
    if (length > cap) {
      this.violation("header_block_too_large", `header block of ${length} bytes`);
      return;
    }
    this.control = length === 0 ? EMPTY : Buffer.allocUnsafe(length);
    this.controlFill = 0;
    this.remaining = length;
  }

  /**
   * The stream a frame names: the open stream, undefined if it existed and is gone (its late
   * frames are dropped), null after a violation (an id never opened).
   */
  private known(id: number): MuxStream | undefined | null {
    const s = this.streams.get(id);
    if (s !== undefined) return s;
    const opened = this.role === "client" ? id < this.nextId && id % 2 === 1 : id <= this.highestPeerId;
    if (opened) return undefined;
    this.violation("bad_stream_id", `frame on stream ${id}, never opened`);
    return null;
  }

  private endFrame(): void {
    this.remaining = -1;
    const { type, flags, id } = this;
    if (type === FrameType.DATA) {
      const s = this.dataStream;
      this.dataStream = undefined;
      if ((flags & FLAG_FIN) !== 0 && s !== undefined && !s.destroyed) this.remoteEnd(s);
      return;
    }
    const p = this.control;
    this.control = EMPTY;
    switch (type) {
      case FrameType.SETTINGS: {
        this.onSettings(p);
        return;
      }
      case FrameType.OPEN: {
        this.onOpen(id, flags, p);
        return;
      }
      case FrameType.REPLY: {
        this.onReply(id, flags, p);
        return;
      }
      case FrameType.WINDOW: {
        const s = this.known(id);
        if (!s) return;
        const inc = p.readUInt32BE(0);
        if (inc === 0 || s.sendCredit + inc > MAX_WINDOW) {
          this.violation("flow_control", `WINDOW of ${inc} on stream ${id}`);
          return;
        }
        s.sendCredit += inc;
        s.flush();
        return;
      }
      case FrameType.RST: {
        const s = this.known(id);
        if (s) s.cut(p.readUInt32BE(0));
        return;
      }
      case FrameType.PING:
        if (!this.mayAnswer(HEADER_BYTES + 8)) return;
        this.sendFrame(FrameType.PONG, 0, 0, p);
        this.answered(HEADER_BYTES + 8);
        return;
      case FrameType.PONG: {
        const seq = p.readUInt32BE(4);
        const ping = this.pings.get(seq);
        if (ping === undefined || p.readUInt32BE(0) !== ping.nonce) return;
        this.pings.delete(seq);
        const took = this.clock() - ping.at;
        this.rtt = this.rtt === 0 ? took : Math.min(this.rtt, took);
        ping.cb(null, took, p);
        return;
      }
      case FrameType.GOAWAY: {
        this.onGoaway(p.readUInt32BE(0), p.readUInt32BE(4));
        return;
      }
    }
  }

  private remoteEnd(s: MuxStream): void {
    if (this.heldStream === s) this.deliverHeld();
    s.remoteEnd();
  }

  private onSettings(p: Buffer): void {
    if (this.gotSettings) {
      this.violation("settings_repeated", "a second SETTINGS");
      return;
    }
    const maxStreams = p.readUInt32BE(0);
    const window = p.readUInt32BE(4);
    const maxFrame = p.readUInt32BE(8);
    if (maxStreams < 1 || window < 1 || window > MAX_WINDOW || maxFrame < 1024 || maxFrame > 16 * MAX_FRAME) {
      this.violation("bad_settings", `streams ${maxStreams}, window ${window}, frame ${maxFrame}`);
      return;
    }
    this.gotSettings = true;
    this.remoteSettings.maxConcurrentStreams = maxStreams;
    this.peerMaxFrame = maxFrame;
    // Streams opened before the peer's SETTINGS assumed the default window: move them to the announced one.
    const delta = window - this.peerWindow;
    this.peerWindow = window;
    for (const s of this.streams.values()) {
      s.sendCredit += delta;
      s.flush();
    }
    // Window tuning needs the round trip before the link's first timed PING (pool.ts, server.ts).
    if (this.tuning) this.ping(ignorePong);
  }

  private onOpen(id: number, flags: number, p: Buffer): void {
    if (this.role !== "server") {
      this.violation("unexpected_frame", "OPEN from the accepting side");
      return;
    }
    if (id % 2 !== 1 || id <= this.highestPeerId) {
      this.violation("bad_stream_id", `OPEN of stream ${id}`);
      return;
    }
    const headers = decodeHeaders(p);
    if (headers === "malformed") {
      this.violation("bad_header_block", `OPEN of stream ${id}`);
      return;
    }
    this.highestPeerId = id;
    // A name or value outside printable ASCII: a stream error, refused as such (RST 1), never taken.
    if (headers === "not_ascii") {
      if (!this.mayAnswer(RST_BYTES)) return;
      this.sendRst(id, Code.PROTOCOL_ERROR);
      this.answered(RST_BYTES);
      return;
    }
    // Refused streams whose answer has not left yet still count: the peer has not seen them end.
    if (this.goawaySent || this.streams.size + this.refusedUnsent >= this.settings.maxConcurrentStreams) {
      if (!this.mayAnswer(RST_BYTES)) return;
      this.sendRst(id, Code.REFUSED_STREAM);
      this.answered(RST_BYTES);
      return;
    }
    const s = new MuxStream(this, id, this.peerWindow, this.settings.streamWindowBytes);
    this.streams.set(id, s);
    if ((flags & FLAG_FIN) !== 0) this.remoteEnd(s);
    this.emit("stream", s, headers as LinkHeaders);
  }

  private onReply(id: number, flags: number, p: Buffer): void {
    if (this.role !== "client") {
      this.violation("unexpected_frame", "REPLY from the dialling side");
      return;
    }
    const s = this.known(id);
    if (s === null) return;
    const headers = p.length >= 2 ? decodeHeaders(p, 2) : "malformed";
    if (headers === "malformed") {
      this.violation("bad_header_block", `REPLY of stream ${id}`);
      return;
    }
    if (s === undefined) return;
    // A name or value outside printable ASCII: that stream fails (reset, code 1), the link stays.
    if (headers === "not_ascii") {
      this.sendRst(id, Code.PROTOCOL_ERROR);
      s.resetHere = "its answer had a header outside printable ASCII";
      s.cut(Code.PROTOCOL_ERROR);
      return;
    }
    if (s.replied) {
      this.violation("unexpected_frame", `a second REPLY on stream ${id}`);
      return;
    }
    s.replied = true;
    // The decoded map is this frame's own: the status goes into it (over any ':status' the peer named).
    const answer: Record<string, string | number> = headers;
    answer[":status"] = p.readUInt16BE(0);
    s.emit("response", answer);
    if ((flags & FLAG_FIN) !== 0 && !s.destroyed) this.remoteEnd(s);
  }

  private onGoaway(lastId: number, code: number): void {
    // Once is all it takes: a repeated GOAWAY would only make this side scan its streams again.
    if (this.goawayReceived) {
      this.violation("unexpected_frame", "a second GOAWAY");
      return;
    }
    this.goawayReceived = true;
    this.emit("goaway", code, lastId);
    // Streams past the peer's last one were never taken: safe to retry elsewhere.
    for (const s of this.streams.values()) if (s.id > lastId && this.role === "client") s.cut(Code.REFUSED_STREAM);
    // As node:http2 does: a graceful GOAWAY closes this side too once its streams finished.
    if (code !== Code.NO_ERROR) this.destroy();
    else this.close();
  }
}

function runAll(fns: Array<() => void>): void {
  for (const f of fns) f();
}
