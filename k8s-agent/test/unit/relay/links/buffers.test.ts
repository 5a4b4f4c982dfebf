// The reused buffers of the link data path: a copy is exact, a released buffer is reused, a
// piece still held is never written over, and small pieces never share a buffer.
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  appendOwn,
  copyIn,
  extendIn,
  isLent,
  linkBuffersForTest,
  release,
} from "../../../../src/relay/links/buffers.ts";
import { gc } from "../../hardening/support.ts";

describe("link buffers", () => {
  it("a slab whose pieces were all released is reused for the next copies", () => {
    const first = Array.from({ length: 4 }, () => copyIn(randomBytes(16 * 1024)));
    const slab = first[0]?.buffer;
    expect(first.every((p) => p.buffer === slab && isLent(p))).toBe(true);
    // The fifth piece does not fit: a new slab; the full one goes back once its pieces are released.
    const next = copyIn(randomBytes(16 * 1024));
    expect(next.buffer === slab).toBe(false);
    for (const p of first) release(p);
    for (let i = 0; i < 3; i++) release(copyIn(randomBytes(16 * 1024)));
    release(next);
    // Both slabs are back now: the next copy lands in one of them, not in a new one.
    const reused = copyIn(randomBytes(16 * 1024));
    expect(reused.buffer === slab || reused.buffer === next.buffer).toBe(true);
    release(reused);
  });

  it("bytes a holder has not released are never written over, whatever is copied after them", () => {
    const data = randomBytes(16 * 1024);
    const held = copyIn(data);
    // A neighbour in the same slab, released only once the slab is full: the slab still has `held` out.
    const neighbour = copyIn(randomBytes(16 * 1024));
    const later: Buffer[] = [];
    while (later.length === 0 || later.at(-1)?.buffer === held.buffer) later.push(copyIn(randomBytes(16 * 1024)));
    for (const p of later) release(p);
    release(neighbour);
    expect(isLent(held)).toBe(true);
    // Copies held for a while take fresh or freed slabs; none may be the one `held` is in.
    const more = Array.from({ length: 40 }, (_, i) => copyIn(randomBytes(12 * 1024 + i)));
    expect(held.equals(data)).toBe(true);
    for (const p of more) release(p);
    release(held);
  });

  it("copies are exact, and pieces under 4 KiB or over 256 KiB get buffers of their own", () => {
    for (const n of [1, 4095, 4096, 16 * 1024, 64 * 1024, 200 * 1024, 256 * 1024]) {
      const data = randomBytes(n);
      const c = copyIn(data);
      expect(c.equals(data)).toBe(true);
      release(c);
    }
    expect(isLent(copyIn(randomBytes(4095)))).toBe(false);
    expect(isLent(copyIn(randomBytes(300 * 1024)))).toBe(false);
    const big = copyIn(randomBytes(200 * 1024));
    expect(isLent(big)).toBe(true);
    release(big);
  });

  it("a piece grown in place stays one piece: exact bytes, one release gives its slab back, no growth past the slab", () => {
    // A fresh slab: fill the current one first.
    while (true) {
      const p = copyIn(randomBytes(16 * 1024));
      release(p);
      if (p.byteOffset === 0) break;
    }
    const out = linkBuffersForTest().out;
    const parts = [randomBytes(16 * 1024 - 10), randomBytes(9), randomBytes(16 * 1024)];
    let piece = copyIn(parts[0] as Buffer);
    for (const part of parts.slice(1)) {
      const grown = extendIn(piece, part);
      expect(grown?.buffer).toBe(piece.buffer);
      piece = grown as Buffer;
    }
    expect(piece.equals(Buffer.concat(parts))).toBe(true);
    // A piece that is not the slab's last cannot grow: the bytes after it belong to another.
    const after = copyIn(randomBytes(8 * 1024));
    expect(extendIn(piece, randomBytes(16))).toBeUndefined();
    // Nor past the slab's end.
    expect(extendIn(after, randomBytes(40 * 1024))).toBeUndefined();
    expect(linkBuffersForTest().out).toBe(out + 1);
    release(piece);
    release(after);
    expect(linkBuffersForTest().out).toBe(out);
  });

  it("a stream's waiting bytes fill a slab of its own: grown in place, shared with no other copy, back once released", () => {
    const before = linkBuffersForTest().out;
    const parts = Array.from({ length: 4 }, (_, i) => randomBytes(16 * 1024 - i));
    let piece: Buffer | undefined;
    for (const p of parts) piece = appendOwn(piece, p);
    const own = piece as Buffer;
    // One piece holding all four, exact, in one reused slab that is out once.
    expect(own.equals(Buffer.concat(parts))).toBe(true);
    expect(isLent(own)).toBe(true);
    expect(linkBuffersForTest().out).toBe(before + 1);
    // Another copy never lands in it, and what it holds is never written over.
    const other = copyIn(randomBytes(16 * 1024));
    expect(other.buffer === own.buffer).toBe(false);
    // Past the slab's room (64 KiB) the next piece starts a slab of its own.
    const next = appendOwn(own, randomBytes(16 * 1024));
    expect(next.buffer === own.buffer).toBe(false);
    // A piece that is not the slab's last (it was handed on) is never grown.
    const apart = appendOwn(own.subarray(0, 100), randomBytes(10));
    expect(apart.buffer === own.buffer).toBe(false);
    release(apart);
    expect(own.equals(Buffer.concat(parts))).toBe(true);
    release(own);
    release(next);
    release(other);
    // Released, the slab is reused: the next slab of one's own is one of those given back.
    const reused = appendOwn(undefined, randomBytes(1024));
    expect([own.buffer, next.buffer].includes(reused.buffer)).toBe(true);
    release(reused);
  });

  it("buffers whose pieces are never released (an HTTP/2 stream, a link destroyed mid-write) are not pinned", async () => {
    gc();
    const before = process.memoryUsage().arrayBuffers;
    // 200 socket-read-sized copies (a whole 256 KiB buffer each) and 800 record-sized ones, none released.
    for (let i = 0; i < 200; i++) copyIn(Buffer.alloc(200 * 1024, i));
    for (let i = 0; i < 800; i++) copyIn(Buffer.alloc(16 * 1024, i));
    // Backing stores go with the GC's finalisation, which may take a cycle or two more.
    for (let i = 0; i < 3; i++) {
      gc();
      await new Promise((resolve) => setImmediate(resolve));
    }
    // About 100 MiB were handed out; what stays must be the free lists' worth, not the lot.
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(24 * 1024 * 1024);
  });
});
