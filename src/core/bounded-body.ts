// Reading an HTTP body (a web stream) under a byte cap, for the edge (request
// bodies) and the agent (the edge's answers): a peer that declares or sends
// more than the cap costs one refused body, never memory for all of it.

export class BodyTooLarge extends Error {
  constructor(
    /** Bytes declared (content-length) or read so far when the cap was passed. */
    readonly bytes: number,
    readonly limit: number,
  ) {
    super(`body of ${bytes}+ bytes exceeds the ${limit}-byte limit`);
    this.name = "BodyTooLarge";
  }
}

/** The whole body, or BodyTooLarge as soon as the declared length or the bytes read pass `limit`. */
export async function readBounded(
  body: ReadableStream<Uint8Array> | null,
  contentLength: string | null,
  limit: number,
): Promise<Uint8Array> {
  const declared = contentLength === null ? Number.NaN : Number(contentLength);
  if (declared > limit) {
    await body?.cancel();
    throw new BodyTooLarge(declared, limit);
  }
  if (body === null) return new Uint8Array(0);
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      throw new BodyTooLarge(size, limit);
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.byteLength;
  }
  return bytes;
}
