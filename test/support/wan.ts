// A WAN link on loopback, for tests and benchmarks: a TCP forwarder that listens
// on 127.0.0.1:0 and forwards every connection to one loopback target, holding
// bytes back so that the two ends see a long-distance link instead of a local one.
//
// The model (docs/testing.md, "The WAN emulator"), with d the one-way delay and
// t0 the moment the client's connection reaches the forwarder:
//   - handshake: a real TCP handshake is SYN (arrives d), SYN-ACK (back at 2d),
//     then ACK with the first data (arrives 3d). So the forwarder opens its own
//     connection to the target at t0 + 3d (the target's accept happens then) and
//     no client byte reaches the target before t0 + 3d. The client's own connect()
//     completes at once (it is on loopback); only its bytes are held.
//   - data: every byte leaves exactly d after it arrived, in order, each direction
//     on its own; with a rate cap the link also serialises bytes at that rate first
//     (a chunk leaves the far end d after its last byte went onto the wire).
//   - half-close (FIN) travels in order behind the data; a reset (RST) is sent to
//     the other end d after it happened and discards what was still in flight,
//     as a real RST does. A target that refuses the connection resets the client
//     at t0 + 3d.
//   - memory: each direction holds at most `windowBytes` in flight (plus one read);
//     past that the sending socket is paused, so a stalled reader stops the writer
//     through TCP's own flow control instead of growing this process.
// It only ever dials loopback: it refuses any other target.
import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";

export interface WanOptions {
  /** Where every connection is forwarded to; must be a loopback address. */
  target: { host: string; port: number };
  /** One-way delay in milliseconds, applied to each direction. */
  delayMs: number;
  /** Rate cap per direction in bytes per second; none when absent. */
  rateBytesPerSec?: number;
  /** Bytes in flight per direction before the sender is paused (default 4 MiB: 25 ms at 160 MiB/s). */
  windowBytes?: number;
}

export interface WanStats {
  /** Connections accepted since start. */
  connections: number;
  /** Connections with at least one side still open. */
  open: number;
  /** Bytes delivered, both directions, all connections. */
  deliveredBytes: number;
  /** Bytes held right now (queued in the delay lines plus unflushed socket writes), all connections. */
  heldBytes: number;
  /** The most one direction of one connection ever held (queued plus unflushed writes). */
  maxHeldBytes: number;
  /** The most chunks one direction of one connection ever queued. */
  maxQueuedChunks: number;
}

export interface WanLink {
  host: string;
  port: number;
  /** The link's address in the records' form, `ipv4://127.0.0.1:PORT`. */
  address: string;
  /** The one-way delay for bytes and connections from now on. */
  delayMs: number;
  stats(): WanStats;
  close(): Promise<void>;
}

const DEFAULT_WINDOW = 4 * 1024 * 1024;

function isLoopback(host: string): boolean {
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) || host === "::1" || host === "localhost";
}

interface Item {
  due: number;
  chunk?: Buffer;
  end?: true;
}

/** One direction of one connection: a FIFO of chunks, each released at its due time. */
class DelayLine {
  private readonly queue: Item[] = [];
  private queuedBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private blocked = false;
  private wireFreeAt = 0;
  private out: Socket | undefined;
  dead = false;

  constructor(
    private readonly from: Socket,
    private readonly link: LinkState,
    /** Nothing leaves before this moment (the handshake hold for the client's direction). */
    private readonly holdUntil: number,
  ) {}

  get held(): number {
    return this.queuedBytes + (this.out?.writableLength ?? 0);
  }

  /** The socket bytes go to, once it is connected. */
  attach(out: Socket): void {
    this.out = out;
    out.on("drain", () => {
      this.blocked = false;
      this.flush();
    });
    this.flush();
  }

  push(chunk: Buffer): void {
    if (this.dead) return;
    const now = performance.now();
    const rate = this.link.opts.rateBytesPerSec;
    // With a rate cap, pieces of ~10 ms of wire time, so delivery is smooth rather than in bursts of a whole read.
    const piece = rate ? Math.max(1024, Math.floor(rate / 100)) : chunk.length;
    for (let off = 0; off < chunk.length; off += piece) {
      const part = chunk.subarray(off, off + piece);
      let sent = now;
      if (rate) {
        this.wireFreeAt = Math.max(now, this.wireFreeAt) + (part.length / rate) * 1000;
        sent = this.wireFreeAt;
      }
      this.queue.push({ due: Math.max(sent, this.holdUntil) + this.link.delayMs, chunk: part });
      this.queuedBytes += part.length;
    }
    this.link.note(this.held, this.queue.length);
    if (this.queuedBytes >= this.link.window) this.from.pause();
    this.schedule();
  }

  pushEnd(): void {
    if (this.dead) return;
    const after = Math.max(performance.now(), this.wireFreeAt, this.holdUntil);
    this.queue.push({ due: after + this.link.delayMs, end: true });
    this.schedule();
  }

  /** A reset discards whatever was still on the way. */
  kill(): void {
    this.dead = true;
    this.queue.length = 0;
    this.queuedBytes = 0;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.timer || this.blocked || !this.out) return;
    const head = this.queue[0];
    if (!head) return;
    // Timers may fire a little late but, with the loop's cached clock, also early: flush() re-checks.
    const wait = head.due - performance.now();
    if (wait <= 0) return void setImmediate(() => this.flush());
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.flush();
      },
      Math.max(1, Math.ceil(wait)),
    );
  }

  private flush(): void {
    const out = this.out;
    if (!out || this.dead) return;
    const now = performance.now();
    while (!this.blocked) {
      const head = this.queue[0];
      if (!head || head.due > now) break;
      this.queue.shift();
      if (head.end) {
        out.end();
        continue;
      }
      const chunk = head.chunk as Buffer;
      this.queuedBytes -= chunk.length;
      this.link.delivered += chunk.length;
      if (!out.write(chunk)) this.blocked = true;
      this.link.note(this.held, this.queue.length);
    }
    if (this.queuedBytes < this.link.window / 2 && this.from.isPaused() && !this.from.destroyed) this.from.resume();
    this.schedule();
  }
}

interface LinkState {
  opts: WanOptions;
  delayMs: number;
  window: number;
  delivered: number;
  note(held: number, chunks: number): void;
}

/** Starts a WAN link to `opts.target`; see the model at the top of this file. */
export async function startWan(opts: WanOptions): Promise<WanLink> {
  if (!isLoopback(opts.target.host)) throw new Error(`wan: target ${opts.target.host} is not a loopback address`);
  if (!(opts.delayMs >= 0)) throw new Error("wan: delayMs must be ≥ 0");
  if (opts.rateBytesPerSec !== undefined && !(opts.rateBytesPerSec > 0)) {
    throw new Error("wan: rateBytesPerSec must be > 0");
  }
  let connections = 0;
  let maxHeldBytes = 0;
  let maxQueuedChunks = 0;
  const live = new Set<{ lines: DelayLine[]; sockets: Socket[] }>();
  const state: LinkState = {
    opts,
    delayMs: opts.delayMs,
    window: opts.windowBytes ?? DEFAULT_WINDOW,
    delivered: 0,
    note(held, chunks) {
      if (held > maxHeldBytes) maxHeldBytes = held;
      if (chunks > maxQueuedChunks) maxQueuedChunks = chunks;
    },
  };

  const server: Server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    connections++;
    client.setNoDelay(true);
    const t0 = performance.now();
    const d = state.delayMs;
    const toTarget = new DelayLine(client, state, t0 + 2 * d);
    let upstream: Socket | undefined;
    const conn = { lines: [toTarget], sockets: [client] };
    live.add(conn);
    let done = false;
    const finish = () => {
      if (done) return;
      if (!client.destroyed || (upstream && !upstream.destroyed)) return;
      done = true;
      live.delete(conn);
    };
    // A reset on one side reaches the other side d later, and everything still in flight is lost.
    let resetting = false;
    const reset = (dead: Socket, other: () => Socket | undefined) => {
      if (resetting) return;
      resetting = true;
      for (const l of conn.lines) l.kill();
      if (!dead.destroyed) dead.destroy();
      setTimeout(() => {
        const o = other();
        if (o && !o.destroyed) o.resetAndDestroy();
        finish();
      }, state.delayMs);
    };
    client.on("data", (c: Buffer) => toTarget.push(c));
    client.on("end", () => toTarget.pushEnd());
    client.on("error", () => reset(client, () => upstream));
    client.on("close", (hadError) => {
      if (hadError) reset(client, () => upstream);
      finish();
    });
    client.resume();

    setTimeout(
      () => {
        if (client.destroyed) return finish();
        const up = tcpConnect({ host: opts.target.host, port: opts.target.port, allowHalfOpen: true, noDelay: true });
        upstream = up;
        conn.sockets.push(up);
        const back = new DelayLine(up, state, 0);
        conn.lines.push(back);
        let connected = false;
        up.on("connect", () => {
          connected = true;
          toTarget.attach(up);
          back.attach(client);
        });
        up.on("data", (c: Buffer) => back.push(c));
        up.on("end", () => back.pushEnd());
        up.on("error", () => {
          if (connected) return reset(up, () => client);
          // Refused: the handshake failed, so the client is reset now, at t0 + 3d.
          resetting = true;
          for (const l of conn.lines) l.kill();
          client.resetAndDestroy();
        });
        up.on("close", (hadError) => {
          if (hadError) reset(up, () => client);
          finish();
        });
      },
      Math.max(0, 3 * d),
    );
  });
  server.listen(0, "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    server.once("listening", resolve);
    server.once("error", reject);
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  return {
    host: "127.0.0.1",
    port,
    address: `ipv4://127.0.0.1:${port}`,
    get delayMs() {
      return state.delayMs;
    },
    set delayMs(ms: number) {
      if (!(ms >= 0)) throw new Error("wan: delayMs must be ≥ 0");
      state.delayMs = ms;
    },
    stats() {
      let held = 0;
      for (const c of live) for (const l of c.lines) held += l.held;
      return {
        connections,
        open: live.size,
        deliveredBytes: state.delivered,
        heldBytes: held,
        maxHeldBytes,
        maxQueuedChunks,
      };
    },
    close() {
      for (const c of live) for (const s of c.sockets) s.destroy();
      live.clear();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
