// One direction of a tunnel whose source or destination is a stream of a relay
// link (hopway-mux/1 or HTTP/2). Socket-to-socket directions keep pump.ts; here a chunk is
// written on and the source pauses while the destination holds `limit` bytes,
// resuming on its `drain`. The source's end is forwarded as the destination's
// end: a socket FIN becomes the stream's FIN (END_STREAM in HTTP/2) and back.
// A hopway-mux/1 stream hands its bytes to one direct reader instead of 'data' events.
import { Socket } from "node:net";
import { NativePipe } from "../native-splice.ts";
import { abort, directWriter, setSink } from "../pump.ts";
import type { RelayCounters, Tunnel } from "../relay.ts";
import { copyIn, isLent, release } from "./buffers.ts";
import { MuxStream } from "./mux/session.ts";
import type { TunnelEnd } from "./session.ts";

export type { TunnelEnd } from "./session.ts";

/** Link-stream chunks at least this large (a full TLS record's worth) are corked into the next writev. */
const CORK_FROM = 8 * 1024;
/**
 * Chunks at least this large (several records the receive path coalesced) are written at once: the
 * kernel mostly takes them whole within the call, so they neither wait corked in the socket nor
 * push its queue past the leg's limit (which would pause the stream and make the bytes behind
 * them take a buffer of their own).
 */
const WRITE_NOW_FROM = 32 * 1024;

export function pipeLeg(
  src: TunnelEnd,
  dst: TunnelEnd,
  tunnel: Tunnel,
  up: boolean,
  counters: RelayCounters,
  limit: number,
  /** Called when this leg stops reading because its destination is slow: the tunnel starts holding bytes. */
  held?: () => void,
): void {
  const account = (n: number) => {
    tunnel.moved = true;
    if (up) counters.up[tunnel.peer] += n;
    else counters.down[tunnel.peer] += n;
  };
  dst.on("drain", () => src.resume());
  // A stream cut by a reset or by its link going away may still end its readable side
  // (node:http2 does), but that end is no FIN: bytes after it were lost, so the other side is
  // reset rather than ended, or its peer would take the truncated stream for a complete one.
  src.on("end", () => {
    if (cut(src)) abortEnd(dst);
    else dst.end();
  });
  if (src instanceof Socket || src instanceof NativePipe) {
    // Relay sockets (through pump.ts's sinks) and native pipes (listen.c) read into buffers that
    // are read into again: the chunk is copied, as the link stream keeps it until the peer's
    // window takes it. False stops reading: the socket's sink returns it, the pipe pauses.
    const mux = dst instanceof MuxStream ? dst : undefined;
    const sink = (chunk: Buffer): boolean => {
      account(chunk.length);
      // hopway-mux/1 copies it straight into its frames; HTTP/2 keeps the chunk, so it goes into a
      // reused buffer, which the link stream releases once the TLS socket took it (buffers.ts).
      // A mux stream out of credit says so: the source stops reading until its 'drain', and its
      // bytes wait in the kernel, so the relay holds nothing more (no `held`).
      if (mux !== undefined) return mux.writeBorrowed(chunk) || (dst.writableLength < limit && mux.sendCredit > 0);
      dst.write(copyIn(chunk));
      if (dst.writableLength < limit) return true;
      held?.();
      return false;
    };
    if (src instanceof Socket) setSink(src, sink);
    else
      src.reader = (chunk) => {
        if (!sink(chunk)) src.pause();
      };
  } else if (dst instanceof NativePipe) {
    // The pipe writes at once what the kernel takes and copies the rest in C: a chunk (a view of
    // the link's read buffer, or a reused buffer) is free again when `write` returns.
    if (src instanceof MuxStream) src.takesBorrowed = true;
    read(src, (chunk: Buffer) => {
      account(chunk.length);
      dst.write(chunk);
      if (isLent(chunk)) release(chunk);
      if (dst.writableLength >= limit) {
        src.pause();
        held?.();
      }
    });
  } else if (dst instanceof Socket) {
    // A link stream hands over a TLS record (16 KiB) or a few coalesced ones per read. Written one
    // by one, each is a write(2) of its own; corked for the rest of the event loop's I/O phase,
    // the chunks of a burst leave in one writev.
    let corked = false;
    const uncork = () => {
      corked = false;
      dst.uncork();
    };
    // Chunks from reused buffers (buffers.ts) go back once written; Writable calls back in order.
    const inFlight: Buffer[] = [];
    const written = () => release(inFlight.shift() as Buffer);
    // A mux stream can lend its reader the link's read buffer, as a TLS socket reads into it: the
    // record's bytes go from there straight to the socket's descriptor in one write(2) when
    // nothing waits in the socket, as the node TLS floor does. No copy into a receive buffer, no
    // Writable bookkeeping; only what the kernel did not take is copied and queued.
    const direct = src instanceof MuxStream ? directWriter(dst) : undefined;
    if (direct !== undefined) (src as MuxStream).takesBorrowed = true;
    read(src, (chunk: Buffer, borrowed: boolean) => {
      account(chunk.length);
      if (borrowed) {
        const w = direct === undefined ? 0 : direct(chunk);
        if (w === chunk.length) return;
        chunk = copyIn(chunk.subarray(w));
      }
      // Only for full records: a small message (a request, an answer) leaves at once, without a timer.
      if (!corked && chunk.length >= CORK_FROM && chunk.length < WRITE_NOW_FROM) {
        corked = true;
        dst.cork();
        setImmediate(uncork);
      }
      if (isLent(chunk)) {
        inFlight.push(chunk);
        dst.write(chunk, written);
      } else dst.write(chunk);
      if (dst.writableLength >= limit) {
        src.pause();
        held?.();
      }
    });
  } else {
    // Link to link (a middle relay): a mux stream releases a reused chunk once its frames left.
    // Mux to mux, the bytes come as views of the link's read buffer and are copied once, into the
    // next link's frames (MuxStream.writeBorrowed).
    const mux = dst instanceof MuxStream ? dst : undefined;
    if (mux !== undefined && src instanceof MuxStream) src.takesBorrowed = true;
    read(src, (chunk: Buffer, borrowed: boolean) => {
      account(chunk.length);
      if (mux !== undefined) {
        if (borrowed) mux.writeBorrowed(chunk);
        else mux.write(chunk);
      } else dst.write(borrowed ? copyIn(chunk) : chunk);
      if (dst.writableLength >= limit) {
        src.pause();
        held?.();
      }
    });
  }
  src.resume();
}

function read(src: TunnelEnd, reader: (chunk: Buffer, borrowed: boolean) => void): void {
  if (src instanceof MuxStream) src.reader = reader;
  else src.on("data", reader);
}

/** Tears a tunnel side down without a clean end: a socket is reset, a link stream reset (CANCEL). */
export function abortEnd(side: TunnelEnd): void {
  if (side instanceof Socket) abort(side);
  else if (side instanceof NativePipe) side.resetAndDestroy();
  else side.destroy();
}

/**
 * Whether a link stream's end is a cut rather than the peer's FIN: it was reset with an error
 * code, or destroyed before its end was emitted (a clean end comes first, then the destroy).
 */
function cut(d: TunnelEnd): boolean {
  const code = d.rstCode;
  return d.destroyed || (code !== undefined && code !== 0);
}
