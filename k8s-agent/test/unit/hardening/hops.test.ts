// Relay-to-relay hops: a misconfigured cycle is refused with 508 and never
// amplified, the hop limit holds on a long chain, and a relay that cannot prove
// it belongs to the realm (no, malformed, wrong-key, expired, future, replayed
// or tampered HMAC) is refused before anything is dialed.
import { createHmac, randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { MAX_HOPS } from "../../../../src/core/schema.ts";
import { signHop } from "../../../src/relay/auth.ts";
import { hop, route } from "../relay/helpers.ts";
import { type Canary, type CountingRelay, canary, countingRelay, dial, pool, statusOf, waitFor } from "./support.ts";

const KEY = Buffer.from("realm-hop-key-for-the-hardening-suite");
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function relays(names: string[], opts: Partial<Parameters<typeof countingRelay>[0]> = {}) {
  const out: CountingRelay[] = [];
  for (const [i, name] of names.entries()) {
    const r = await countingRelay({ name, hopKey: KEY, routes: [], ...opts }, `127.0.0.${20 + i}`);
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
    // a: the client's request and the one that came round the loop; b and c: one each.
    expect([a.accepted, b.accepted, c.accepted]).toEqual([2 * N, N, N]);
    expect(x.hits).toBe(0);
    for (const r of [a, b, c]) expect(await waitFor(() => r.relay.openConnections === 0, 2000)).toBe(true);
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

/** An independent signer (the canonical string as documented in auth.ts), so a format drift is caught. */
function sign(key: Buffer, f: { relay: string; ts: number | string; nonce: string; authority: string; hops: string }) {
  const sig = createHmac("sha256", key)
    .update(`HOPWAY-HMAC-V1\n${f.relay}\n${f.ts}\n${f.nonce}\n${f.authority}\n${f.hops}`)
    .digest("hex");
  return `Hopway-HMAC relay=${f.relay}, ts=${f.ts}, nonce=${f.nonce}, sig=${sig}`;
}

describe("relay hops: only members of the realm", () => {
  it("refuses every hop that cannot prove itself, and dials nothing for it", async () => {
    const x = await target();
    const y = await target("127.0.0.2");
    const now = 2_000_000_000;
    const skew = 30;
    const [b] = (await relays(["auth-b"], { clientCidrs: [], now: () => now, maxClockSkewSeconds: skew })) as [
      CountingRelay,
    ];
    b.table.set({
      node: "auth-b",
      version: 2,
      routes: [route("auth-b", "x", [hop("x", addr(x))]), route("auth-b", "y", [hop("y", addr(y))])],
    });
    const nonce = () => randomBytes(16).toString("hex");
    const head = (authority: string, hops: string | undefined, auth: string | undefined) =>
      `CONNECT ${authority} HTTP/1.1\r\n${hops !== undefined ? `Hopway-Hops: ${hops}\r\n` : ""}${auth !== undefined ? `Proxy-Authorization: ${auth}\r\n` : ""}\r\n`;
    const good = (
      authority: string,
      hops = "auth-a",
      extra: Partial<{ ts: number; nonce: string; key: Buffer }> = {},
    ) =>
      sign(extra.key ?? KEY, { relay: "auth-a", ts: extra.ts ?? now, nonce: extra.nonce ?? nonce(), authority, hops });

    // The control: a correct hop is admitted (to y), and the library's signer agrees with ours.
    const valid = good("y");
    expect((await ask(b, head("y", "auth-a", valid))).status).toBe(200);
    expect((await ask(b, head("y", "auth-a", signHop(KEY, "auth-a", "y", "auth-a", now)))).status).toBe(200);
    expect(y.hits).toBe(2);

    const reused = nonce();
    const first = good("y", "auth-a", { nonce: reused });
    expect((await ask(b, head("y", "auth-a", first))).status).toBe(200);
    const cases: Array<[string, string]> = [
      ["no credentials, no hops", head("x", undefined, undefined)],
      ["hops without credentials", head("x", "auth-a", undefined)],
      ["a client token instead of HMAC", head("x", "auth-a", "Bearer something")],
      ["malformed HMAC", head("x", "auth-a", "Hopway-HMAC nonsense")],
      ["empty HMAC", head("x", "auth-a", "Hopway-HMAC ")],
      ["wrong key", head("x", "auth-a", good("x", "auth-a", { key: Buffer.from("another-realm-key") }))],
      ["expired", head("x", "auth-a", good("x", "auth-a", { ts: now - skew - 1 }))],
      ["from the future", head("x", "auth-a", good("x", "auth-a", { ts: now + skew + 1 }))],
      ["replayed as is", head("y", "auth-a", valid)],
      ["replayed nonce, fresh signature", head("y", "auth-a", good("y", "auth-a", { nonce: reused, ts: now - 1 }))],
      ["signed for another target", head("x", "auth-a", good("y"))],
      ["visited list tampered", head("x", "auth-a, auth-z", good("x", "auth-a"))],
      ["visited list dropped", head("x", undefined, good("x", "auth-a"))],
      ["relay name swapped", head("x", "auth-a", good("x").replace("relay=auth-a", "relay=auth-z"))],
      [
        "signature upper-cased",
        head(
          "x",
          "auth-a",
          good("x").replace(/sig=\w+/, (m) => m.toUpperCase()),
        ),
      ],
      [
        "signature truncated",
        head(
          "x",
          "auth-a",
          good("x").replace(/sig=(\w+)/, (_m, s: string) => `sig=${s.slice(2)}`),
        ),
      ],
      ["signature of zeros", head("x", "auth-a", good("x").replace(/sig=\w+/, `sig=${"0".repeat(64)}`))],
      [
        "a second credential appended",
        `${head("x", "auth-a", good("x")).slice(0, -2)}Proxy-Authorization: Bearer x\r\n\r\n`,
      ],
      [
        "fractional timestamp",
        head(
          "x",
          "auth-a",
          sign(KEY, { relay: "auth-a", ts: `${now}.5`, nonce: nonce(), authority: "x", hops: "auth-a" }),
        ),
      ],
      ["signature reused on another nonce", head("x", "auth-a", good("x").replace(/nonce=\w+/, `nonce=${nonce()}`))],
    ];
    const wrong: string[] = [];
    for (const [what, h] of cases) {
      const r = await ask(b, h);
      if (r.status !== 407) wrong.push(`${what}: ${r.status}`);
    }
    expect(wrong).toEqual([]);
    expect(x.hits).toBe(0);
    expect(y.hits).toBe(3);

    // A relay without the realm key takes no relay hops at all, even perfectly signed ones.
    const [keyless] = (await relays(["auth-c"], { hopKey: undefined, clientCidrs: [] })) as [CountingRelay];
    keyless.table.set({ node: "auth-c", version: 2, routes: [route("auth-c", "x", [hop("x", addr(x))])] });
    expect(
      (await ask(keyless, head("x", "auth-a", signHop(KEY, "auth-a", "x", "auth-a", Date.now() / 1000)))).status,
    ).toBe(407);
    expect(x.hits).toBe(0);
    console.log(
      `unauthenticated hops: ${cases.length + 1} forged, stale, replayed or tampered hops refused 407; target dialed 0 times`,
    );
  });

  it("a relay signing with another realm's key is refused by the next relay, and the client learns where", async () => {
    const x = await target();
    const [a] = (await relays(["other-a"], { hopKey: Buffer.from("a-different-realm-key-entirely") })) as [
      CountingRelay,
    ];
    const [b] = (await relays(["real-b"])) as [CountingRelay];
    b.table.set({ node: "real-b", version: 2, routes: [route("real-b", "x", [hop("x", addr(x))])] });
    a.table.set({
      node: "other-a",
      version: 2,
      routes: [route("other-a", "x", [hop("real-b", addr(b)), hop("x", addr(x))])],
    });
    const r = await ask(a, "CONNECT x HTTP/1.1\r\n\r\n");
    expect(r.status).toBe(407);
    expect(r.headers).toMatch(/Hopway-Failed-At: real-b/);
    expect(x.hits).toBe(0);
  });
});

describe("relay hops: a relay in the path fails", () => {
  it("a middle relay dying closes every tunnel through it cleanly and frees every slot upstream", async () => {
    const echo = createServer((c) => {
      c.on("error", () => {});
      c.pipe(c);
    });
    echo.listen(0, "127.0.0.1");
    await new Promise((r) => echo.once("listening", r));
    cleanups.push(() => echo.close());
    const echoAddr = `ipv4://127.0.0.1:${(echo.address() as { port: number }).port}`;
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
