// Reused buffers for the bytes a tunnel carries over a link. Copying every TLS record (or
// every socket read) into a fresh buffer leaves each one to V8's garbage collector, and that
// external memory drives major GCs: a perf profile of a 3-relay chain in bulk put a quarter
// of its samples in major-GC marking and sweeping and 3.5 % in AES-GCM (docs/benchmarks/links.md,
// "Where the bulk CPU goes"). Here bytes are copied into buffers that go back to a small free
// list once the write that carries them on has completed (`release`).
//
// Two kinds:
//  - slabs of SLAB_BYTES, filled by consecutive small copies (TLS records, ≤ 16 KiB each); a slab
//    returns to the free list when every piece cut from it was released and it is full;
//  - whole buffers of WHOLE_BYTES for one large copy (a relay socket's read).
// A piece nobody releases (an HTTP/2 stream, which does not call back per chunk, or a link
// destroyed with writes queued) only keeps its buffer from the free list: the bookkeeping is a
// WeakMap, so the garbage collector takes the buffer as it would any other once nothing holds it. The memory a held piece
// pins is at most its slab: SLAB_BYTES / (smallest piece copied in) times the piece, which
// `copyIn` bounds by copying pieces under MIN_PIECE to a buffer of their own size.
import { READ_BUFFER_BYTES } from "../pump.ts";

const SLAB_BYTES = 64 * 1024;
const WHOLE_BYTES = READ_BUFFER_BYTES;
/** Pieces smaller than this never share a slab (they would pin it for a few bytes). */
const MIN_PIECE = 4 * 1024;
/** Large copies below this take a buffer of their own size instead of a whole one. */
const MIN_WHOLE = WHOLE_BYTES / 2;
const MAX_FREE = 64;

interface Lent {
  buf: Buffer;
  /** Pieces handed out and not yet released. */
  out: number;
  /** No more pieces will be cut from it. */
  full: boolean;
  whole: boolean;
  /** A slab of one stream's own (`appendOwn`): how much of it is filled. */
  ownUsed?: number;
}

// Weak: a buffer whose pieces are never released must not be pinned by its own bookkeeping.
const lent = new WeakMap<ArrayBufferLike, Lent>();
/** Buffers with pieces out (not counting those the garbage collector took with pieces out). */
let outstanding = 0;
const freeSlabs: Buffer[] = [];
const freeWhole: Buffer[] = [];
let current: Lent | undefined;
let currentUsed = 0;
/** Copies that went into a reused buffer, ever (tests check the data path takes this way). */
let pooledCopies = 0;

function newSlab(): Lent {
  const buf = freeSlabs.pop() ?? Buffer.allocUnsafeSlow(SLAB_BYTES);
  const l: Lent = { buf, out: 0, full: false, whole: false };
  lent.set(buf.buffer, l);
  return l;
}

function retire(l: Lent): void {
  lent.delete(l.buf.buffer);
  const list = l.whole ? freeWhole : freeSlabs;
  if (list.length < MAX_FREE) list.push(l.buf);
}

/** A copy of `src` that is the caller's to keep; released with `release` once written on. */
export function copyIn(src: Uint8Array): Buffer {
  const n = src.length;
  if (n < MIN_PIECE) return Buffer.from(src);
  if (n <= SLAB_BYTES) {
    if (current === undefined || SLAB_BYTES - currentUsed < n) {
      if (current !== undefined) {
        current.full = true;
        if (current.out === 0) retire(current);
      }
      current = newSlab();
      currentUsed = 0;
    }
    const at = currentUsed;
    current.buf.set(src, at);
    currentUsed += n;
    if (current.out++ === 0) outstanding++;
    pooledCopies++;
    return current.buf.subarray(at, at + n);
  }
  if (n < MIN_WHOLE || n > WHOLE_BYTES) return Buffer.from(src);
  const buf = freeWhole.pop() ?? Buffer.allocUnsafeSlow(WHOLE_BYTES);
  lent.set(buf.buffer, { buf, out: 1, full: true, whole: true });
  outstanding++;
  buf.set(src, 0);
  pooledCopies++;
  return buf.subarray(0, n);
}

/**
 * `prev` (a piece `copyIn` cut last from the current slab) grown by a copy of `src` right after
 * it, when the slab has room; undefined otherwise. The grown piece is still one piece: one
 * `release` gives it back. The receive path coalesces consecutive TLS records of one stream so.
 */
export function extendIn(prev: Buffer, src: Uint8Array): Buffer | undefined {
  const c = current;
  const n = src.length;
  if (c === undefined || prev.buffer !== c.buf.buffer || prev.byteOffset + prev.length !== currentUsed)
    return undefined;
  // Any size: appended, a small piece pins nothing the piece before it did not.
  if (SLAB_BYTES - currentUsed < n) return undefined;
  c.buf.set(src, currentUsed);
  currentUsed += n;
  pooledCopies++;
  return c.buf.subarray(prev.byteOffset, currentUsed);
}

/**
 * A copy of `src` for bytes that wait in one stream (a reader that is not taking them now): appended
 * to `prev` when `prev` is the last piece of a slab of that stream's own with room (the result then
 * replaces it), else the start of a new such slab. No other stream's bytes share the slab, so what a
 * stalled reader holds pins nothing beyond its own bytes and one partly filled slab, and the copies
 * cost no fresh allocation: fresh buffers for every waiting record were external memory enough to
 * drive a major GC every 70 ms at a middle relay in bulk (docs/benchmarks/links.md).
 */
export function appendOwn(prev: Buffer | undefined, src: Uint8Array): Buffer {
  const n = src.length;
  if (prev !== undefined) {
    const l = lent.get(prev.buffer);
    const used = l?.ownUsed;
    if (l !== undefined && used !== undefined && prev.byteOffset + prev.length === used && SLAB_BYTES - used >= n) {
      l.buf.set(src, used);
      l.ownUsed = used + n;
      pooledCopies++;
      return l.buf.subarray(prev.byteOffset, used + n);
    }
  }
  if (n > SLAB_BYTES) return Buffer.from(src);
  const buf = freeSlabs.pop() ?? Buffer.allocUnsafeSlow(SLAB_BYTES);
  // One piece, grown in place: released once, it goes back whole.
  lent.set(buf.buffer, { buf, out: 1, full: true, whole: false, ownUsed: n });
  outstanding++;
  buf.set(src, 0);
  pooledCopies++;
  return buf.subarray(0, n);
}

/**
 * The write that carried `chunk` on has completed and nothing else holds it: its buffer may be
 * reused. Anything `copyIn` did not hand out is left alone.
 */
export function release(chunk: Buffer): void {
  const l = lent.get(chunk.buffer);
  if (l === undefined || l.out === 0) return;
  l.out--;
  if (l.out > 0) return;
  outstanding--;
  if (l.full) retire(l);
}

/** Whether `chunk` came from `copyIn` and is still out. */
export function isLent(chunk: Buffer): boolean {
  return lent.has(chunk.buffer);
}

/**
 * Buffers with pieces handed out and not yet released, and copies made into reused buffers so
 * far (tests check that a finished transfer went this way and gave every buffer back).
 */
export function linkBuffersForTest(): { out: number; pooledCopies: number } {
  return { out: outstanding, pooledCopies };
}
