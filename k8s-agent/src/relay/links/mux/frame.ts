// hopway-mux/1 wire format (docs/contract/relay-protocol.md §4.1): every frame is a
// 10-byte header — type u8, flags u8, stream id u32, payload length u32, all
// big-endian — and its payload. Header maps (OPEN, REPLY) are a sequence of
// name (u8 length + bytes) and value (u16 length + bytes), UTF-8.

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

/** Encodes a header map after `prefix` bytes of room; throws when it does not fit the bounds. */
export function encodeHeaders(headers: Record<string, unknown>, prefix = 0): Buffer {
  const parts: Array<[Buffer, Buffer]> = [];
  let size = prefix;
  for (const [name, raw] of Object.entries(headers)) {
    if (raw === undefined) continue;
    const value = Array.isArray(raw) ? raw.join(", ") : String(raw);
    const n = Buffer.from(name.toLowerCase(), "utf8");
    const v = Buffer.from(value, "utf8");
    if (n.length === 0 || n.length > 255 || v.length > 0xffff) throw new Error(`header '${name}' is too long`);
    size += 3 + n.length + v.length;
    parts.push([n, v]);
  }
  if (size > MAX_HEADER_BLOCK) throw new Error(`header block of ${size} bytes exceeds ${MAX_HEADER_BLOCK}`);
  const out = Buffer.allocUnsafe(size);
  let at = prefix;
  for (const [n, v] of parts) {
    out[at++] = n.length;
    n.copy(out, at);
    at += n.length;
    out.writeUInt16BE(v.length, at);
    at += 2;
    v.copy(out, at);
    at += v.length;
  }
  return out;
}

/** Decodes a header map from `b` starting at `from`; undefined when it is malformed. */
export function decodeHeaders(b: Buffer, from = 0): HeaderMap | undefined {
  const out: HeaderMap = Object.create(null);
  let at = from;
  while (at < b.length) {
    const nl = b[at] as number;
    if (nl === 0 || at + 1 + nl + 2 > b.length) return undefined;
    const name = b.toString("utf8", at + 1, at + 1 + nl);
    at += 1 + nl;
    const vl = b.readUInt16BE(at);
    at += 2;
    if (at + vl > b.length) return undefined;
    out[name] = b.toString("utf8", at, at + vl);
    at += vl;
  }
  return out;
}
