// How a link's TLS socket hands decrypted bytes to its session. Node's default read path
// gives JavaScript each TLS record (16 KiB) as a fresh buffer through the socket's Readable
// machinery ('data'); with `onread` the TLS layer copies each record into one buffer the
// relay owns and calls the session directly. On one TLS 1.3 leg that took the receiver's
// CPU per MiB down by about a third (bench/tls-leg.ts; docs/benchmarks/links.md, "Where the
// bulk CPU goes"). The buffer is read into again after the callback returns, so a session
// copies what must outlive the call (the mux parser copies DATA payloads, see mux/session.ts).
import { type OnReadOpts, Socket } from "node:net";
import { onreadSlots } from "../pump.ts";

/** One buffer for every link socket: the event loop delivers one read at a time and each is consumed before the next. */
const SHARED = Buffer.allocUnsafeSlow(64 * 1024);

/**
 * What a session does with bytes read: `borrowed` means `chunk` is a view of a buffer read into
 * again after the call (copy what must outlive it); otherwise the chunk is the session's to keep.
 */
export type LinkReader = (chunk: Buffer, borrowed: boolean) => void;

const READER = Symbol("hopway.linkReader");
type LinkSocket = Socket & { [READER]?: LinkReader | undefined };

function onRead(this: LinkSocket, n: number, buf: Uint8Array): boolean {
  const r = this[READER];
  // Before a session takes the socket nothing arrives (the peer speaks after the handshake), but
  // were it to, dropping it would corrupt the link: keep a copy for the session.
  if (r !== undefined) r((buf as Buffer).subarray(0, n), true);
  else {
    const early = this as LinkSocket & { early?: Buffer[] };
    early.early ??= [];
    early.early.push(Buffer.from(buf.subarray(0, n)));
  }
  // A link never pauses its socket: each stream has its own credit (docs/contract/relay-protocol.md §4.2).
  return true;
}

/** `onread` for `tls.connect` (the dialling side): the socket reads into the shared buffer from the start. */
export const LINK_ONREAD: OnReadOpts = { buffer: SHARED, callback: onRead };

interface SocketInternals {
  _handle?: { useUserBuffer?: (buffer: Uint8Array) => void } | null;
}

/** This Node's `onread` slots (pump.ts), checked on a socket made with LINK_ONREAD; undefined when they are not as expected. */
const SLOTS = ((): { buffer: symbol; callback: symbol } | undefined => {
  const probe = new Socket({ onread: LINK_ONREAD }) as Socket & Record<symbol, unknown>;
  const slots = onreadSlots(probe);
  probe.destroy();
  if (slots === undefined || probe[slots.buffer] !== SHARED || probe[slots.callback] !== onRead) return undefined;
  return slots;
})();

/** Whether the socket reads through LINK_ONREAD now. */
function readsShared(s: Socket): boolean {
  return SLOTS !== undefined && (s as Socket & Record<symbol, unknown>)[SLOTS.buffer] === SHARED;
}

/**
 * Hands what `socket` reads to `reader`, from now on. A socket dialled with LINK_ONREAD already
 * reads into the shared buffer. An accepted one (tls.Server has no `onread` option) is switched
 * as the Socket constructor does with the option: Node's `onread` slots on the socket, then the
 * TLS handle told to read into the buffer (`useUserBuffer`). That leans on Node internals, so
 * every assumption is checked first, and a socket where one fails reads through 'data' as before.
 * Whatever the socket buffered before the switch is handed over first, in order.
 */
export function readLink(socket: Socket, reader: LinkReader): void {
  const s = socket as LinkSocket & SocketInternals & Record<symbol, unknown>;
  const early: Buffer[] = [];
  for (let c = s.read() as Buffer | null; c !== null; c = s.read() as Buffer | null) early.push(c);
  const handle = s._handle;
  if (!readsShared(s) && SLOTS !== undefined && handle != null && typeof handle.useUserBuffer === "function") {
    if (s[SLOTS.buffer] == null) {
      s[SLOTS.buffer] = SHARED;
      s[SLOTS.callback] = onRead;
      handle.useUserBuffer(SHARED);
    }
  }
  for (const c of early) reader(c, false);
  const pending = (s as { early?: Buffer[] }).early;
  if (pending !== undefined) {
    (s as { early?: Buffer[] }).early = undefined;
    for (const c of pending) reader(c, false);
  }
  if (readsShared(s)) s[READER] = reader;
  else s.on("data", (c: Buffer) => reader(c, false));
  // Flowing, so 'end' is emitted; with `onread` no 'data' event comes.
  s.resume();
}

/** Whether a socket reads through the shared buffer (tests check that both sides of a link do). */
export function readsSharedForTest(socket: Socket): boolean {
  return readsShared(socket);
}
