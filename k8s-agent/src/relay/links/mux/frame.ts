// hopway-mux/1 wire format (docs/contract/relay-protocol.md §4.1): every frame is a
// 10-byte header — type u8, flags u8, stream id u32, payload length u32, all
// big-endian — and its payload. Header maps (OPEN, REPLY) are a sequence of
// name (u8 length + bytes) and value (u16 length + bytes), printable ASCII.

export const ALPN_MUX = "hopway-mux/1";

export const HEADER_BYTES = 10;

export const FrameType = {
  SETTINGS: 0,
  OPEN: 1,
  REPLY: 2,
  DATA: 3,
  WINDOW: 4,
  RST: 5,
  PING: 6,
  PONG: 7,
  GOAWAY: 8,
} as const;

/** On OPEN, REPLY and DATA: the sender will send no more data on this stream (half-close). */
export const FLAG_FIN = 1;

/** Reset and GOAWAY codes: HTTP/2's numbers, so code reading `rstCode` treats both framings alike. */
export const Code = {
  NO_ERROR: 0,
  PROTOCOL_ERROR: 1,
  INTERNAL_ERROR: 2,
  FLOW_CONTROL_ERROR: 3,
  REFUSED_STREAM: 7,
  CANCEL: 8,
} as const;

/** A stream's send window before the peer's SETTINGS arrive (HTTP/2's default, and the configurable minimum). */
export const DEFAULT_STREAM_WINDOW = 65_535;
/** The peer's largest DATA payload before its SETTINGS arrive. */
export const DEFAULT_MAX_FRAME = 16 * 1024;
/** Largest encoded header map (OPEN, REPLY): the request line of a tunnel is small. */
export const MAX_HEADER_BLOCK = 16 * 1024;
/** Largest DATA payload this end accepts (announced in its SETTINGS). */
export const MAX_FRAME = 1 << 20;

/** Fixed payload lengths of the control frames. */
export const FIXED_LENGTH: Partial<Record<number, number>> = {
  [FrameType.SETTINGS]: 12,
  [FrameType.WINDOW]: 4,
  [FrameType.RST]: 4,
  [FrameType.PING]: 8,
  [FrameType.PONG]: 8,
  [FrameType.GOAWAY]: 8,
};

export function frameHeader(type: number, flags: number, id: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(HEADER_BYTES);
  b[0] = type;
  b[1] = flags;
  b.writeUInt32BE(id, 2);
  b.writeUInt32BE(length, 6);
  return b;
}

/** A whole control frame: header and a payload of 32-bit words. */
export function wordsFrame(type: number, id: number, words: number[]): Buffer {
  const b = Buffer.allocUnsafe(HEADER_BYTES + 4 * words.length);
  b[0] = type;
  b[1] = 0;
  b.writeUInt32BE(id, 2);
  b.writeUInt32BE(4 * words.length, 6);
  for (let i = 0; i < words.length; i++) b.writeUInt32BE((words[i] as number) >>> 0, HEADER_BYTES + 4 * i);
  return b;
}

export type HeaderMap = Record<string, string>;

/** A header's value as it goes on the wire. */
function wireValue(raw: unknown): string {
  return typeof raw === "string" ? raw : Array.isArray(raw) ? raw.join(", ") : String(raw);
}

/**
 * Bytes a header map takes encoded, `prefix` included (`omit`: a name left out); throws when a
 * name or value, or the whole block, does not fit the bounds. Measured first so the block can be
 * written straight into a frame buffer without intermediate objects.
 */
export function headerBlockLength(headers: Record<string, unknown>, prefix = 0, omit?: string): number {
  let size = prefix;
  for (const name in headers) {
    const raw = headers[name];
    if (raw === undefined || name === omit) continue;
    const n = Buffer.byteLength(name.toLowerCase(), "utf8");
    const v = Buffer.byteLength(wireValue(raw), "utf8");
    if (n === 0 || n > 255 || v > 0xffff) throw new Error(`header '${name}' is too long`);
    size += 3 + n + v;
  }
  if (size > MAX_HEADER_BLOCK) throw new Error(`header block of ${size} bytes exceeds ${MAX_HEADER_BLOCK}`);
  return size;
}

/** Writes a header map measured by `headerBlockLength` into `out` at `at`; returns where it ends. */
export function writeHeaderBlock(headers: Record<string, unknown>, out: Buffer, at: number, omit?: string): number {
  for (const name in headers) {
    const raw = headers[name];
    if (raw === undefined || name === omit) continue;
    const n = out.write(name.toLowerCase(), at + 1, "utf8");
    out[at] = n;
    at += 1 + n;
    const v = out.write(wireValue(raw), at + 2, "utf8");
    out.writeUInt16BE(v, at);
    at += 2 + v;
  }
  return at;
}

/** Encodes a header map after `prefix` bytes of room; throws when it does not fit the bounds. */
export function encodeHeaders(headers: Record<string, unknown>, prefix = 0): Buffer {
  const out = Buffer.allocUnsafe(headerBlockLength(headers, prefix));
  writeHeaderBlock(headers, out, prefix);
  return out;
}

/** Writes a frame header into `b` at `at`; returns where its payload starts. */
export function putFrameHeader(b: Buffer, at: number, type: number, flags: number, id: number, length: number): number {
  b[at] = type;
  b[at + 1] = flags;
  b.writeUInt32BE(id, at + 2);
  b.writeUInt32BE(length, at + 6);
  return at + HEADER_BYTES;
}

/** Why a header map did not decode: its structure is broken, or a name or value holds a byte outside printable ASCII. */
export type HeaderProblem = "malformed" | "not_ascii";

/** Whether `b[from, to)` is printable ASCII (0x20-0x7e; from 0x21 for a name). */
function printable(b: Buffer, from: number, to: number, low: number): boolean {
  for (let i = from; i < to; i++) {
    const c = b[i] as number;
    if (c < low || c > 0x7e) return false;
  }
  return true;
}

/**
 * Decodes a header map from `b` starting at `from`. Names and values are printable ASCII: they
 * end up in HTTP/1.1 heads written byte per character, where anything else could turn into CR or
 * LF. A map whose structure is broken is "malformed" (the link's problem); one with another byte
 * is "not_ascii" (that stream's).
 */
export function decodeHeaders(b: Buffer, from = 0): HeaderMap | HeaderProblem {
  const out: HeaderMap = Object.create(null);
  let at = from;
  let ascii = true;
  while (at < b.length) {
    const nl = b[at] as number;
    if (nl === 0 || at + 1 + nl + 2 > b.length) return "malformed";
    if (ascii && !printable(b, at + 1, at + 1 + nl, 0x21)) ascii = false;
    const name = b.toString("latin1", at + 1, at + 1 + nl);
    at += 1 + nl;
    const vl = b.readUInt16BE(at);
    at += 2;
    if (at + vl > b.length) return "malformed";
    if (ascii && !printable(b, at, at + vl, 0x20)) ascii = false;
    out[name] = b.toString("latin1", at, at + vl);
    at += vl;
  }
  return ascii ? out : "not_ascii";
}
