// A small DER (X.690 distinguished encoding) writer and reader: exactly what
// x509.ts needs to build and read ECDSA P-256 certificates, nothing more.
// Pure: no `node:*` and no Worker imports, so the edge and the agent share it.

export type Bytes = Uint8Array<ArrayBuffer>;

export class DerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DerError";
  }
}

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

export function concat(parts: readonly Uint8Array[]): Bytes {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The definite length octets: short form below 128, else 0x80|count then the big-endian bytes. */
export function encodeLength(n: number): Bytes {
  if (!Number.isSafeInteger(n) || n < 0) throw new DerError(`bad DER length ${n}`);
  if (n < 0x80) return Uint8Array.of(n);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return Uint8Array.from([0x80 | bytes.length, ...bytes]);
}

/** Reads a definite length at `at`; returns it and the offset after it. Rejects non-minimal forms (DER). */
export function decodeLength(buf: Uint8Array, at: number): { length: number; next: number } {
  const first = buf[at];
  if (first === undefined) throw new DerError("truncated: length missing");
  if (first < 0x80) return { length: first, next: at + 1 };
  const count = first & 0x7f;
  if (count === 0) throw new DerError("indefinite length is not DER");
  if (count > 6) throw new DerError("length too large");
  if (at + 1 + count > buf.length) throw new DerError("truncated: length octets");
  let length = 0;
  for (let i = 0; i < count; i++) length = length * 256 + buf[at + 1 + i]!;
  if (buf[at + 1] === 0 || length < 0x80) throw new DerError("non-minimal length encoding");
  return { length, next: at + 1 + count };
}

export function tlv(tag: number, content: Uint8Array): Bytes {
  return concat([Uint8Array.of(tag), encodeLength(content.length), content]);
}

export const seq = (...items: Uint8Array[]): Bytes => tlv(TAG.SEQUENCE, concat(items));
export const set = (...items: Uint8Array[]): Bytes => tlv(TAG.SET, concat(items));
/** [n] EXPLICIT: a constructed context tag wrapping a whole element. */
export const explicit = (n: number, inner: Uint8Array): Bytes => tlv(0xa0 | n, inner);
/** [n] IMPLICIT on a primitive type: the context tag replaces the element's own. */
export const implicitPrimitive = (n: number, content: Uint8Array): Bytes => tlv(0x80 | n, content);
export const bool = (v: boolean): Bytes => tlv(TAG.BOOLEAN, Uint8Array.of(v ? 0xff : 0));
export const octets = (b: Uint8Array): Bytes => tlv(TAG.OCTET_STRING, b);
export const utf8 = (s: string): Bytes => tlv(TAG.UTF8_STRING, new TextEncoder().encode(s));
export const bitString = (b: Uint8Array, unusedBits = 0): Bytes =>
  tlv(TAG.BIT_STRING, concat([Uint8Array.of(unusedBits), b]));

/** A non-negative INTEGER from big-endian magnitude bytes (minimal, with a 0 pad when the top bit is set). */
export function unsignedInt(magnitude: Uint8Array): Bytes {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const m = magnitude.subarray(i);
  const body = m.length === 0 ? Uint8Array.of(0) : (m[0]! & 0x80) !== 0 ? concat([Uint8Array.of(0), m]) : m;
  return tlv(TAG.INTEGER, body);
}

export function smallInt(n: number): Bytes {
  if (!Number.isSafeInteger(n) || n < 0) throw new DerError(`bad INTEGER ${n}`);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return unsignedInt(Uint8Array.from(bytes));
}

export function oid(dotted: string): Bytes {
  const arcs = dotted.split(".").map(Number);
  if (arcs.length < 2 || arcs.some((a) => !Number.isSafeInteger(a) || a < 0)) throw new DerError(`bad OID ${dotted}`);
  const out: number[] = [arcs[0]! * 40 + arcs[1]!];
  for (const arc of arcs.slice(2)) {
    const chunk: number[] = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift((v & 0x7f) | 0x80);
    out.push(...chunk);
  }
  return tlv(TAG.OID, Uint8Array.from(out));
}

export function oidToString(content: Uint8Array): string {
  if (content.length === 0) throw new DerError("empty OID");
  const first = content[0]!;
  const arcs = [Math.min(2, Math.floor(first / 40)), first - Math.min(2, Math.floor(first / 40)) * 40];
  let v = 0;
  for (const b of content.subarray(1)) {
    v = v * 128 + (b & 0x7f);
    if ((b & 0x80) === 0) {
      arcs.push(v);
      v = 0;
    }
  }
  return arcs.join(".");
}

const pad2 = (n: number) => String(n).padStart(2, "0");

/** RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; whole seconds, always Z. */
export function time(ms: number): Bytes {
  const d = new Date(Math.floor(ms / 1000) * 1000);
  const y = d.getUTCFullYear();
  const rest = `${pad2(d.getUTCMonth() + 1)}${pad2(d.getUTCDate())}${pad2(d.getUTCHours())}${pad2(d.getUTCMinutes())}${pad2(d.getUTCSeconds())}Z`;
  if (y >= 1950 && y < 2050) return tlv(TAG.UTC_TIME, new TextEncoder().encode(`${pad2(y % 100)}${rest}`));
  return tlv(TAG.GENERALIZED_TIME, new TextEncoder().encode(`${String(y).padStart(4, "0")}${rest}`));
}

export function parseTime(node: DerNode): number {
  const s = new TextDecoder().decode(node.content);
  const m =
    node.tag === TAG.UTC_TIME
      ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s)
      : node.tag === TAG.GENERALIZED_TIME
        ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s)
        : null;
  if (m === null) throw new DerError(`bad time '${s}'`);
  let year = Number(m[1]);
  if (node.tag === TAG.UTC_TIME) year += year < 50 ? 2000 : 1900;
  return Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
}

// ---- reading -------------------------------------------------------------------

export interface DerNode {
  tag: number;
  /** The whole element (tag, length, content): what a signature covers. */
  raw: Bytes;
  content: Bytes;
}

/** The element at `at` and the offset after it. */
export function readNode(buf: Bytes, at = 0): { node: DerNode; next: number } {
  const tag = buf[at];
  if (tag === undefined) throw new DerError("truncated: tag missing");
  if ((tag & 0x1f) === 0x1f) throw new DerError("multi-byte tags are not supported");
  const { length, next } = decodeLength(buf, at + 1);
  const end = next + length;
  if (end > buf.length) throw new DerError("truncated: content shorter than its length");
  return { node: { tag, raw: buf.subarray(at, end), content: buf.subarray(next, end) }, next: end };
}

/** Exactly one element filling `buf`. */
export function parseDer(buf: Bytes): DerNode {
  const { node, next } = readNode(buf, 0);
  if (next !== buf.length) throw new DerError("trailing bytes after the DER element");
  return node;
}

/** The elements inside a constructed node. */
export function children(node: DerNode): DerNode[] {
  if ((node.tag & 0x20) === 0) throw new DerError(`tag 0x${node.tag.toString(16)} is not constructed`);
  const out: DerNode[] = [];
  for (let at = 0; at < node.content.length; ) {
    const r = readNode(node.content, at);
    out.push(r.node);
    at = r.next;
  }
  return out;
}

export function expectTag(node: DerNode | undefined, tag: number, what: string): DerNode {
  if (node === undefined) throw new DerError(`${what} missing`);
  if (node.tag !== tag)
    throw new DerError(`${what}: expected tag 0x${tag.toString(16)}, got 0x${node.tag.toString(16)}`);
  return node;
}

// ---- PEM -----------------------------------------------------------------------

export function toBase64(bytes: Uint8Array): string {
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

export function fromBase64(text: string): Bytes {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function toPem(label: string, der: Uint8Array): string {
  const b64 = toBase64(der);
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/** Every PEM block labelled `label` in `text`, in order, as DER. */
export function pemBlocks(text: string, label: string): Bytes[] {
  const out: Bytes[] = [];
  const re = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]*?)-----END ${label}-----`, "g");
  for (const m of text.matchAll(re)) {
    try {
      out.push(fromBase64(m[1]!.replace(/\s+/g, "")));
    } catch {
      throw new DerError(`a ${label} PEM block is not valid base64`);
    }
  }
  return out;
}

export function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}
