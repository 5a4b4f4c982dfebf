// How relay sockets read, and the tunnel's data path.
//
// Node's default read path allocates a fresh 64 KiB buffer for every read(2) and leaves
// it to V8's garbage collector. Under bulk traffic that external memory drives major GCs
// and glibc heap churn: the same relay on Node's reads used 1.2 to 3.7 times the CPU per
// MiB (`npm run bench relay`; docs/benchmarks/README.md, "Relay"). With `onread` a socket reads
// into a buffer the relay picks:
//  - SHARED, one buffer for every socket that is not streaming. What lands there is
//    parsed or copied before the callback returns; the event loop runs one read at a time.
//  - a private buffer from a small pool while a direction streams (its last read was
//    large). It is written on without a copy; when the write does not complete at once,
//    the buffer stays with the write until its callback and the socket reads into another.
// At most MAX_HELD sockets hold a private buffer, so a burst that ends on a full read and
// then idles cannot pin a buffer per socket; past the cap, reads are copied out of SHARED.
// A pending write holds a whole pool buffer only when it fills at least half of it, or when
// it went out on an empty queue (one per direction at a time); anything smaller is copied to
// a buffer of its own size. So a tunnel's pending buffers stay within about twice its
// highWaterMark plus one buffer, however small the chunks.
// Buffers are 256 KiB: against 64 KiB, a loopback pipe used about 30 % less CPU per MiB
// (fewer reads and writes, measured with the same onread pipe).
//
// Writes between two sockets first go straight to the destination's descriptor when nothing
// waits to be written there (writeThrough): one write(2) that takes what the kernel takes now
// and never queues. A chunk it took whole needs no copy, no pool buffer and none of the
// Writable stream's bookkeeping (its state, its callback, the nextTick after each write), which
// is most of what a small request/response message costs in JavaScript. Only what the kernel
// did not take goes through `dst.write` as before, copied or lent as above. Node's own
// synchronous write (StreamBase) does not fit here: when it cannot finish it queues the rest
// in libuv pointing into the read buffer, and SHARED is read into again by other sockets.
// What it relies on is checked per tunnel, with today's path as the fallback: the destination's
// handle is a libuv TCP or unix socket with a descriptor (not TLS, not Windows). Bytes written
// this way are not in the socket's `bytesWritten`; the relay counts bytes itself (`account`).
import { writeSync } from "node:fs";
import { connect, type NetConnectOpts, type OnReadOpts, Socket, type SocketConstructorOpts } from "node:net";
import type { Duplex } from "node:stream";
import type { RelayCounters, Tunnel } from "./relay.ts";

/** The most one read(2) of a relay socket takes: what a direction may hold past its highWaterMark. */
export const READ_BUFFER_BYTES = 256 * 1024;
const BUFFER_BYTES = READ_BUFFER_BYTES;
/** Smaller chunks never wait in a pool buffer behind other writes: they are copied to their size. */
const HALF_BUFFER = BUFFER_BYTES / 2;
/** A direction whose last read was at least this large keeps (or gets) a private buffer. */
const STREAMING_READ = 16 * 1024;
const MAX_HELD = 128;
const MAX_FREE = 32;

// allocUnsafeSlow: each buffer owns its ArrayBuffer (Node's slab is for small buffers).
const SHARED = Buffer.allocUnsafeSlow(BUFFER_BYTES);
const free: Buffer[] = [];
let held = 0;
let lentNow = 0;

function take(): Buffer {
  return free.pop() ?? Buffer.allocUnsafeSlow(BUFFER_BYTES);
}
function give(b: Buffer): void {
  if (free.length < MAX_FREE) free.push(b);
}

/** Private buffers held by streaming sockets now; tests check the cap with it. */
export function heldReadBuffersForTest(): number {
  return held;
}
/** Pool buffers that pending writes hold now; tests check the memory bound with it. */
export function lentReadBuffersForTest(): number {
  return lentNow;
}

/**
 * Takes one chunk the socket read; false stops reading (the socket's `pause()`).
 * `chunk` may be a view of a buffer that is read into again after the call returns:
 * copy whatever must outlive it.
 */
export type Sink = (chunk: Buffer) => boolean;

// One slot per socket: its sink while handshaking, then its direction of the tunnel. One
// property rather than two keeps the per-socket cost of 10,000 idle tunnels down.
const READER = Symbol("hopway.reader");

/** One direction of a tunnel, carried by its source socket (shared listeners, no closures per chunk). */
interface PumpState {
  dst: Socket;
  tunnel: Tunnel;
  up: boolean;
  counters: RelayCounters;
  /** The private buffer the source reads into next, or null for SHARED. */
  cur: Buffer | null;
  last: number;
  /**
   * One entry per write of a pool buffer not yet called back, in order: the buffer while the
   * write holds it, null once it went through. Made on the first such write, so idle tunnels
   * carry neither this nor the callback.
   */
  lent: Array<Buffer | null> | null;
  written: (() => void) | null;
  /** The destination's handle and descriptor when writeThrough may write to it, else null and -1. */
  handle: object | null;
  fd: number;
  /** Reads this direction wrote through whole; the native splice is offered the tunnel at HANDOVER_READS. */
  reads: number;
  handover: Handover | null;
}

/**
 * Reads a tunnel carries here, written through whole, before the relay offers it to the native
 * splice (native-splice.ts). A short connection (a request, an answer, the two ends) never gets
 * there: handing it over and back would cost it more than its few reads cost here (20 % more CPU
 * per connection, measured with both on the same build; docs/benchmarks/README.md, "Native
 * splice"). A tunnel that keeps talking or streaming gets there within a few round trips.
 */
export const HANDOVER_READS = 8;
/**
 * Offered a tunnel between reads, with nothing waiting to be written either way: true when it
 * took the tunnel (or never will), false to be offered again after a later read.
 */
export type Handover = (tunnel: Tunnel) => boolean;
type RelaySocket = Socket & { [READER]?: Sink | PumpState | undefined };

/** Who consumes what the socket reads until the tunnel is spliced; undefined discards it. */
export function setSink(socket: Socket, sink: Sink | undefined): void {
  (socket as RelaySocket)[READER] = sink;
}

function pumpOf(socket: RelaySocket | undefined): PumpState | undefined {
  const r = socket?.[READER];
  return typeof r === "object" ? r : undefined;
}

// Node calls `onread.buffer` with no arguments and no `this`, right after `onread.callback`
// for the same socket (stream_base_commons onStreamRead). onRead names the socket here for
// the nextBuffer call that follows, so no socket needs a closure of its own. Unset, as when
// Node asks for a socket's first buffer while making it, the answer is SHARED.
let justRead: RelaySocket | undefined;

function onRead(this: RelaySocket, n: number, buf: Uint8Array): boolean {
  justRead = this;
  const r = this[READER];
  if (r === undefined) return true;
  if (typeof r === "object") return pumpRead(r, n, buf as Buffer);
  return r((buf as Buffer).subarray(0, n));
}

/** The buffer the socket that just read reads into next. */
function nextBuffer(): Uint8Array {
  const p = pumpOf(justRead);
  justRead = undefined;
  if (p === undefined) return SHARED;
  if (p.last >= STREAMING_READ) {
    if (p.cur === null && held < MAX_HELD) {
      p.cur = take();
      held++;
    }
    return p.cur ?? SHARED;
  }
  releaseCur(p);
  return SHARED;
}

function releaseCur(p: PumpState): void {
  if (p.cur === null) return;
  give(p.cur);
  p.cur = null;
  held--;
}

/** `onread` options for every relay socket. */
const ONREAD: OnReadOpts = { buffer: nextBuffer, callback: onRead };

/** net.connect, reading through the relay's buffers. */
export function connectReading(opts: NetConnectOpts): Socket {
  return connect({ ...opts, onread: ONREAD });
}

/** Sockets the relay could not adopt read through Node's default path; their chunks are theirs to keep. */
function onOwnedData(this: RelaySocket, chunk: Buffer): void {
  const r = this[READER];
  let ok = true;
  if (typeof r === "object") {
    account(r, chunk.length);
    ok = r.dst.write(chunk);
  } else if (r !== undefined) ok = r(chunk);
  if (!ok) this.pause();
}

interface SocketInternals {
  _handle?: { useUserBuffer?: (buffer: Uint8Array) => void; fd?: number } | null;
  _server?: unknown;
  server?: unknown;
}

/**
 * The symbols under which Node keeps a socket's `onread` (its buffer, callback and buffer
 * generator), read off `probe`, a socket made with the option; undefined when one is missing.
 * They have no public name, so each caller checks what it finds against what it passed. Filling
 * them on an accepted socket and handing its handle the buffer is what the Socket constructor
 * does with `onread`.
 */
export function onreadSlots(probe: Socket): { buffer: symbol; callback: symbol; generator: symbol } | undefined {
  const keys = Object.getOwnPropertySymbols(probe);
  const slot = (name: string) => keys.find((k) => k.description === name);
  const buffer = slot("kBuffer");
  const callback = slot("kBufferCb");
  const generator = slot("kBufferGen");
  if (buffer === undefined || callback === undefined || generator === undefined) return undefined;
  return { buffer, callback, generator };
}

/** This Node's `onread` slots, checked on a socket made with ONREAD; undefined when they are not as expected. */
const ONREAD_SLOTS = ((): { buffer: symbol; callback: symbol; generator: symbol } | undefined => {
  const probe = new Socket({ onread: ONREAD }) as Socket & Record<symbol, unknown>;
  const slots = onreadSlots(probe);
  probe.destroy();
  if (slots === undefined) return undefined;
  if (probe[slots.buffer] !== true || probe[slots.callback] !== onRead || probe[slots.generator] !== nextBuffer) {
    return undefined;
  }
  return slots;
})();

/** Whether `socket` itself reads through the relay's buffers; tests tell adoption in place from a move with it. */
export function readsInPlaceForTest(socket: Socket): boolean {
  const slots = ONREAD_SLOTS;
  return slots !== undefined && (socket as Socket & Record<symbol, unknown>)[slots.callback] === onRead;
}

/**
 * Makes an accepted socket read through the relay's buffers. net.Server has no `onread`
 * option, so the relay sets the socket up as the Socket constructor does for one: it fills
 * Node's `onread` slots on the socket and gives its libuv handle the first buffer
 * (`useUserBuffer`). That leans on Node internals (`_handle`, the slots' symbols), so every
 * assumption is checked first. Where the slots are not found, or the socket's write buffer
 * differs from `highWaterMark`, the handle moves into a new Socket made with `onread`,
 * which is what the server itself does on accept (`new Socket({ handle })`). A socket that
 * fits neither (data already buffered, not a TCP or pipe handle) is returned as it is and
 * reads through Node's default path. Sockets the relay dials are made reading
 * (`connectReading`).
 */
export function adopt(socket: Socket, highWaterMark: number): Socket {
  return tryAdopt(socket, highWaterMark) ?? readThroughNode(socket);
}

/** `adopt`, or undefined (the socket untouched) where it would read through Node's default path. */
export function tryAdopt(socket: Socket, highWaterMark: number): Socket | undefined {
  const old = socket as Socket & SocketInternals & Record<symbol, unknown>;
  const handle = old._handle;
  if (
    handle == null ||
    typeof handle.useUserBuffer !== "function" ||
    old.connecting ||
    old.destroyed ||
    old.readableLength > 0 ||
    old.readableEnded
  ) {
    return undefined;
  }
  const slots = ONREAD_SLOTS;
  if (slots !== undefined && old.writableHighWaterMark === highWaterMark && old[slots.buffer] == null) {
    // In place: no second Socket per connection, and what Node knows of it (addresses) stays.
    old[slots.buffer] = SHARED;
    old[slots.callback] = onRead;
    old[slots.generator] = nextBuffer;
    handle.useUserBuffer(SHARED);
    return socket;
  }
  const opts = { handle, allowHalfOpen: true, readable: true, writable: true, highWaterMark, onread: ONREAD };
  let next: Socket & SocketInternals;
  old._handle = null;
  try {
    // `handle` also takes a raw libuv handle (what net.Server passes); @types/node declares only BoundSocket.
    next = new Socket(opts as unknown as SocketConstructorOpts);
  } catch {
    old._handle = handle;
    return undefined;
  }
  // The server counts the connection until the new socket closes, as it would have the old one.
  next._server = old._server;
  next.server = old.server;
  old._server = null;
  old.destroy();
  return next;
}

/**
 * Reads a socket through Node's default path (`onread` sockets never emit `data`), and
 * starts it: the relay owns the socket now, even if whoever accepted it had paused it.
 */
export function readThroughNode(socket: Socket): Socket {
  socket.on("data", onOwnedData);
  return socket.resume();
}

let writeThroughEnabled = true;
let writtenThrough = 0;
/** Bytes writeThrough has written since the process started; tests tell the paths apart with it. */
export function writtenThroughForTest(): number {
  return writtenThrough;
}
/** Turns writeThrough off for tunnels spliced from now on; tests compare both paths with it. */
export function setWriteThroughForTest(on: boolean): void {
  writeThroughEnabled = on;
}

function account(p: PumpState, n: number): void {
  p.tunnel.moved = true;
  if (p.up) p.counters.up[p.tunnel.peer] += n;
  else p.counters.down[p.tunnel.peer] += n;
}

/**
 * Writes what the kernel takes of `buf[0, n)` now, straight to `dst`'s descriptor, and
 * returns how many bytes that was (0 when it wrote nothing or must not write). It writes only
 * while the socket is open with the handle whose descriptor `fd` is (a destroyed socket's
 * number may already name another connection), nothing waits in its Writable (so the bytes
 * keep their order), it is not ended (no bytes after our FIN) and no Node timeout watches it (a
 * write through Node would refresh that). An error is left for Node: the chunk then goes
 * through `dst.write`, whose write meets the same error and handles it as it always has.
 */
function writeThrough(dst: Socket, handle: object, fd: number, buf: Uint8Array, n: number): number {
  const d = dst as Socket & SocketInternals;
  if (d._handle !== handle || d.writableLength !== 0 || d.writableEnded || d.destroyed || d.timeout) return 0;
  try {
    const w = writeSync(fd, buf, 0, n);
    writtenThrough += w;
    return w;
  } catch {
    // EAGAIN (the kernel's buffer is full) or a broken connection.
    return 0;
  }
}

/**
 * `dst`'s libuv handle and descriptor when writeThrough may write to it: only a libuv TCP or
 * unix socket handle writes its bytes to its descriptor as they are (a TLSSocket's handle
 * reports the descriptor of the TCP socket under it, which must only ever get ciphertext).
 * The descriptor is -1 where handles have none (Windows).
 */
function throughHandle(dst: Socket): { handle: object; fd: number } | undefined {
  if (!writeThroughEnabled) return undefined;
  const handle = (dst as Socket & SocketInternals)._handle;
  const fd = handle?.fd;
  const kind = handle?.constructor.name;
  if (handle != null && (kind === "TCP" || kind === "Pipe") && typeof fd === "number" && fd >= 0) return { handle, fd };
  return undefined;
}

/**
 * For chunks whose buffer is read into again after the call (a link's read buffer): a function
 * that writes what the kernel takes of a chunk straight to `dst` under writeThrough's rules and
 * returns how many bytes that was; the caller writes the rest through `dst.write`, copied.
 * Undefined when `dst` is not a plain socket.
 */
export function directWriter(dst: Socket): ((chunk: Buffer) => number) | undefined {
  const t = throughHandle(dst);
  if (t === undefined) return undefined;
  const { handle, fd } = t;
  return (chunk) => writeThrough(dst, handle, fd, chunk, chunk.length);
}

function pumpRead(p: PumpState, n: number, buf: Buffer): boolean {
  account(p, n);
  p.last = n;
  let start = 0;
  if (p.handle !== null) {
    start = writeThrough(p.dst, p.handle, p.fd, buf, n);
    if (start === n) {
      if (p.handover !== null && ++p.reads >= HANDOVER_READS) offer(p);
      return true;
    }
  }
  const rest = n - start;
  let owner: Buffer | null;
  let chunk: Buffer;
  const dst = p.dst;
  if (buf === p.cur && (rest >= HALF_BUFFER || dst.writableLength === 0)) {
    owner = buf;
    chunk = buf.subarray(start, n);
  } else if (rest < HALF_BUFFER) {
    owner = null;
    chunk = Buffer.from(buf.subarray(start, n));
  } else {
    owner = take();
    buf.copy(owner, 0, start, n);
    chunk = owner.subarray(0, rest);
  }
  if (owner === null) return dst.write(chunk);
  const lent = p.lent ?? startLending(p);
  // Writable never calls a write's callback from inside write(), so the entry pushed below
  // is in the queue before its callback can take it.
  const ok = dst.write(chunk, p.written as () => void);
  if (dst.writableLength === 0) {
    // Written through at once: the bytes are in the kernel and the buffer is free again.
    lent.push(null);
    if (owner !== p.cur) {
      // A copy out of SHARED: it becomes this direction's private buffer when one may be held.
      if (p.cur === null && held < MAX_HELD) {
        p.cur = owner;
        held++;
      } else give(owner);
    }
  } else {
    lent.push(owner);
    lentNow++;
    if (owner === p.cur) {
      p.cur = null;
      held--;
    }
  }
  return ok;
}

/** Offers the tunnel to `p.handover` (from inside a read of `p`'s source: it may stop that socket's reads). */
function offer(p: PumpState): void {
  const h = p.handover as Handover;
  const back = pumpOf(p.dst);
  // Both directions' bytes are in the kernel: nothing waits in either socket's Writable.
  if (p.dst.writableLength !== 0 || back === undefined || back.dst.writableLength !== 0) return;
  if (!h(p.tunnel)) return;
  p.handover = null;
  back.handover = null;
}

/**
 * Takes a socket off the tunnel's JavaScript path: it stops being one direction's source and
 * another's destination, and gives back its read buffer. For the native splice, between reads.
 */
export function unpump(socket: Socket): void {
  const s = socket as RelaySocket;
  const p = pumpOf(s);
  if (p === undefined) return;
  s[READER] = undefined;
  releaseCur(p);
  socket.off("end", onPumpEnd);
  socket.off("close", onPumpClose);
  p.dst.off("drain", onPumpDrain);
}

function startLending(p: PumpState): Array<Buffer | null> {
  const lent: Array<Buffer | null> = [];
  p.lent = lent;
  p.written = () => {
    const b = lent.shift();
    if (b != null) {
      lentNow--;
      give(b);
    }
  };
  return lent;
}

function onPumpEnd(this: RelaySocket): void {
  (pumpOf(this) as PumpState).dst.end();
}
function onPumpDrain(this: RelaySocket): void {
  // The socket that drained is the destination of the other direction, whose source is this
  // socket's own destination: resume it.
  (pumpOf(this) as PumpState).dst.resume();
}
function onPumpClose(this: RelaySocket): void {
  releaseCur(pumpOf(this) as PumpState);
}

/**
 * One direction of a tunnel: what `pipe` does, plus byte counting, and without `pipe`'s
 * unpipe-on-error surprises. Reading pauses while the other side's write buffer is over
 * its highWaterMark, so a slow reader bounds the memory a tunnel holds; the remote end's
 * FIN is forwarded as our FIN.
 */
export function pump(
  src: Socket,
  dst: Socket,
  tunnel: Tunnel,
  up: boolean,
  counters: RelayCounters,
  handover: Handover | null = null,
): void {
  const p: PumpState = {
    dst,
    tunnel,
    up,
    counters,
    cur: null,
    last: 0,
    lent: null,
    written: null,
    handle: null,
    fd: -1,
    reads: 0,
    handover,
  };
  const t = throughHandle(dst);
  if (t !== undefined) {
    p.handle = t.handle;
    p.fd = t.fd;
  }
  const s = src as RelaySocket;
  s[READER] = p;
  src.on("end", onPumpEnd);
  src.on("close", onPumpClose);
  dst.on("drain", onPumpDrain);
  src.resume();
}

/**
 * Tears down one side of a tunnel that broke. A TCP socket is reset, not closed: closing
 * sends FIN, which its peer reads as the end of the data, so a tunnel cut mid-transfer (its
 * link dropped, the other side reset) would look complete with its tail missing. Sides that
 * cannot be reset (unix sockets, link streams, which reset themselves) are destroyed.
 */
export function abort(side: Duplex): void {
  if (side instanceof Socket && !side.destroyed) {
    try {
      side.resetAndDestroy();
    } catch {
      // Not a TCP handle: a plain close is all there is.
    }
  }
  side.destroy();
}
