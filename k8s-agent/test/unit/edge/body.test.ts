import { describe, expect, it } from "vitest";
import { EdgeResponseTooLargeError, HttpStatusError, readJson, readText, statusError } from "../../../src/edge/body.ts";

/** A body of `chunks` chunks of `size` bytes, with no content-length, that records how much was pulled. */
function streamed(chunks: number, size: number): { res: Response; pulled: () => number; cancelled: () => boolean } {
  let sent = 0;
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent === chunks) return controller.close();
      sent++;
      controller.enqueue(new Uint8Array(size).fill(0x61));
    },
    cancel() {
      cancelled = true;
    },
  });
  return { res: new Response(body), pulled: () => sent, cancelled: () => cancelled };
}

describe("reading edge responses with a cap", () => {
  it("returns bodies up to the limit whole", async () => {
    const { res } = streamed(4, 1000);
    expect(await readText(res, 4000)).toBe("a".repeat(4000));
    expect(await readJson(new Response('{"ok":true}'), 100)).toEqual({ ok: true });
  });

  it("stops reading a streamed body just past the limit and cancels it", async () => {
    const s = streamed(1000, 1024);
    const err = await readText(s.res, 10 * 1024).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EdgeResponseTooLargeError);
    expect((err as EdgeResponseTooLargeError).code).toBe("HOPWAY_EDGE_RESPONSE_TOO_LARGE");
    // Pulled at most a chunk or two beyond the limit (the stream may read ahead by its queue), not all 1,000.
    expect(s.pulled()).toBeLessThanOrEqual(13);
    expect(s.cancelled()).toBe(true);
  });

  it("refuses a declared content-length over the limit without reading the body", async () => {
    const s = streamed(1000, 1024);
    const res = new Response(s.res.body, { headers: { "content-length": String(1000 * 1024) } });
    await expect(readText(res, 4096)).rejects.toMatchObject({ code: "HOPWAY_EDGE_RESPONSE_TOO_LARGE", bytes: 1024000 });
    expect(s.pulled()).toBeLessThanOrEqual(1);
  });

  it("quotes the start of an error body, and only says so when it is too large to quote", async () => {
    const small = await statusError(new Response('{"error":{"code":"forbidden"}}', { status: 403 }));
    expect(small).toBeInstanceOf(HttpStatusError);
    expect(small.status).toBe(403);
    expect(small.message).toContain('edge answered 403: {"error":{"code":"forbidden"}}');
    const big = await statusError(new Response(streamed(100, 1024).res.body, { status: 502 }));
    expect(big.message).toBe("edge answered 502: (body too large to quote)");
  });
});
