// How link sockets read: both the dialled (tls.connect with LINK_ONREAD) and the accepted
// (tls.Server) side read through the relay's buffer once a session takes them, bytes that
// arrived before are handed over first and in order, and the peer's FIN still ends the socket.
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import type { TLSSocket } from "node:tls";
import { afterEach, describe, expect, it } from "vitest";
import { readLink, readsSharedForTest } from "../../../../src/relay/links/reads.ts";
import { linkTlsPair } from "./tls-pair.ts";

const cleanups: Array<() => unknown> = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

/** Collects what `readLink` hands over (copying borrowed chunks) until the socket ends. */
function collect(s: TLSSocket): { done: Promise<Buffer>; borrowed: () => number } {
  const chunks: Buffer[] = [];
  let borrowed = 0;
  readLink(s, (c, isBorrowed) => {
    if (isBorrowed) borrowed++;
    chunks.push(isBorrowed ? Buffer.from(c) : c);
  });
  return { done: once(s, "end").then(() => Buffer.concat(chunks)), borrowed: () => borrowed };
}

describe("link socket reads", () => {
  it("both sides read through the relay's buffer and every byte arrives in order", async () => {
    const { client, server } = await linkTlsPair(cleanups);
    const atServer = collect(server);
    const atClient = collect(client);
    expect(readsSharedForTest(server)).toBe(true);
    expect(readsSharedForTest(client)).toBe(true);
    const up = randomBytes(3 * 1024 * 1024 + 17);
    const down = randomBytes(2 * 1024 * 1024 + 5);
    client.end(up);
    server.end(down);
    const [gotUp, gotDown] = await Promise.all([atServer.done, atClient.done]);
    expect(createHash("sha256").update(gotUp).digest("hex")).toBe(createHash("sha256").update(up).digest("hex"));
    expect(gotDown.equals(down)).toBe(true);
    // Handed over as views of the shared buffer, one per TLS record or so, not through 'data'.
    expect(atServer.borrowed()).toBeGreaterThan(100);
    expect(atClient.borrowed()).toBeGreaterThan(50);
  });

  it("bytes that arrived before the session took the accepted socket come first", async () => {
    const { client, server } = await linkTlsPair(cleanups);
    client.write("early bytes;");
    // Let them land in the accepted socket's own buffer (it is paused until someone reads).
    server.pause();
    await new Promise((r) => setTimeout(r, 100));
    expect(server.readableLength).toBeGreaterThan(0);
    const atServer = collect(server);
    client.end(" and later ones");
    expect((await atServer.done).toString()).toBe("early bytes; and later ones");
  });
});
