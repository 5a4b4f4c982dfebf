// How link sockets read: both the dialled (tls.connect with LINK_ONREAD) and the accepted
// (tls.Server) side read through the relay's buffer once a session takes them, bytes that
// arrived before are handed over first and in order, and the peer's FIN still ends the socket.
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { connect, createServer, type TLSSocket } from "node:tls";
import { afterEach, describe, expect, it } from "vitest";
import { testPki } from "../../../../../test/support/identity.ts";
import { LINK_ONREAD, readLink, readsSharedForTest } from "../../../../src/relay/links/reads.ts";

const cleanups: Array<() => unknown> = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

const pki = testPki("reads-test");
const a = pki.issue("a");
const b = pki.issue("b");

async function pair(): Promise<{ client: TLSSocket; server: TLSSocket }> {
  let accepted: (s: TLSSocket) => void = () => {};
  const got = new Promise<TLSSocket>((r) => {
    accepted = r;
  });
  const srv = createServer(
    { key: a.key, cert: a.certChain, ca: a.trustBundle, requestCert: true, minVersion: "TLSv1.3" },
    (s) => accepted(s),
  );
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  cleanups.push(() => srv.close());
  // As the link pool dials (tls.connect takes `onread`; @types/node does not declare it).
  const options = {
    host: "127.0.0.1",
    port: (srv.address() as AddressInfo).port,
    key: b.key,
    cert: b.certChain,
    ca: b.trustBundle,
    checkServerIdentity: () => undefined,
    onread: LINK_ONREAD,
  };
  const client = connect(options);
  cleanups.push(() => client.destroy());
  await once(client, "secureConnect");
  const server = await got;
  cleanups.push(() => server.destroy());
  return { client, server };
}

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
    const { client, server } = await pair();
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
    const { client, server } = await pair();
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
