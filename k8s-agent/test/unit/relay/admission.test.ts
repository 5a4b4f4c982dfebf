// Connection slots before authentication. Relay B is held by 2,000 idle sockets
// from unauthenticated sources (outside client_cidrs, no token) that reconnect as
// soon as they are dropped, while legitimate traffic keeps coming: hops from
// relay A (over a link, from a source outside client_cidrs), local clients (by
// client_cidrs) and token clients. Those unauthenticated sockets wait in a small
// handshake pool of their own and never take the tunnel pool's slots.
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { Admission, type AdmissionLimits } from "../../../src/relay/admission.ts";
import { type CountingRelay, countingRelay, SOURCES } from "../hardening/support.ts";
import { hop, readAnswer, route, sleep, startEcho, startRelay, until } from "./helpers.ts";

const TOKEN = "client-token-for-the-admission-suite";

/** Limits of a pool of 10 with every other cap and rate off (0), but for `set`. */
const limitsWith = (set: Partial<AdmissionLimits>): AdmissionLimits => ({
  maxConnections: 10,
  maxHandshakes: 10,
  maxHandshakesPerSource: 0,
  maxConnectionsPerSource: 0,
  maxConnectionsPerNamespace: 0,
  maxLinksPerNamespace: 0,
  namespaceStreamsPerSecond: 0,
  namespaceStreamBurst: 1,
  linkHandshakesPerSourcePerSecond: 0,
  linkHandshakeBurstPerSource: 1,
  ...set,
});
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const addr = (r: { host: string; port: number }) => `ipv4://${r.host}:${r.port}`;

/** One tunnel through `via` to the echo app: true when it answered 200 and echoed. */
async function attempt(via: CountingRelay, appPort: number, extra: string, localAddress?: string): Promise<boolean> {
  const s = connect({ host: via.host, port: via.port, ...(localAddress ? { localAddress } : {}) });
  s.on("error", () => {});
  try {
    s.write(`CONNECT app:${appPort} HTTP/1.1\r\n${extra}\r\n`);
    const a = await Promise.race([
      readAnswer(s),
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 5_000).unref()),
    ]);
    if (a?.status !== 200) return false;
    s.resume();
    s.write("ping");
    const [back] = (await Promise.race([
      once(s, "data"),
      new Promise<[Buffer]>((r) => setTimeout(() => r([Buffer.alloc(0)]), 5_000).unref()),
    ])) as [Buffer];
    return back.toString() === "ping";
  } catch {
    return false;
  } finally {
    s.destroy();
  }
}

describe("admission: unauthenticated handshakes have their own pool", () => {
  it("with 2,000 unauthenticated sockets held, ≥ 99 % of relay hops and clients still get through", async () => {
    const app = await startEcho();
    cleanups.push(() => app.server.close());
    const appAddr = `ipv4://127.0.0.1:${app.port}`;
    const limits = {
      // The tunnel pool is smaller than the flood: counted at accept, the flood would fill it.
      maxConnections: 1_000,
      maxHandshakes: 256,
      handshakeTimeoutMs: 1_000,
      headerTimeoutMs: 10_000,
    };
    const b = await countingRelay(
      {
        name: "relay-b",
        clientCidrs: ["127.0.0.2/32"],
        clientTokens: [TOKEN],
        limits,
        routes: [route("relay-b", "app", [hop("app", appAddr)])],
      },
      "127.0.0.52",
    );
    // A's hops to B leave from 127.0.0.1: outside B's client_cidrs, so they handshake like the flood.
    const a = await countingRelay(
      {
        name: "relay-a",
        routes: [route("relay-a", "app", [hop("relay-b", addr(b)), hop("app", appAddr)])],
      },
      "127.0.0.51",
    );
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );

    // The flood: 2,000 sockets over 32 source addresses (62-63 each, under the per-source
    // handshake cap), never sending a byte, each reopened 500 ms after it is closed.
    // Bounded: at most 100,000 connects, and it stops when the legitimate traffic is done.
    const FLOOD = 2_000;
    const held = new Set<Socket>();
    let stop = false;
    let opened = 0;
    const open = (source: string) => {
      if (stop || opened >= 100_000) return;
      opened++;
      const s = connect({ host: b.host, port: b.port, localAddress: source });
      held.add(s);
      s.on("error", () => {});
      s.on("close", () => {
        held.delete(s);
        setTimeout(() => open(source), 500);
      });
    };
    cleanups.push(() => {
      stop = true;
      for (const s of held) s.destroy();
    });
    for (let i = 0; i < FLOOD; i++) open(SOURCES[i % SOURCES.length] as string);
    await new Promise((r) => setTimeout(r, 500));

    let peakRss = process.memoryUsage().rss;
    let peakHandshakes = 0;
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
      peakHandshakes = Math.max(peakHandshakes, b.relay.pendingHandshakes);
    }, 50);
    cleanups.push(() => clearInterval(sampler));

    const kinds = {
      "hop via relay A": () => attempt(a, app.port, ""),
      "local client of B": () => attempt(b, app.port, "", "127.0.0.2"),
      "token client of B": () => attempt(b, app.port, `Proxy-Authorization: Bearer ${TOKEN}\r\n`, "127.0.0.3"),
    };
    const results: Record<string, { ok: number; failed: number }> = {};
    const started = performance.now();
    const connectsAtStart = opened;
    // Each kind keeps opening tunnels for 3 s (and at least 30 times), so the flood is
    // measured against a steady stream whatever the machine's speed.
    const MIN_MS = 3_000;
    const MIN_PER_KIND = 30;
    await Promise.all(
      Object.entries(kinds).map(async ([kind, run]) => {
        const r = { ok: 0, failed: 0 };
        results[kind] = r;
        while (performance.now() - started < MIN_MS || r.ok + r.failed < MIN_PER_KIND) {
          if (await run()) r.ok++;
          else r.failed++;
          await new Promise((res) => setTimeout(res, 10));
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const heldAtEnd = held.size;
    const connectsAtEnd = opened;
    stop = true;
    clearInterval(sampler);
    const ok = Object.values(results).reduce((n, r) => n + r.ok, 0);
    const total = Object.values(results).reduce((n, r) => n + r.ok + r.failed, 0);
    const rssMiB = peakRss / (1024 * 1024);
    console.log(
      `admission: ${ok}/${total} legitimate tunnels in ${seconds.toFixed(1)} s (${JSON.stringify(results)}) ` +
        `while ${FLOOD} unauthenticated sockets kept reconnecting (${connectsAtEnd - connectsAtStart} connects meanwhile, ` +
        `${heldAtEnd} open at the end); ` +
        `handshake pool peak ${peakHandshakes}/${limits.maxHandshakes}; peak RSS ${rssMiB.toFixed(0)} MiB (test process, flood included)`,
    );
    expect(ok / total).toBeGreaterThanOrEqual(0.99);
    // The flood kept coming the whole time: every flood socket was dropped and reopened
    // during the legitimate traffic, on average more than once.
    expect(connectsAtEnd - connectsAtStart).toBeGreaterThan(FLOOD);
    expect(connectsAtEnd).toBeLessThan(100_000);
    expect(peakHandshakes).toBeLessThanOrEqual(limits.maxHandshakes);
    expect(peakHandshakes).toBeGreaterThan(limits.maxHandshakes / 2); // the flood really filled the pool
    expect(rssMiB).toBeLessThan(512);
  }, 90_000);

  it("one source alone holds at most max_handshakes_per_source handshakes; the rest get 503 at once", async () => {
    const b = await countingRelay(
      { name: "relay-b", clientCidrs: ["127.0.0.2/32"], limits: { maxHandshakesPerSource: 16 }, routes: [] },
      "127.0.0.53",
    );
    cleanups.push(() => b.close());
    const sockets: Socket[] = [];
    cleanups.push(() => {
      for (const s of sockets) s.destroy();
    });
    const answers: Promise<number>[] = [];
    for (let i = 0; i < 100; i++) {
      const s = connect({ host: b.host, port: b.port, localAddress: "127.0.0.77" });
      s.on("error", () => {});
      sockets.push(s);
      answers.push(
        new Promise((resolve) => {
          let buf = "";
          s.on("data", (d: Buffer) => {
            buf += d.toString("latin1");
          });
          s.once("close", () => resolve(Number(/^HTTP\/1\.1 (\d+)/.exec(buf)?.[1] ?? 0)));
          setTimeout(() => resolve(-1), 1_500).unref();
        }),
      );
    }
    const statuses = await Promise.all(answers);
    const refused = statuses.filter((s) => s === 503).length;
    const open = statuses.filter((s) => s === -1).length;
    console.log(`one source, 100 idle sockets: ${refused} refused 503 at once, ${open} still waiting`);
    expect(refused).toBe(84);
    expect(open).toBe(16);
    expect(b.relay.pendingHandshakes).toBe(16);
  });
});

describe("admission: which handshake goes when the pool is full", () => {
  const limits = limitsWith({ maxHandshakes: 2 });
  // Admission only keys on the socket objects; plain objects stand in for them here.
  const fake = () => ({}) as Socket;

  it("the oldest silent peer, so an idle flood never pushes out a relay in its TLS handshake", () => {
    const pool = new Admission(limits);
    const relayHello = fake();
    const idle1 = fake();
    const idle2 = fake();
    expect(pool.enter(relayHello, "10.0.0.1", false)).toBeUndefined();
    pool.spoke(relayHello);
    expect(pool.enter(idle1, "10.0.0.2", false)).toBeUndefined();
    expect(pool.enter(idle2, "10.0.0.3", false)).toBe(idle1);
    expect(pool.enter(fake(), "10.0.0.4", false)).toBe(idle2);
    expect(pool.promote(relayHello)).toBe(true);
  });

  it("the oldest one when every peer has spoken; a rekeyed socket stays in the pool as its new object", () => {
    const pool = new Admission(limits);
    const first = fake();
    const second = fake();
    pool.enter(first, "10.0.0.1", false);
    pool.spoke(first);
    pool.enter(second, "10.0.0.2", false);
    pool.spoke(second);
    const adopted = fake();
    pool.rekey(second, adopted);
    expect(pool.enter(fake(), "10.0.0.3", false)).toBe(first);
    expect(pool.promote(adopted)).toBe(true);
    expect(pool.promote(second)).toBe(false);
  });
});

describe("admission: a tenant's share of the tunnel pool", () => {
  const fake = () => ({}) as Socket;
  const limits = limitsWith({ maxConnectionsPerNamespace: 3 });
  /** A link from a tenant's relay, verified and taken into the tunnel pool. */
  const link = (pool: Admission, tenant: string | undefined): Socket | undefined => {
    const s = fake();
    pool.enter(s, "10.0.0.1", false);
    if (pool.tenantLinkRefusal(tenant) !== undefined || !pool.promote(s, tenant)) {
      pool.release(s);
      return undefined;
    }
    return s;
  };

  it("links and streams of one tenant count together; other tenants and the operator's relays are not held back", () => {
    const pool = new Admission(limits);
    const l1 = link(pool, "tenant-a");
    expect(l1).toBeDefined();
    expect(pool.takeStream("tenant-a")).toBeUndefined();
    expect(pool.takeStream("tenant-a")).toBeUndefined();
    expect(pool.heldBy("tenant-a")).toBe(3);
    // Its fourth place, as a stream or as a link, is refused, naming the namespace and the setting.
    expect(pool.takeStream("tenant-a")).toBe("tenant");
    expect(pool.tenantRefusal("tenant-a")).toBe(
      "namespace 'tenant-a' holds its limit of 3 connections (max_connections_per_namespace)",
    );
    expect(link(pool, "tenant-a")).toBeUndefined();
    expect(pool.authenticated).toBe(3);
    // Another tenant has its own share; streams of no tenant count only in the pool.
    expect(pool.takeStream("tenant-b")).toBeUndefined();
    for (let i = 0; i < 6; i++) expect(pool.takeStream(undefined)).toBeUndefined();
    expect(pool.authenticated).toBe(10);
    // The pool is full: the answer says so, whoever asks.
    expect(pool.takeStream("tenant-b")).toBe("full");
    expect(pool.takeStream(undefined)).toBe("full");
    // What a tenant gives back, it can take again; the link's place goes with its socket.
    pool.releaseStream(undefined);
    pool.release(l1 as Socket);
    expect(pool.heldBy("tenant-a")).toBe(2);
    pool.release(l1 as Socket);
    expect(pool.heldBy("tenant-a")).toBe(2);
    expect(pool.authenticated).toBe(8);
    expect(pool.takeStream("tenant-a")).toBeUndefined();
    expect(pool.takeStream("tenant-a")).toBe("tenant");
    pool.releaseStream("tenant-a");
    pool.releaseStream("tenant-a");
    pool.releaseStream("tenant-a");
    expect(pool.heldBy("tenant-a")).toBe(0);
  });

  it("max_links_per_namespace bounds a tenant's links within its share; its streams still take the rest", () => {
    const pool = new Admission({ ...limits, maxConnectionsPerNamespace: 5, maxLinksPerNamespace: 2 });
    const l1 = link(pool, "tenant-a");
    const l2 = link(pool, "tenant-a");
    expect(pool.linksHeldBy("tenant-a")).toBe(2);
    expect(pool.tenantLinkRefusal("tenant-a")).toBe(
      "namespace 'tenant-a' holds its limit of 2 links (max_links_per_namespace)",
    );
    expect(link(pool, "tenant-a")).toBeUndefined();
    // Streams are not links: they take the share's other three places.
    for (let i = 0; i < 3; i++) expect(pool.takeStream("tenant-a")).toBeUndefined();
    expect(pool.takeStream("tenant-a")).toBe("tenant");
    // Another tenant has its own links; a link that closes gives its place back.
    expect(link(pool, "tenant-b")).toBeDefined();
    pool.releaseStream("tenant-a");
    pool.release(l1 as Socket);
    expect(pool.linksHeldBy("tenant-a")).toBe(1);
    expect(link(pool, "tenant-a")).toBeDefined();
    pool.release(l2 as Socket);
    expect(pool.linksHeldBy("tenant-a")).toBe(1);
  });

  it("0 turns the share off: one tenant may then hold the whole pool", () => {
    const pool = new Admission({ ...limits, maxConnectionsPerNamespace: 0 });
    for (let i = 0; i < 10; i++) expect(pool.takeStream("tenant-a")).toBeUndefined();
    expect(pool.takeStream("tenant-a")).toBe("full");
  });
});

describe("admission: a refused handshake gives its slot back at once", () => {
  /** A connection from `source`, not yet answered. */
  const from = async (port: number, source: string): Promise<Socket> => {
    const s = connect({ host: "127.0.0.1", port, localAddress: source, allowHalfOpen: true });
    s.on("error", () => {});
    await once(s, "connect");
    return s;
  };
  /** Whether the relay answered `s` (or closed it) within `ms`. */
  const answeredWithin = (s: Socket, ms: number) =>
    new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), ms);
      s.once("data", () => {
        clearTimeout(t);
        resolve(true);
      });
      s.once("close", () => {
        clearTimeout(t);
        resolve(true);
      });
    });

  it("peers that keep sending after their 400 hold no handshake slot, and their sockets close on time", async () => {
    const app = await startEcho();
    const r = await startRelay({
      name: "relay-b",
      clientCidrs: ["127.0.0.2/32"],
      clientTokens: [TOKEN],
      limits: { maxHandshakes: 8, maxHandshakesPerSource: 4, handshakeTimeoutMs: 10_000 },
      routes: [route("relay-b", "app", [hop("app", `ipv4://127.0.0.1:${app.port}`)])],
    });
    cleanups.push(
      () => app.server.close(),
      () => r.close(),
    );
    const sockets: Socket[] = [];
    cleanups.push(() => {
      for (const s of sockets) s.destroy();
    });
    // Four peers of one source (its whole per-source share) send a bad head, read their 400,
    // then send a byte every 100 ms and never close.
    const zombies: Socket[] = [];
    for (let i = 0; i < 4; i++) {
      const s = await from(r.port, "127.0.0.81");
      sockets.push(s);
      zombies.push(s);
      s.write("BAD\r\n\r\n");
      expect((await readAnswer(s)).status).toBe(400);
    }
    const trickle = setInterval(() => {
      for (const s of zombies) if (!s.destroyed) s.write("x");
    }, 100);
    cleanups.push(() => clearInterval(trickle));
    // The answers freed their places: in the pool (and hopway_relay_handshakes_pending) and the source's share.
    expect(r.relay.pendingHandshakes).toBe(0);
    const silent: Socket[] = [];
    for (let i = 0; i < 4; i++) silent.push(await from(r.port, "127.0.0.81"));
    sockets.push(...silent);
    expect(await Promise.all(silent.map((s) => answeredWithin(s, 200)))).toEqual([false, false, false, false]);
    expect(r.relay.pendingHandshakes).toBe(4);
    // Two seconds after its answer, plus the sweep's eighth of it: closed, however it keeps sending.
    await until("the refused peers closed", () => zombies.every((s) => s.destroyed), 3_000);
    // Their close released nothing twice: the source's share is still full.
    const fifth = await from(r.port, "127.0.0.81");
    sockets.push(fifth);
    const fifthAnswer = await Promise.race([readAnswer(fifth), sleep(1_000).then(() => undefined)]);
    expect(fifthAnswer?.status).toBe(503);
    expect(fifthAnswer?.body).toContain("at its limit of 4 unauthenticated handshakes");
    expect(r.relay.pendingHandshakes).toBe(4);
  });

  it("a peer answered 408 for its silence holds no handshake slot while it keeps sending", async () => {
    const r = await startRelay({
      name: "relay-b",
      clientCidrs: ["127.0.0.2/32"],
      limits: { handshakeTimeoutMs: 200 },
      routes: [],
    });
    cleanups.push(() => r.close());
    const s = await from(r.port, "127.0.0.83");
    cleanups.push(() => s.destroy());
    await sleep(20);
    expect(r.relay.pendingHandshakes).toBe(1);
    expect((await readAnswer(s)).status).toBe(408);
    // It starts sending only once refused, and never reads nor closes.
    const trickle = setInterval(() => {
      if (!s.destroyed) s.write("x");
    }, 100);
    cleanups.push(() => clearInterval(trickle));
    await sleep(150);
    expect(s.destroyed).toBe(false);
    expect(r.relay.pendingHandshakes).toBe(0);
    await until("the refused peer closed", () => s.destroyed, 3_000);
    await until("the connection released", () => r.relay.openConnections === 0, 1_000);
  });
});

describe("admission: a refusal leaves the handshake pool once", () => {
  it("refused then closed: the pool and the source's counts go down once", () => {
    const pool = new Admission(limitsWith({ maxHandshakes: 4, maxHandshakesPerSource: 1, maxConnectionsPerSource: 2 }));
    const a = {} as Socket;
    pool.enter(a, "10.0.0.1", false);
    expect(pool.refusal("10.0.0.1", false)).toContain("unauthenticated handshakes");
    pool.refused(a);
    expect(pool.pendingHandshakes).toBe(0);
    // Its place in the pool is free; it still counts against its source until it closes.
    expect(pool.refusal("10.0.0.1", false)).toBeUndefined();
    const b = {} as Socket;
    pool.enter(b, "10.0.0.1", false);
    expect(pool.refusal("10.0.0.1", false)).toContain("at its limit of 2 connections");
    pool.release(a);
    expect(pool.pendingHandshakes).toBe(1);
    expect(pool.refusal("10.0.0.1", false)).toContain("unauthenticated handshakes");
    pool.release(b);
    expect(pool.pendingHandshakes).toBe(0);
    expect(pool.refusal("10.0.0.1", false)).toBeUndefined();
  });
});

describe("admission: a tenant's stream rate", () => {
  const limits = (perSecond: number, burst: number) =>
    limitsWith({ namespaceStreamsPerSecond: perSecond, namespaceStreamBurst: burst });
  /** How many of `n` openings by `tenant` at `at` (ms) pass. */
  const opens = (pool: Admission, tenant: string | undefined, n: number, at: number) =>
    Array.from({ length: n }, () => pool.streamRateRefusal(tenant, at)).filter((w) => w === undefined).length;

  it("a burst at once, then the rate; the refusal says when one would pass", () => {
    const pool = new Admission(limits(10, 5));
    expect(opens(pool, "tenant-a", 8, 1_000)).toBe(5);
    expect(pool.streamRateRefusal("tenant-a", 1_000)).toBe(100);
    expect(pool.streamRateRefusal("tenant-a", 1_050)).toBe(50);
    // 100 ms later one more has refilled, and only one.
    expect(opens(pool, "tenant-a", 3, 1_100)).toBe(1);
    // A quiet second refills the whole burst, never more.
    expect(opens(pool, "tenant-a", 9, 3_000)).toBe(5);
  });

  it("each tenant has its own bucket; the operator's relays and the relay's own namespace have none", () => {
    const pool = new Admission(limits(1, 2));
    expect(opens(pool, "tenant-a", 10, 0)).toBe(2);
    expect(opens(pool, "tenant-b", 10, 0)).toBe(2);
    expect(opens(pool, undefined, 1_000, 0)).toBe(1_000);
  });

  it("0 turns the rate off", () => {
    const pool = new Admission(limits(0, 1));
    expect(opens(pool, "tenant-a", 10_000, 0)).toBe(10_000);
  });

  it("past 1,024 tenants, full buckets are forgotten and a tenant short of its burst keeps its bucket", () => {
    const pool = new Admission(limits(1, 3));
    expect(opens(pool, "busy", 5, 0)).toBe(3);
    // Tenants one at a time, 10 ms apart: each bucket is full again 1 s (100 tenants) after its one take.
    for (let i = 0; i < 5_000; i++) pool.streamRateRefusal(`t${i}`, (i + 1) * 10);
    expect(pool.streamRateBucketsForTest()).toBeLessThanOrEqual(1_025);
    // Every bucket here is one take short of full: none may go, or its tenant would get a new burst.
    const busy = new Admission(limits(1, 3));
    expect(opens(busy, "busy", 3, 0)).toBe(3);
    for (let i = 0; i < 2_000; i++) busy.streamRateRefusal(`t${i}`, 500);
    expect(busy.streamRateBucketsForTest()).toBe(2_001);
    expect(opens(busy, "busy", 3, 500)).toBe(0);
  });
});

describe("admission: TLS handshakes per source address", () => {
  const pool = (perSecond: number, burst: number) =>
    new Admission(limitsWith({ linkHandshakesPerSourcePerSecond: perSecond, linkHandshakeBurstPerSource: burst }));
  const starts = (p: Admission, source: string | undefined, n: number, at: number) =>
    Array.from({ length: n }, () => p.handshakeRateRefusal(source, at)).filter((w) => w === undefined).length;

  it("a burst, then the rate, per address; a unix-socket peer and a rate of 0 are never limited", () => {
    const p = pool(20, 4);
    expect(starts(p, "10.0.0.1", 10, 0)).toBe(4);
    expect(p.handshakeRateRefusal("10.0.0.1", 0)).toBe(50);
    expect(starts(p, "10.0.0.2", 10, 0)).toBe(4);
    expect(starts(p, "10.0.0.1", 10, 100)).toBe(2);
    expect(starts(p, undefined, 1_000, 0)).toBe(1_000);
    expect(starts(pool(0, 1), "10.0.0.1", 1_000, 0)).toBe(1_000);
  });

  it("stays within 10,000 addresses under a flood from as many, and a flooding address stays refused", () => {
    const p = pool(1, 2);
    expect(starts(p, "2001:db8::1", 5, 0)).toBe(2);
    for (let i = 0; i < 30_000; i++) p.handshakeRateRefusal(`2001:db8:1::${i.toString(16)}`, 10);
    expect(p.handshakeBucketsForTest()).toBeLessThanOrEqual(10_000);
    // Refused again at once: it was the most recent user of its bucket when it last tried.
    const q = pool(1, 2);
    expect(starts(q, "2001:db8::1", 5, 0)).toBe(2);
    for (let i = 0; i < 9_000; i++) q.handshakeRateRefusal(`2001:db8:1::${i.toString(16)}`, 10);
    expect(starts(q, "2001:db8::1", 5, 10)).toBe(0);
  });
});
