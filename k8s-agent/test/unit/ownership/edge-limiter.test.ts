// Key-affine CONNECTs for groups the agent does not hold must not turn into one
// edge request each. A real relay on loopback resolves `CONNECT g:8080` +
// Hopway-Key through the MembershipFollower against a fake edge (node:http)
// that counts every request and how many are in flight at once.
import { once } from "node:events";
import { createServer } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { ExpiringCache, TokenBucket } from "../../../src/ownership/edge-limiter.ts";
import { keyTargetResolver, MembershipFollower } from "../../../src/ownership/index.ts";
import { type CountingRelay, countingRelay, dial, pool, statusOf } from "../hardening/support.ts";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function countingEdge(delayMs: number) {
  const stats = { requests: 0, inFlight: 0, maxInFlight: 0 };
  const server = createServer((req, res) => {
    stats.requests++;
    stats.inFlight++;
    stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
    req.resume();
    setTimeout(() => {
      stats.inFlight--;
      res.writeHead(404, { "content-type": "application/json" });
      res.end('{"error":{"code":"unknown_node","message":"no such group"}}');
    }, delayMs);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  cleanups.push(() => {
    server.closeAllConnections();
    server.close();
  });
  return { stats, url: `http://127.0.0.1:${(server.address() as { port: number }).port}` };
}

/** One CONNECT; resolves with the answer's status and error code once the relay closed. */
function connectOnce(r: CountingRelay, group: string): Promise<{ status: number; code: string; ms: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const s = dial(r.host, r.port);
    let buf = Buffer.alloc(0);
    s.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
    });
    s.once("close", () => {
      const code = /hopway-error: (\S+)/i.exec(buf.toString("latin1"))?.[1] ?? "";
      resolve({ status: statusOf(buf) ?? 0, code, ms: performance.now() - started });
    });
    s.write(`CONNECT ${group}:8080 HTTP/1.1\r\nHopway-Key: user%3A42\r\n\r\n`);
  });
}

async function relayWithFollower(url: string, limits: { ratePerSecond: number; burst: number }) {
  const follower = new MembershipFollower({
    url,
    realm: "r",
    token: "t",
    pollMs: 60_000,
    edgeLimits: { ...limits, negativeTtlMs: 30_000, errorTtlMs: 1_000 },
  });
  await follower.start();
  cleanups.push(() => follower.stop());
  const r = await countingRelay({ name: "relay-k", routes: [], resolveTarget: keyTargetResolver(follower) });
  cleanups.push(() => r.close());
  return r;
}

describe("key look-ups towards the edge are bounded", () => {
  it("2,000 tunnels for one unknown group cost the edge one request", async () => {
    const edge = await countingEdge(50);
    const r = await relayWithFollower(edge.url, { ratePerSecond: 10, burst: 20 });
    const statuses = new Map<number, number>();
    await pool(2_000, 200, async () => {
      const a = await connectOnce(r, "ghost");
      statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
    });
    console.log(`one unknown group: 2000 tunnels → ${edge.stats.requests} edge request(s); answers`, [...statuses]);
    expect(edge.stats.requests).toBe(1);
    expect(statuses.get(404)).toBe(2_000);
  });

  it("2,000 tunnels for 2,000 unknown groups stay within the rate; the excess gets 503 over_capacity at once", async () => {
    // A slow edge: whatever waited on it would take 1.5 s.
    const edge = await countingEdge(1_500);
    const r = await relayWithFollower(edge.url, { ratePerSecond: 10, burst: 20 });
    const started = performance.now();
    const answers: Array<{ status: number; code: string; ms: number }> = [];
    await pool(2_000, 200, async (i) => {
      answers.push(await connectOnce(r, `ghost-${i}`));
    });
    const seconds = (performance.now() - started) / 1000;
    const over = answers.filter((a) => a.status === 503 && a.code === "over_capacity");
    const notFound = answers.filter((a) => a.status === 404);
    const overMs = over.map((a) => a.ms).sort((x, y) => x - y);
    const p50 = overMs[Math.floor(overMs.length / 2)] ?? 0;
    const p99 = overMs[Math.floor(overMs.length * 0.99)] ?? 0;
    console.log(
      `2000 unknown groups in ${seconds.toFixed(2)} s: ${edge.stats.requests} edge requests ` +
        `(max ${edge.stats.maxInFlight} in flight), 404×${notFound.length}, 503 over_capacity×${over.length} ` +
        `(p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms)`,
    );
    expect(edge.stats.requests).toBeLessThanOrEqual(20 + Math.ceil(10 * seconds) + 1);
    expect(edge.stats.maxInFlight).toBeLessThanOrEqual(20 + Math.ceil(10 * seconds) + 1);
    expect(notFound.length).toBe(edge.stats.requests);
    expect(over.length + notFound.length).toBe(2_000);
    // Refused at once, not queued behind the edge (which takes 1.5 s per answer).
    expect(p99).toBeLessThan(1_000);
  });

  it("token bucket and negative cache keep to their numbers", () => {
    let now = 0;
    const bucket = new TokenBucket(10, 3, () => now);
    expect([bucket.take(), bucket.take(), bucket.take(), bucket.take()]).toEqual([true, true, true, false]);
    now += 100; // one token back at 10/s
    expect([bucket.take(), bucket.take()]).toEqual([true, false]);
    const cache = new ExpiringCache<number>(2, () => now);
    cache.set("a", 1, 1000);
    cache.set("b", 2, 1000);
    cache.set("c", 3, 1000); // over 2 entries: the oldest goes
    expect([cache.get("a"), cache.get("b"), cache.get("c")]).toEqual([undefined, 2, 3]);
    now += 1000;
    expect(cache.get("b")).toBeUndefined();
  });
});
