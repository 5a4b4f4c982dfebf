import { describe, expect, it } from "vitest";
import { BodyTooLarge, readBounded } from "../../src/core/bounded-body.ts";

function stream(sizes: number[]): { body: ReadableStream<Uint8Array>; cancelled: () => boolean } {
  let i = 0;
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      const n = sizes[i++];
      if (n === undefined) c.close();
      else c.enqueue(new Uint8Array(n).fill(0x62));
    },
    cancel() {
      cancelled = true;
    },
  });
  return { body, cancelled: () => cancelled };
}

describe("readBounded", () => {
  it.each([
    { sizes: [], limit: 0, length: 0 },
    { sizes: [3, 4], limit: 7, length: 7 }, // exactly at the limit is accepted
    { sizes: [1, 1, 1], limit: 100, length: 3 },
  ])("returns $length bytes from chunks $sizes under a limit of $limit", async ({ sizes, limit, length }) => {
    const bytes = await readBounded(stream(sizes).body, null, limit);
    expect(bytes.byteLength).toBe(length);
    expect(bytes.every((b) => b === 0x62)).toBe(true);
  });

  it("returns nothing for a missing body", async () => {
    expect((await readBounded(null, null, 10)).byteLength).toBe(0);
  });

  it("refuses one byte over the limit and cancels the stream", async () => {
    const s = stream([4, 4]);
    await expect(readBounded(s.body, null, 7)).rejects.toMatchObject({ name: "BodyTooLarge", bytes: 8, limit: 7 });
    expect(s.cancelled()).toBe(true);
  });

  it("refuses a declared length over the limit before reading", async () => {
    const s = stream([1]);
    const err = await readBounded(s.body, "1000", 10).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BodyTooLarge);
    expect(err).toMatchObject({ bytes: 1000, limit: 10 });
    expect(s.cancelled()).toBe(true);
  });

  it("ignores a content-length that is not a number and counts the bytes instead", async () => {
    expect((await readBounded(stream([5]).body, "junk", 5)).byteLength).toBe(5);
    await expect(readBounded(stream([6]).body, "junk", 5)).rejects.toBeInstanceOf(BodyTooLarge);
  });
});
