// A TCP forwarder on libuv's TCP handles themselves, with no net.Socket, stream or event
// emitter: accept, dial the one target, write each read on, forward each FIN, close both when
// both directions ended. Every handle reads into one shared buffer, and each read goes to the
// other descriptor in one write(2), as the relay's listener tunnels do (k8s-agent/src/relay/pump.ts);
// only what the kernel does not take then is copied and queued in libuv. It reaches the handles
// through Node's internal tcp_wrap and stream_wrap bindings (the deprecated `process.binding`,
// which net.Socket wraps), so it is a benchmark reference only: what a Node forwarder spends per
// connection below `net`, the kernel's work and the event loop included
// (docs/benchmarks/README.md, "Listeners", "Below `net.Socket`"). No relay code may go this way:
// the bindings are Node's internals and change without notice.
import { writeSync } from "node:fs";

/** The parts of a libuv TCP handle (tcp_wrap's TCP) this forwarder uses. */
interface TcpHandle {
  bind(address: string, port: number): number;
  listen(backlog: number): number;
  getsockname(out: { port?: number }): number;
  connect(req: ConnectReq, address: string, port: number): number;
  setNoDelay(on: boolean): number;
  readStart(): number;
  useUserBuffer(buffer: Uint8Array): void;
  readonly fd: number;
  readStop(): number;
  writeBuffer(req: WriteReq, buf: Uint8Array): number;
  shutdown(req: ShutdownReq): number;
  close(): void;
  onread: (() => void) | null;
  onconnection: ((status: number, client: TcpHandle | undefined) => void) | null;
  /** This forwarder's own slot: the direction this handle reads. */
  dir?: Direction;
}
interface ConnectReq {
  oncomplete: (status: number) => void;
  address: string;
  port: number;
  pair?: Pair;
}
interface WriteReq {
  handle: TcpHandle;
  oncomplete: (status: number) => void;
  /** Keeps the bytes alive while libuv still writes them. */
  buffer?: Buffer;
  dir?: Direction;
}
interface ShutdownReq {
  handle: TcpHandle;
  oncomplete: (status: number) => void;
  pair?: Pair;
}
interface TcpWrap {
  TCP: new (type: number) => TcpHandle;
  TCPConnectWrap: new () => ConnectReq;
  constants: { SOCKET: number; SERVER: number };
}
interface StreamWrap {
  WriteWrap: new () => WriteReq;
  ShutdownWrap: new () => ShutdownReq;
  streamBaseState: Int32Array;
  kReadBytesOrError: number;
  kLastWriteWasAsync: number;
}

const UV_EOF = -4095;
const READ_BYTES = 64 * 1024;

function bindings(): { tcp: TcpWrap; stream: StreamWrap } {
  const binding = (process as unknown as { binding?: (name: string) => unknown }).binding;
  if (typeof binding !== "function") throw new Error("this Node has no process.binding");
  return { tcp: binding("tcp_wrap") as TcpWrap, stream: binding("stream_wrap") as StreamWrap };
}

class Pair {
  shutDown = 0;
  closed = false;
  constructor(
    readonly client: TcpHandle,
    readonly upstream: TcpHandle,
  ) {}
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.close();
    this.upstream.close();
  }
}

/** One direction: reads `from`, writes `to`; reading stops while a write to `to` is pending. */
class Direction {
  pending = 0;
  constructor(
    readonly pair: Pair,
    readonly from: TcpHandle,
    readonly to: TcpHandle,
  ) {}
}

/**
 * Listens on 127.0.0.1 (a free port) and forwards every connection to 127.0.0.1:`target`.
 * Returns the port. Throws when this Node has no such bindings.
 */
export function forwardOnHandles(target: number): number {
  const { tcp, stream } = bindings();
  const state = stream.streamBaseState;
  // Read into by every handle; what lands there is written on (or copied) before the next read.
  const shared = Buffer.allocUnsafeSlow(READ_BYTES);

  function afterWrite(this: WriteReq, status: number): void {
    const d = this.dir as Direction;
    if (status < 0) {
      d.pair.close();
      return;
    }
    if (--d.pending === 0 && !d.pair.closed) d.from.readStart();
  }
  function afterShutdown(this: ShutdownReq, status: number): void {
    const pair = this.pair as Pair;
    if (status < 0 || ++pair.shutDown === 2) pair.close();
  }
  function onRead(this: TcpHandle): void {
    const d = this.dir as Direction;
    const n = state[stream.kReadBytesOrError] as number;
    if (n > 0) {
      let w = 0;
      if (d.pending === 0) {
        try {
          w = writeSync(d.to.fd, shared, 0, n);
        } catch {
          // EAGAIN (the kernel's buffer is full) or a broken connection, which the queued write meets too.
        }
        if (w === n) return;
      }
      const rest = Buffer.from(shared.subarray(w, n));
      const req = new stream.WriteWrap();
      req.handle = d.to;
      req.oncomplete = afterWrite;
      req.dir = d;
      req.buffer = rest;
      if (d.to.writeBuffer(req, rest) !== 0) {
        d.pair.close();
        return;
      }
      if (state[stream.kLastWriteWasAsync] === 1) {
        d.pending++;
        d.from.readStop();
      }
      return;
    }
    if (n === 0) return;
    if (n !== UV_EOF) {
      d.pair.close();
      return;
    }
    // The FIN goes on after whatever is still being written (libuv queues the shutdown behind writes).
    const req = new stream.ShutdownWrap();
    req.handle = d.to;
    req.oncomplete = afterShutdown;
    req.pair = d.pair;
    if (d.to.shutdown(req) !== 0) d.pair.close();
  }
  function onConnect(this: ConnectReq, status: number): void {
    const pair = this.pair as Pair;
    if (status < 0) {
      pair.close();
      return;
    }
    const { client, upstream } = pair;
    client.dir = new Direction(pair, client, upstream);
    upstream.dir = new Direction(pair, upstream, client);
    client.onread = onRead;
    upstream.onread = onRead;
    client.useUserBuffer(shared);
    upstream.useUserBuffer(shared);
    client.readStart();
    upstream.readStart();
  }

  const server = new tcp.TCP(tcp.constants.SERVER);
  const bound = server.bind("127.0.0.1", 0);
  if (bound !== 0) throw new Error(`bind: ${bound}`);
  server.onconnection = (status, client) => {
    if (status < 0 || client === undefined) return;
    client.setNoDelay(true);
    const upstream = new tcp.TCP(tcp.constants.SOCKET);
    upstream.setNoDelay(true);
    const pair = new Pair(client, upstream);
    const req = new tcp.TCPConnectWrap();
    req.oncomplete = onConnect;
    req.address = "127.0.0.1";
    req.port = target;
    req.pair = pair;
    if (upstream.connect(req, "127.0.0.1", target) !== 0) pair.close();
  };
  const listening = server.listen(511);
  if (listening !== 0) throw new Error(`listen: ${listening}`);
  const out: { port?: number } = {};
  server.getsockname(out);
  return out.port ?? 0;
}
