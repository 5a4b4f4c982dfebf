// The dialling side's bookkeeping on its own: a dial that fails before it starts gives back its
// place among the links held with that neighbour (max_links_per_peer), and a link that goes
// before it proved itself counts as a failed dial (docs/links.md, "The link pool").
import { once } from "node:events";
import { createServer, type Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { afterEach, describe, expect, it } from "vitest";
import { relayIdentityForTest } from "../../../../../test/support/identity.ts";
import { ALPN_MUX } from "../../../../src/relay/links/mux/frame.ts";
import { MuxSession, type MuxStream } from "../../../../src/relay/links/mux/session.ts";
import { DEFAULT_LINK_SETTINGS, type LinkSettings } from "../../../../src/relay/links/options.ts";
import { type LinkOpen, LinkPool } from "../../../../src/relay/links/pool.ts";
import { ALPN_H2 } from "../../../../src/relay/links/tls.ts";
import { LINK_PROTOCOLS, TEST_REALM, tlsNeighbourForTest, until } from "../helpers.ts";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

it("a dial that cannot start (a key that does not match its certificate) fails as such and holds no link place", async () => {
  const good = relayIdentityForTest(TEST_REALM, "r2");
  const other = relayIdentityForTest(TEST_REALM, "r3").material();
  const identity = relayIdentityForTest(TEST_REALM, "r2");
  const material = good.material();
  if (material === undefined || other === undefined) throw new Error("no test identity");
  identity.set({ ...material, key: other.key });
  const reached: Socket[] = [];
  const srv = createServer((s) => {
    reached.push(s);
    s.destroy();
  });
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  cleanups.push(() => srv.close());
  const port = (srv.address() as { port: number }).port;
  const logs: string[] = [];
  const pool = new LinkPool({
    name: "r2",
    realm: TEST_REALM,
    identity,
    settings: { ...DEFAULT_LINK_SETTINGS, maxLinksPerPeer: 3, redialInitialMs: 1, redialMaxMs: 1 },
    log: (_level, msg, fields) => logs.push(`${msg} ${String(fields.reason ?? "")}`),
  });
  cleanups.push(() => pool.destroyAll());
  const addr = { address: `ipv4://127.0.0.1:${port}`, host: "127.0.0.1", port, path: "" };
  const open = () =>
    new Promise<string>((resolve) => pool.open("r3", addr, "x:1", "", (r) => resolve(r.ok ? "ok" : (r.detail ?? ""))));
  for (let i = 0; i < 5; i++) {
    const detail = await open();
    expect(detail).not.toContain("peer_streams_exhausted");
    await new Promise((r) => setTimeout(r, 3));
  }
  expect(logs.filter((l) => l === "link dial failed tls_handshake").length).toBeGreaterThanOrEqual(1);
  // The operator fixes the key: the next tunnel dials again rather than finding every place taken.
  identity.set(material);
  await open();
  expect(reached.length).toBeGreaterThan(0);
});

/**
 * A neighbour "r3" with a valid certificate of the realm that speaks `alpn` (hopway-mux/1 unless
 * given), so a dial to it completes; `onLink` gets every TLS connection it accepts, numbered from 0.
 */
async function neighbour(
  onLink: (socket: TLSSocket, n: number) => void,
  alpn: string = ALPN_MUX,
): Promise<{ port: number; links: () => number }> {
  let links = 0;
  const server = await tlsNeighbourForTest("r3", alpn, (socket) => onLink(socket, links++));
  cleanups.push(server.close);
  return { port: server.port, links: () => links };
}

/** Runs an accepting hopway-mux/1 session on `socket`, handing each stream to `answer`. */
function accept(socket: TLSSocket, answer: (stream: MuxStream) => void): MuxSession {
  const session = new MuxSession(socket, "server", { maxConcurrentStreams: 100, streamWindowBytes: 65_535 });
  session.on("error", () => {});
  session.on("stream", (stream: MuxStream) => {
    stream.on("error", () => {});
    answer(stream);
  });
  cleanups.push(() => session.destroy());
  return session;
}

/** A pool of relay r2 dialling r3 at `port`; `r.value` is what its backoff draws. */
function poolTo(port: number, settings: Partial<LinkSettings>, r: { value: number }) {
  const failures: string[] = [];
  const warnings: Array<{ msg: string } & Record<string, unknown>> = [];
  const pool = new LinkPool({
    name: "r2",
    realm: TEST_REALM,
    identity: relayIdentityForTest(TEST_REALM, "r2"),
    settings: { ...DEFAULT_LINK_SETTINGS, ...settings },
    observer: { linkOpened: () => {}, linkFailed: (side, reason) => failures.push(`${side} ${reason}`) },
    log: (level, msg, fields) => {
      if (level === "warn") warnings.push({ msg, ...fields });
    },
    random: () => r.value,
  });
  cleanups.push(() => pool.destroyAll());
  const address = `ipv4://127.0.0.1:${port}`;
  const addr = { address, host: "127.0.0.1", port, path: "" };
  const open = () => new Promise<LinkOpen>((resolve) => pool.open("r3", addr, "app1:1", "r2", resolve));
  return { pool, open, failures, warnings, address };
}

describe("link pool: a link that goes before it proved itself", () => {
  it.each(LINK_PROTOCOLS)(
    "a neighbour that completes the handshake and drops the link at once is backed off as after a failed dial (%s)",
    async (protocol) => {
      const r3 = await neighbour((socket) => socket.destroy(), protocol === "mux" ? ALPN_MUX : ALPN_H2);
      const r = { value: 0 };
      const { pool, open, failures, warnings, address } = poolTo(
        r3.port,
        { protocol, redialInitialMs: 10_000, redialMaxMs: 60_000 },
        r,
      );
      // Drawing 0, each dial may go at once: every drop counts, one more failure each.
      for (let i = 1; i <= 2; i++) {
        const dropped = await open();
        expect(dropped).toMatchObject({ ok: false, final: false });
        await until(`link ${i} to go`, () => pool.linksByPeer().size === 0);
        expect(r3.links()).toBe(i);
      }
      // The third drop draws near its bound (10 s × 2² here): the next tunnel fails without a handshake.
      r.value = 0.99;
      await open();
      await until("link 3 to go", () => pool.linksByPeer().size === 0);
      const refused = await open();
      expect(refused.ok ? "" : refused.detail).toContain("backing off after a failed dial");
      expect(refused).toMatchObject({ ok: false, final: false });
      expect(r3.links()).toBe(3);
      expect(pool.handshakes).toBe(3);
      expect(pool.failingPeers()).toEqual(new Set(["r3"]));
      expect(failures).toEqual(Array(3).fill("dial closed_early"));
      expect(warnings).toHaveLength(3);
      expect(warnings[0]).toMatchObject({ msg: "link dial failed", peer: "r3", address, reason: "closed_early" });
    },
  );

  it("a neighbour that answers a stream on each link and then drops it is backed off all the same", async () => {
    const r3 = await neighbour((socket) => {
      accept(socket, (stream) => {
        stream.respond({ ":status": 403 }, { endStream: true });
        setTimeout(() => socket.destroy(), 20);
      });
    });
    // The first drop draws 0 (the next dial may go at once), the second near its bound.
    const r = { value: 0 };
    const { pool, open, failures } = poolTo(r3.port, { redialInitialMs: 10_000, redialMaxMs: 60_000 }, r);
    expect(await open()).toMatchObject({ ok: false, final: true, status: 403 });
    await until("link 0 to go", () => pool.linksByPeer().size === 0);
    expect(pool.failingPeers()).toEqual(new Set(["r3"]));
    r.value = 0.99;
    expect(await open()).toMatchObject({ ok: false, final: true, status: 403 });
    await until("link 1 to go", () => pool.linksByPeer().size === 0);
    const refused = await open();
    expect(refused.ok ? "" : refused.detail).toContain("backing off after a failed dial (closed_early: link closed");
    expect(r3.links()).toBe(2);
    expect(pool.handshakes).toBe(2);
    expect(failures).toEqual(["dial closed_early", "dial closed_early"]);
  });

  it("a link up for redial_max_ms is proven without an answer, and links this relay closes never count", async () => {
    const r3 = await neighbour((socket, n) => {
      // Link 0 holds its stream unanswered past redial_max_ms, then drops; link 1 resets its stream
      // (no answer), so this relay closes it when idle; link 2 carries.
      if (n === 0) setTimeout(() => socket.destroy(), 300);
      else if (n === 1) accept(socket, (stream) => stream.destroy());
      else accept(socket, (stream) => stream.respond({ ":status": 200 }));
    });
    const r = { value: 0.99 };
    const { pool, open, failures } = poolTo(r3.port, { redialInitialMs: 150, redialMaxMs: 150, idleTimeoutMs: 50 }, r);
    const held = await open();
    expect(held).toMatchObject({ ok: false, final: false, detail: "link to r3 closed before it answered" });
    await until("link 0 to go", () => pool.linksByPeer().size === 0);
    const reset = await open();
    expect(reset).toMatchObject({ ok: false, final: true });
    await until("link 1 to close when idle", () => pool.linksByPeer().size === 0);
    const carried = await open();
    expect(carried.ok).toBe(true);
    expect(r3.links()).toBe(3);
    // Link 1's GOAWAY answers the one this relay sent when idle: no failure of the peer either.
    expect(failures).not.toContain("dial closed_early");
    expect(failures).not.toContain("dial goaway");
  });
});
