// Relay-to-relay hops: a misconfigured cycle is refused with 508 and never
// amplified, the hop limit holds on a long chain, and nothing that is not a
// relay link of the realm (a plain CONNECT claiming relay hops, in any form; a
// relay certified by another CA) is carried before anything is dialed.
import { createServer } from "node:net";
import { MAX_HOPS } from "@hopway/core/schema";
import { afterEach, describe, expect, it } from "vitest";
import { staticIdentityForTest, testPki } from "../../../../test/support/identity.ts";
import { hop, linkRequest, route, startEcho, TEST_REALM } from "../relay/helpers.ts";
import {
  type Canary,
  type CountingRelay,
  canary,
  countingRelay,
  dial,
  knownRelays,
  pool,
  statusOf,
  waitFor,
} from "./support.ts";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function relays(names: string[], opts: Partial<Parameters<typeof countingRelay>[0]> = {}) {
  const out: CountingRelay[] = [];
  for (const [i, name] of names.entries()) {
    const r = await countingRelay({ name, routes: [], ...opts }, `127.0.0.${20 + i}`);
    cleanups.push(() => r.close());
    out.push(r);
  }
  return out;
}

async function target(host = "127.0.0.1"): Promise<Canary> {
  const c = await canary(host);
  cleanups.push(() => c.server.close());
  return c;
}

const addr = (r: { host: string; port: number }) => `ipv4://${r.host}:${r.port}`;

/** Sends one head and returns the answer's status and headers once the relay closed. */
async function ask(r: CountingRelay, head: string): Promise<{ status: number; headers: string }> {
  const s = dial(r.host, r.port);
  s.write(head);
  let buf = Buffer.alloc(0);
  s.on("data", (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
  });
  await new Promise((res) => s.once("close", res));
  const text = buf.toString("latin1");
  return { status: statusOf(buf) ?? 0, headers: text.slice(0, text.indexOf("\r\n\r\n")) };
}

describe("relay hops: loops and the hop limit", () => {
  it("a three-relay cycle answers 508 and each relay sees each request once (no amplification)", async () => {
    const x = await target();
    const [a, b, c] = (await relays(["loop-a", "loop-b", "loop-c"])) as [CountingRelay, CountingRelay, CountingRelay];
    // Each table sends x on to the next relay: a → b → c → a.
    const wire = (from: CountingRelay, via: CountingRelay) =>
      from.table.set({
        node: from.relay.name,
        version: 2,
        routes: [route(from.relay.name, "x", [hop(via.relay.name, addr(via)), hop("x", addr(x))])],
      });
    wire(a, b);
    wire(b, c);
    wire(c, a);
    const N = 50;
    const answers: Array<{ status: number; headers: string }> = [];
    await pool(N, 25, async () => {
      answers.push(await ask(a, "CONNECT x HTTP/1.1\r\n\r\n"));
    });
    expect(answers.every((r) => r.status === 508)).toBe(true);
    expect(answers[0]?.headers).toMatch(/Hopway-Failed-At: loop-a/);
    // a: the clients, plus the one link the loop came back on; b and c: one link each, shared by every request.
    expect([a.accepted, b.accepted, c.accepted]).toEqual([N + 1, 1, 1]);
    expect(x.hits).toBe(0);
    // Nothing is left open but the one link each relay accepted.
    for (const r of [a, b, c]) {
      expect(await waitFor(() => r.relay.activeTunnels === 0 && r.relay.openConnections === 1, 2000)).toBe(true);
    }
    console.log(
      `loop a→b→c→a: ${N} requests answered 508; connections accepted a=${a.accepted} b=${b.accepted} c=${c.accepted} (no amplification), target dialed 0 times`,
    );
  });

  it("two relays pointing at each other: 508, one connection per hop", async () => {
    const x = await target();
    const [a, b] = (await relays(["pp-a", "pp-b"])) as [CountingRelay, CountingRelay];
    a.table.set({ node: "pp-a", version: 2, routes: [route("pp-a", "x", [hop("pp-b", addr(b)), hop("x", addr(x))])] });
    b.table.set({ node: "pp-b", version: 2, routes: [route("pp-b", "x", [hop("pp-a", addr(a)), hop("x", addr(x))])] });
    expect((await ask(a, "CONNECT x HTTP/1.1\r\n\r\n")).status).toBe(508);
    // The client's connection and the link back from pp-b at pp-a; the link from pp-a at pp-b.
    expect([a.accepted, b.accepted, x.hits]).toEqual([2, 1, 0]);
  });

  it(`a chain longer than ${MAX_HOPS} hops is cut with 508; a short chain works`, async () => {
    const x = await target();
    const names = Array.from({ length: 11 }, (_, i) => `chain-${i}`);
    const rs = await relays(names);
    const chain = (length: number) => {
      for (let i = 0; i < rs.length; i++) {
        const r = rs[i] as CountingRelay;
        const next = rs[i + 1];
        const hops =
          i + 1 < length && next ? [hop(next.relay.name, addr(next)), hop("x", addr(x))] : [hop("x", addr(x))];
        r.table.set({ node: r.relay.name, version: 10 + length, routes: [route(r.relay.name, "x", hops)] });
      }
    };
    chain(rs.length);
    const long = await ask(rs[0] as CountingRelay, "CONNECT x HTTP/1.1\r\n\r\n");
    expect(long.status).toBe(508);
    expect(long.headers).toMatch(/hop limit/);
    const reached = rs.filter((r) => r.accepted > 0).length;
    expect(reached).toBeLessThanOrEqual(MAX_HOPS);
    expect(x.hits).toBe(0);
    chain(4);
    const s = dial(rs[0]?.host as string, rs[0]?.port as number);
    s.write("CONNECT x HTTP/1.1\r\n\r\n");
    const first = await new Promise<Buffer>((res) => s.once("data", res));
    expect(statusOf(first)).toBe(200);
    expect(first.toString()).toMatch(/Hopway-Path: chain-0, chain-1, chain-2, chain-3/);
    s.destroy();
    expect(x.hits).toBe(1);
    console.log(
      `hop limit: an 11-relay chain stopped after ${reached} relays (limit ${MAX_HOPS}) with 508; a 4-relay chain connects`,
    );
  });
});

describe("relay hops: only members of the realm", () => {
  it("refuses every plain CONNECT that claims to be a relay hop, and dials nothing for it", async () => {
    const x = await target();
    const echo = await startEcho();
    cleanups.push(() => echo.server.close());
    const echoAddr = `ipv4://127.0.0.1:${echo.port}`;
    knownRelays.push("auth-a"); // a relay of the realm that only speaks through linkRequest below
    const [b] = (await relays(["auth-b"], { clientCidrs: [] })) as [CountingRelay];
    b.table.set({
      node: "auth-b",
      version: 2,
      routes: [route("auth-b", "x", [hop("x", addr(x))]), route("auth-b", "y", [hop("y", echoAddr)])],
    });
    const head = (hops: string | undefined, auth: string | undefined) =>
      `CONNECT x HTTP/1.1\r\n${hops !== undefined ? `Hopway-Hops: ${hops}\r\n` : ""}${auth !== undefined ? `Proxy-Authorization: ${auth}\r\n` : ""}\r\n`;
    // What the retired realm-wide hop key looked like on the wire, well-formed or not.
    const hmac = `Hopway-HMAC relay=auth-a, ts=${Math.floor(Date.now() / 1000)}, nonce=${"ab".repeat(16)}, sig=${"0".repeat(64)}`;
    const cases: Array<[string, string]> = [
      ["no credentials, no hops", head(undefined, undefined)],
      ["hops without credentials", head("auth-a", undefined)],
      ["a client token with hops", head("auth-a", "Bearer something-long-enough")],
      ["a well-formed HMAC", head("auth-a", hmac)],
      ["an HMAC without hops", head(undefined, hmac)],
      ["malformed HMAC", head("auth-a", "Hopway-HMAC nonsense")],
      ["empty HMAC", head("auth-a", "Hopway-HMAC ")],
      ["hops in lower case", "CONNECT x HTTP/1.1\r\nhopway-hops: auth-a\r\n\r\n"],
      ["hops twice", "CONNECT x HTTP/1.1\r\nHopway-Hops: auth-a\r\nHopway-Hops: auth-z\r\n\r\n"],
    ];
    const wrong: string[] = [];
    for (const [what, h] of cases) {
      const r = await ask(b, h);
      if (r.status !== 407) wrong.push(`${what}: ${r.status}`);
    }
    expect(wrong).toEqual([]);
    expect(x.hits).toBe(0);

    // The control: a stream on a link from a relay of the realm is carried.
    const ok = await linkRequest(b.port, "auth-a", "y", "auth-a", b.host);
    expect(ok.headers[":status"]).toBe(200);
    ok.close();

    // A relay without an identity takes no relay hops at all: a link is not even recognised.
    const [bare] = (await relays(["auth-c"], { identity: undefined, clientCidrs: [] })) as [CountingRelay];
    bare.table.set({ node: "auth-c", version: 2, routes: [route("auth-c", "x", [hop("x", addr(x))])] });
    await expect(linkRequest(bare.port, "auth-a", "x", "auth-a", bare.host)).rejects.toThrow();
    expect(x.hits).toBe(0);
    console.log(`relay claims on plain CONNECT: ${cases.length} forms refused 407; their target dialed 0 times`);
  });

  it("a relay certified by another CA is refused by the next relay, and the client learns where", async () => {
    const x = await target();
    const foreign = testPki(TEST_REALM, "foreign").issue("other-a");
    // It trusts the realm's CA, so only its own certificate gives it away.
    const identity = staticIdentityForTest({ ...foreign, trustBundle: [testPki(TEST_REALM).caCert] });
    const [a] = (await relays(["other-a"], { identity })) as [CountingRelay];
    const [b] = (await relays(["real-b"])) as [CountingRelay];
    b.table.set({ node: "real-b", version: 2, routes: [route("real-b", "x", [hop("x", addr(x))])] });
    a.table.set({
      node: "other-a",
      version: 2,
      routes: [route("other-a", "x", [hop("real-b", addr(b)), hop("x", addr(x))])],
    });
    const r = await ask(a, "CONNECT x HTTP/1.1\r\n\r\n");
    expect(r.status).toBe(502);
    expect(r.headers).toMatch(/Hopway-Failed-At: other-a/);
    expect(x.hits).toBe(0);
  });
});

describe("relay hops: a relay in the path fails", () => {
  it("a middle relay dying closes every tunnel through it cleanly and frees every slot upstream", async () => {
    const echo = await startEcho();
    cleanups.push(() => echo.server.close());
    const echoAddr = `ipv4://127.0.0.1:${echo.port}`;
    const [a, b] = (await relays(["mid-a", "mid-b"])) as [CountingRelay, CountingRelay];
    b.table.set({ node: "mid-b", version: 2, routes: [route("mid-b", "app", [hop("app", echoAddr)])] });
    a.table.set({
      node: "mid-a",
      version: 2,
      routes: [route("mid-a", "app", [hop("mid-b", addr(b)), hop("app", echoAddr)])],
    });
    const N = 40;
    const clients = await Promise.all(
      Array.from({ length: N }, async () => {
        const s = dial(a.host, a.port);
        s.write("CONNECT app HTTP/1.1\r\n\r\n");
        const first = await new Promise<Buffer>((res) => s.once("data", res));
        expect(statusOf(first)).toBe(200);
        return s;
      }),
    );
    expect(a.relay.activeTunnels).toBe(N);
    const t0 = performance.now();
    const closed = clients.map((s) => new Promise<number>((res) => s.once("close", () => res(performance.now() - t0))));
    // mid-b goes away (its process dies: every socket it holds is gone).
    b.relay.destroyAll();
    await b.close();
    const times = await Promise.all(closed);
    expect(await waitFor(() => a.relay.activeTunnels === 0 && a.relay.openConnections === 0, 2000)).toBe(true);
    // New tunnels now fail fast with 502 naming where, instead of hanging.
    const after = await ask(a, "CONNECT app HTTP/1.1\r\n\r\n");
    expect(after.status).toBe(502);
    expect(after.headers).toMatch(/Hopway-Failed-At: mid-a/);
    console.log(
      `middle relay failure: ${N} tunnels through it closed within ${Math.max(...times).toFixed(0)} ms, upstream relay back to 0 open; new tunnels 502`,
    );
    expect(Math.max(...times)).toBeLessThan(1000);
  });

  it("a next relay that accepts and then hangs up before answering is a 502, not a hang", async () => {
    const x = await target();
    const rude = createServer((c) => {
      c.once("data", () => c.destroy());
    });
    rude.listen(0, "127.0.0.1");
    await new Promise((r) => rude.once("listening", r));
    cleanups.push(() => rude.close());
    const [a] = (await relays(["rude-a"])) as [CountingRelay];
    const rudeAddr = `ipv4://127.0.0.1:${(rude.address() as { port: number }).port}`;
    a.table.set({
      node: "rude-a",
      version: 2,
      routes: [route("rude-a", "x", [hop("rude-b", rudeAddr), hop("x", addr(x))])],
    });
    const t0 = performance.now();
    const r = await ask(a, "CONNECT x HTTP/1.1\r\n\r\n");
    expect(r.status).toBe(502);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(await waitFor(() => a.relay.openConnections === 0, 1000)).toBe(true);
  });
});
