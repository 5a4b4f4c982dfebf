// The relay's native splice (k8s-agent/native/splice.c, docs/relay.md "Native splice"): once
// both sides of a tunnel are plain TCP sockets, a thread of its own moves the bytes, so no read
// or write of an established tunnel costs the event loop a call into JavaScript.
//
// The sockets stay Node's: they stop reading, the thread reads and writes their descriptors,
// and they are closed only after the thread let go of them (its report, or `cancel`). What it
// relies on is checked per tunnel (a libuv TCP handle with a descriptor, nothing queued to
// write, no timeout), with the JavaScript path (pump.ts) as the fallback, and it is loaded
// only where it was built (Linux, `npm install` or the image's build stage).
import { EventEmitter } from "node:events";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import type { Socket } from "node:net";
import { getSystemErrorName } from "node:util";
import { isMainThread } from "node:worker_threads";
import type { TunnelEnd } from "./links/session.ts";
import { HANDOVER_READS, READ_BUFFER_BYTES } from "./pump.ts";

/** What splice.c exports. */
interface Addon {
  start(onReports: (reports: number[]) => void): void;
  attach(fdUp: number, fdDown: number, lane: number): number;
  cancel(id: number): [number, number] | undefined;
  moved(id: number): boolean;
  bytes(id: number): [number, number] | undefined;
  stats(): number[];
  // listen.c: a listener's connections on the event loop's thread.
  listenStart(
    onAccept: (listener: number, id: number, ip: string, port: number) => void,
    onEvent: (kind: number, id: number, a: number, b: number, text: string | undefined) => void,
    handoverReads: number,
    readBuffer: Buffer,
  ): void;
  listen(ip: string, port: number, backlog: number): [number, number];
  unlisten(listener: number): boolean;
  dial(id: number, ip: string, port: number): boolean;
  dialPiped(ip: string, port: number): number;
  pipe(id: number): boolean;
  pipeRead(id: number, on: boolean): boolean;
  pipeWrite(id: number, chunk: Buffer): number;
  pipeEnd(id: number): boolean;
  abortDial(id: number): boolean;
  close(id: number, reset: boolean): boolean | 2;
  release(id: number): number | undefined;
  counts(id: number): [number, number, number] | undefined;
  movedSince(id: number): boolean;
  listenStats(): [number, number, number, number, number];
  handoverReadsForTest(n: number): number;
  generationsForTest(n: number): void;
}

/** How a spliced tunnel ended on the thread. */
export interface SpliceEnd {
  /** Bytes read from the side that connected, and from the other side. */
  up: number;
  down: number;
  /** Undefined when both directions ended with a FIN; else the errno name of the read or write that failed. */
  error: string | undefined;
}
export type SpliceDone = (end: SpliceEnd) => void;

export interface SpliceStats {
  tunnels: number;
  attachedTotal: number;
  /** Bytes read, by lane: [up, down]. */
  lanes: [[number, number], [number, number]];
  /** Bytes read but not yet taken by the destination's kernel buffer. */
  waiting: number;
}

/** The libuv handle fields a socket must show to be spliced natively. */
interface HandleInternals {
  _handle?: {
    fd?: number;
    reading?: boolean;
    readStop?: () => number;
    writeQueueSize?: number;
    constructor: { name: string };
  } | null;
  timeout?: number;
}

export class NativeSplicer {
  private readonly done = new Map<number, SpliceDone>();
  private hub: NativeListeners | undefined;

  constructor(private readonly addon: Addon) {
    addon.start((r) => this.onReports(r));
  }

  /** The process's native listeners (listen.c), started on first use. */
  listeners(): NativeListeners {
    this.hub ??= new NativeListeners(this.addon);
    return this.hub;
  }

  /**
   * Moves both sockets' bytes on the thread from now on and calls `done` once when the tunnel
   * ended there, or returns undefined (nothing changed) when either socket does not qualify.
   * The caller must have every byte it read from them written on already, must not read or
   * write them again, and must `cancel` before it destroys either while the tunnel is live.
   */
  attach(up: Socket, down: Socket, lane: 0 | 1, done: SpliceDone): number | undefined {
    const a = spliceable(up);
    const b = spliceable(down);
    if (a === undefined || b === undefined) return undefined;
    let id: number;
    try {
      id = this.addon.attach(a, b, lane);
    } catch {
      // Nothing changed: the sockets read on as before.
      return undefined;
    }
    // The thread may read them at once. Node reads a socket only from its own event loop (and,
    // inside a read callback, again after it unless the callback stops it), so stopping both here,
    // in the same synchronous turn, leaves no byte read by both or by neither.
    for (const s of [up, down] as Array<Socket & HandleInternals>) {
      const h = s._handle as NonNullable<HandleInternals["_handle"]>;
      h.readStop?.();
      // Node's socket starts reading again wherever it finds `reading` clear (its `_read`, which a
      // `connect` event, `resume` or `read(0)` reaches): marked as reading, it leaves the handle alone.
      h.reading = true;
    }
    this.done.set(id, done);
    return id;
  }

  /** `attach` on raw descriptors, none of a socket's checks made (tests give it ones the thread cannot watch). */
  attachFdsForTest(fdUp: number, fdDown: number, done: SpliceDone): number {
    const id = this.addon.attach(fdUp, fdDown, 0);
    this.done.set(id, done);
    return id;
  }

  /** Whether `attach` would take both sockets now (see `spliceable`). */
  canAttach(up: Socket, down: Socket): boolean {
    return spliceable(up) !== undefined && spliceable(down) !== undefined;
  }

  /**
   * Takes a live tunnel back and returns the bytes it moved (up, down): its descriptors are
   * Node's alone again and `done` will not run. Undefined when it already ended: `done` will run.
   */
  cancel(id: number): [number, number] | undefined {
    const b = this.addon.cancel(id);
    if (b !== undefined) this.done.delete(id);
    return b;
  }

  /** Whether bytes moved since the last call. */
  moved(id: number): boolean {
    return this.addon.moved(id);
  }

  /**
   * Bytes read so far from the side that connected and from the other; undefined once its end
   * reached JavaScript (until then, an ended tunnel's bytes come from its report).
   */
  bytes(id: number): [number, number] | undefined {
    return this.addon.bytes(id);
  }

  stats(): SpliceStats {
    const s = this.addon.stats();
    return {
      tunnels: s[0] ?? 0,
      attachedTotal: s[1] ?? 0,
      lanes: [
        [s[2] ?? 0, s[3] ?? 0],
        [s[4] ?? 0, s[5] ?? 0],
      ],
      waiting: s[6] ?? 0,
    };
  }

  private onReports(r: number[]): void {
    for (let k = 0; k + 4 < r.length; k += 5) {
      const id = r[k] as number;
      const cb = this.done.get(id);
      if (cb === undefined) continue;
      this.done.delete(id);
      const code = r[k + 3] as number;
      const errno = r[k + 4] as number;
      cb({
        up: r[k + 1] as number,
        down: r[k + 2] as number,
        // libuv's codes are the negated errno values on Linux, the only platform the splice runs on.
        error: code === 0 ? undefined : errorName(errno),
      });
    }
  }
}

/** How a native listener's connection ended: bytes each way, and the libuv error name after a failure. */
export interface NativeEnd {
  up: number;
  down: number;
  error: string | undefined;
}

/**
 * A connection a native listener accepted (listen.c). Until the relay dials, closes or releases
 * it, it is held: nothing is read from it. The relay sets the callbacks it needs.
 */
export class NativeConn {
  /** The target side connected (`error` undefined) or the dial failed (its libuv error name). */
  onDial: ((error: string | undefined) => void) | undefined = undefined;
  /** Both handles closed; once per connection, unless it was released. */
  onEnded: ((end: NativeEnd) => void) | undefined = undefined;
  /** The target side's local address, once connected. */
  localAddress: string | undefined = undefined;
  localPort: number | undefined = undefined;
  /** Closed (or released): no call reaches the connection any more. */
  destroyed = false;
  released = false;
  // The relay's bookkeeping (relay.ts).
  /** Its target connected and it is counted as a tunnel. */
  carried = false;
  openedAt = 0;
  quietSweeps = 0;
  /** Once piped: the side JavaScript reads and writes, as a tunnel end. */
  piped: NativePipe | undefined = undefined;

  constructor(
    readonly hub: NativeListeners,
    readonly id: number,
    readonly remoteAddress: string,
    readonly remotePort: number,
  ) {}

  /** Starts connecting the target side; false when the connection is not held. */
  dial(ip: string, port: number): boolean {
    return !this.destroyed && this.hub.addon.dial(this.id, ip, port);
  }
  /** A dial past its deadline: onDial follows with ETIMEDOUT. */
  abortDial(): void {
    if (!this.destroyed) this.hub.addon.abortDial(this.id);
  }
  /**
   * Closes both sides (a held client after dropping what it sent, so that it sees a FIN); with
   * `reset`, as a reset. `onEnded` follows.
   */
  destroy(reset = false): void {
    if (this.destroyed) return;
    this.destroyed = true;
    // 2: a dialPiped connection between dials, gone at once with no `ended` to follow.
    if (this.hub.addon.close(this.id, reset) === 2) this.hub.forget(this.id);
  }
  /**
   * The held client (or, for `dialPiped`, the connected target) as a tunnel end whose bytes the
   * relay reads and writes, for a tunnel whose other end is a relay link's stream; undefined when
   * it is gone. It reads nothing until the end's `resume`.
   */
  pipe(): NativePipe | undefined {
    if (this.destroyed) return undefined;
    if (this.piped !== undefined) return this.piped;
    if (!this.dialOnly && !this.hub.addon.pipe(this.id)) return undefined;
    this.piped = new NativePipe(this);
    return this.piped;
  }
  /** Made by `dialPiped`: no client side, its target side piped once connected. */
  dialOnly = false;
  /** A held connection's descriptor, to become a net.Socket; undefined when it is not held. */
  release(): number | undefined {
    if (this.destroyed) return undefined;
    const fd = this.hub.addon.release(this.id);
    if (fd === undefined) return undefined;
    this.destroyed = true;
    this.released = true;
    this.hub.forget(this.id);
    return fd;
  }
  /**
   * Bytes from the client and from the target so far, and whether the splice thread carries
   * it now (1, after HANDOVER_READS) or the event loop does (0); zeros once ended.
   */
  counts(): [number, number, number] {
    return this.hub.addon.counts(this.id) ?? [0, 0, 0];
  }
  /** Whether bytes moved since the last call (which clears it). */
  movedSince(): boolean {
    return this.hub.addon.movedSince(this.id);
  }
}

/**
 * One side of a native connection as a tunnel end (the TunnelEnd of links/session.ts), for a
 * tunnel whose other end is a relay link's stream: the bytes go between the descriptor and the
 * link with no net.Socket, no stream state and no handle wrap (docs/relay.md "Native listeners").
 * Reads reach `reader` as views of the listeners' read buffer, read into again once it returns: it
 * copies what it keeps. A write the kernel does not take whole is copied and finished in C, so the
 * caller's buffer is free again at once; `writableLength` is what waits there, and 'drain' says
 * when nothing does. 'end' is the peer's FIN; 'close' comes once both directions are done (or
 * after a failure, with `errored` set) and the descriptor is closed.
 */
export class NativePipe extends EventEmitter implements TunnelEnd {
  reader: ((chunk: Buffer) => void) | undefined = undefined;
  errored: Error | null = null;
  readableEnded = false;
  writableFinished = false;
  writableLength = 0;
  private flowing = false;
  private ending = false;

  constructor(readonly conn: NativeConn) {
    super();
  }

  get destroyed(): boolean {
    return this.conn.destroyed;
  }

  write(chunk: Buffer, callback?: (err?: Error | null) => void): boolean {
    const waiting = this.conn.destroyed ? -1 : this.conn.hub.addon.pipeWrite(this.conn.id, chunk);
    if (waiting < 0) {
      if (callback !== undefined) process.nextTick(callback, new Error("write after end or close"));
      return false;
    }
    this.writableLength = waiting;
    if (callback !== undefined) process.nextTick(callback);
    return waiting === 0;
  }

  end(): this {
    if (this.ending || this.conn.destroyed) return this;
    this.ending = true;
    this.conn.hub.addon.pipeEnd(this.conn.id);
    return this;
  }

  pause(): this {
    if (!this.flowing) return this;
    this.flowing = false;
    if (!this.conn.destroyed) this.conn.hub.addon.pipeRead(this.conn.id, false);
    return this;
  }

  resume(): this {
    if (this.flowing || this.conn.destroyed) return this;
    this.flowing = true;
    this.conn.hub.addon.pipeRead(this.conn.id, true);
    return this;
  }

  /** Closes the descriptor; what waits to be written is dropped, as a socket's `destroy` does. */
  destroy(): this {
    this.conn.destroy(false);
    return this;
  }

  /** Closes it with a reset, so that the peer learns of a failure rather than a clean end. */
  resetAndDestroy(): this {
    this.conn.destroy(true);
    return this;
  }

  /** From NativeListeners: `n` bytes at the start of the read buffer. */
  onData(n: number): void {
    this.reader?.(READ_BUFFER.subarray(0, n));
  }
  onEof(): void {
    this.readableEnded = true;
    this.emit("end");
  }
  onDrain(): void {
    this.writableLength = 0;
    this.emit("drain");
  }
  onEnded(end: NativeEnd): void {
    if (end.error !== undefined) {
      this.errored = Object.assign(new Error(`connection failed: ${end.error}`), { code: end.error });
    }
    this.writableFinished = this.ending && end.error === undefined;
    this.writableLength = 0;
    this.emit("close", end.error !== undefined);
  }
}

/** Every native read lands here (listen.c's lbuf): one read at a time, on the event loop's thread. */
const READ_BUFFER = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);

/** Native listeners of this process: listen.c, on the event loop's thread. */
export class NativeListeners {
  private readonly accepting = new Map<number, (conn: NativeConn) => void>();
  private readonly conns = new Map<number, NativeConn>();

  constructor(readonly addon: Addon) {
    addon.listenStart(
      (listener, id, ip, port) => {
        const conn = new NativeConn(this, id, ip, port);
        this.conns.set(id, conn);
        const accept = this.accepting.get(listener);
        if (accept === undefined) conn.destroy();
        else accept(conn);
      },
      (kind, id, a, b, text) => this.onEvent(kind, id, a, b, text),
      // The same hand-over as the relay's own socket-to-socket tunnels.
      HANDOVER_READS,
      READ_BUFFER,
    );
  }

  /**
   * A connection of its own to `ip:port` (an IP literal) for a tunnel whose other end is a link
   * stream: `onDial` learns whether it connected, then `pipe()` gives its tunnel end. A failed
   * dial may be retried on it with `dial`; `destroy` when giving up. Throws on a malformed address.
   */
  dialPiped(ip: string, port: number): NativeConn {
    const id = this.addon.dialPiped(ip, port);
    const conn = new NativeConn(this, id, ip, port);
    conn.dialOnly = true;
    this.conns.set(id, conn);
    return conn;
  }

  /**
   * Binds `ip:port` (an IP literal) and hands every accepted connection to `accept`. Returns the
   * listener's id and bound port; throws as `listen` does, with the error name as `code`.
   */
  listen(ip: string, port: number, accept: (conn: NativeConn) => void): { id: number; port: number } {
    const [id, bound] = this.addon.listen(ip, port, 511);
    this.accepting.set(id, accept);
    return { id, port: bound };
  }

  /** Stops accepting; connections already accepted are not touched. */
  unlisten(id: number): void {
    this.accepting.delete(id);
    this.addon.unlisten(id);
  }

  /**
   * Connections accepted (or dialled for a pipe) and not yet ended or released, listeners open,
   * bytes read on the event loop or written to a pipe that the kernel has not taken yet, and bytes
   * written to pipes in all, of which `pipedCopied` were copied because the kernel did not take
   * them at once.
   */
  stats(): { connections: number; listeners: number; waiting: number; pipedWritten: number; pipedCopied: number } {
    const [connections, listeners, waiting, pipedWritten, pipedCopied] = this.addon.listenStats();
    return { connections, listeners, waiting, pipedWritten, pipedCopied };
  }

  /** Whole reads before a connection moves to the splice thread (HANDOVER_READS); returns the previous value. */
  handoverReadsForTest(n: number): number {
    return this.addon.handoverReadsForTest(n);
  }

  /** Ages every free connection slot by `n` reuses (tests reach the wrap of connection ids). */
  generationsForTest(n: number): void {
    this.addon.generationsForTest(n);
  }

  forget(id: number): void {
    this.conns.delete(id);
  }

  private onEvent(kind: number, id: number, a: number, b: number, text: string | undefined): void {
    const conn = this.conns.get(id);
    if (conn === undefined) return;
    if (kind === EV_DATA) {
      conn.piped?.onData(a);
    } else if (kind === EV_EOF) {
      conn.piped?.onEof();
    } else if (kind === EV_DRAIN) {
      conn.piped?.onDrain();
    } else if (kind === EV_CONNECTED) {
      conn.localAddress = text;
      conn.localPort = a;
      conn.onDial?.(undefined);
    } else if (kind === EV_DIAL_FAILED) {
      conn.onDial?.(text ?? "EUNKNOWN");
    } else if (kind === EV_ENDED) {
      this.conns.delete(id);
      conn.destroyed = true;
      // A dial in flight ends with the connection.
      const dialling = conn.onDial;
      conn.onDial = undefined;
      dialling?.("ECANCELED");
      const end = { up: a, down: b, error: text };
      conn.onEnded?.(end);
      conn.piped?.onEnded(end);
    }
  }
}

const EV_CONNECTED = 1;
const EV_DIAL_FAILED = 2;
const EV_ENDED = 3;
const EV_DATA = 4;
const EV_EOF = 5;
const EV_DRAIN = 6;

function errorName(errno: number): string {
  try {
    return getSystemErrorName(-errno);
  } catch {
    return `E${errno}`;
  }
}

/** The socket's descriptor when the thread may take it over, else undefined. */
function spliceable(s: Socket): number | undefined {
  const x = s as Socket & HandleInternals;
  const h = x._handle;
  if (h == null || h.constructor.name !== "TCP" || typeof h.fd !== "number" || h.fd < 0) return undefined;
  if (s.destroyed || s.connecting || s.writableLength !== 0 || (h.writeQueueSize ?? 0) !== 0 || x.timeout)
    return undefined;
  // Bytes Node already read and holds would be lost to the other side.
  if (s.readableLength !== 0) return undefined;
  return h.fd;
}

let loaded: NativeSplicer | null | undefined;
let why = "";

/**
 * The process's splicer, loaded on first use, or undefined where it was not built.
 * HOPWAY_SPLICE_ADDON names the .node file where it is not beside the code (a bundle run from
 * elsewhere). Whether a relay uses it is its own option (RelayOptions.nativeSplice).
 */
export function nativeSplicer(): NativeSplicer | undefined {
  if (loaded !== undefined) return loaded ?? undefined;
  loaded = null;
  if (process.platform !== "linux") {
    why = `not on ${process.platform}`;
    return undefined;
  }
  // Its thread outlives any one environment: a worker thread's teardown would free the function
  // the thread calls back into. The agent runs relays on the main thread.
  if (!isMainThread) {
    why = "not on the main thread";
    return undefined;
  }
  const candidates = [
    process.env.HOPWAY_SPLICE_ADDON,
    // Beside the bundle (dist/hopway-agent.mjs, the image's /app), then the source tree's build.
    new URL("hopway-splice.node", import.meta.url).pathname,
    new URL("../../native/build/hopway-splice.node", import.meta.url).pathname,
  ].filter((p): p is string => p !== undefined && p !== "");
  const path = candidates.find((p) => existsSync(p));
  if (path === undefined) {
    why = "not built (npm install builds it: k8s-agent/native/build.mjs)";
    return undefined;
  }
  try {
    loaded = new NativeSplicer(createRequire(import.meta.url)(path) as Addon);
    why = path;
  } catch (e) {
    why = `failed to load ${path}: ${(e as Error).message}`;
  }
  return loaded ?? undefined;
}

/** Where the splicer came from, or why there is none (the agent logs it at start). */
export function nativeSpliceStatus(): string {
  nativeSplicer();
  return why;
}
