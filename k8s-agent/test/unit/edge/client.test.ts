import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RouteTable } from "@hopway/core/wire";
import { describe, expect, it } from "vitest";
import { EdgeResponseTooLargeError } from "../../../src/edge/body.ts";
import { backoffDelay, EdgeClient, renewDelay } from "../../../src/edge/client.ts";
import { FakeClock } from "./fake-clock.ts";
import { linesLogger } from "./lines-logger.ts";

function table(version: number): RouteTable {
  return {
    node: "relay-a",
    version,
    routes: [
      {
        from: "relay-a",
        to: "app1",
        hops: [{ node: "app1", address: "ipv4://127.0.0.1:1", priority: 1, alternatives: [] }],
      },
    ],
  };
}

function deferred<T>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

function jsonResponse(body: unknown, etag: string): Response {
  return new Response(JSON.stringify(body), { status: 200, headers: { "content-type": "application/json", etag } });
}

function client(fetchFn: typeof fetch, extra: Partial<ConstructorParameters<typeof EdgeClient>[0]> = {}) {
  const applied: number[] = [];
  const c = new EdgeClient({
    url: "http://edge.invalid",
    realm: "r",
    token: "t",
    node: "relay-a",
    records: [],
    leaseSeconds: 30,
    waitSeconds: 10,
    onTable: (t) => applied.push(t.version),
    fetch: fetchFn,
    clock: new FakeClock(),
    ...extra,
  });
  return { c, applied };
}

describe("edge client", () => {
  it("hands on the trust bundle of each route table, from the edge and from disk (docs/identity.md)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hopway-edge-client-"));
    const bundles: string[][] = [];
    const withBundle = { ...table(2), trust_bundle: ["CA-1", "CA-2"] };
    const a = client(async () => jsonResponse(withBundle, '"2"'), {
      dataDir: dir,
      onTrustBundle: (b) => bundles.push(b),
    });
    expect(await a.c.fetchTableOnce(0)).toBe("updated");
    expect(bundles).toEqual([["CA-1", "CA-2"]]);
    await a.c.flush();
    // An older edge sends no bundle: nothing is handed on.
    const b = client(async () => jsonResponse(table(3), '"3"'), { onTrustBundle: (x) => bundles.push(x) });
    await b.c.fetchTableOnce(0);
    expect(bundles).toHaveLength(1);
    const c = client(
      async () => {
        throw new TypeError("fetch failed");
      },
      { dataDir: dir, onTrustBundle: (x) => bundles.push(x) },
    );
    expect(await c.c.loadPersisted()).toBe(true);
    expect(bundles).toEqual([
      ["CA-1", "CA-2"],
      ["CA-1", "CA-2"],
    ]);
  });

  it("never moves the table version backwards, whatever order responses arrive in", async () => {
    const answers = [deferred<Response>(), deferred<Response>(), deferred<Response>()];
    let i = 0;
    const { c, applied } = client(async () => (answers[i++] as ReturnType<typeof deferred<Response>>).promise);
    const calls = [c.fetchTableOnce(0), c.fetchTableOnce(0), c.fetchTableOnce(0)];
    // The newest answer arrives first, then two stale ones.
    answers[1]?.resolve(jsonResponse(table(7), '"7"'));
    await calls[1];
    answers[0]?.resolve(jsonResponse(table(5), '"5"'));
    answers[2]?.resolve(jsonResponse(table(6), '"6"'));
    expect(await calls[0]).toBe("unchanged");
    expect(await calls[2]).toBe("unchanged");
    expect(applied).toEqual([7]);
    expect(c.version).toBe(7);
  });

  it("fails a request whose answer is over the body cap and keeps the table it has", async () => {
    const replies = [
      jsonResponse(table(1), '"1"'),
      // 65 MiB declared: over MAX_EDGE_BODY_BYTES.
      new Response("{}", { headers: { "content-length": String(65 * 1024 * 1024) } }),
    ];
    const { c, applied } = client(async () => replies.shift() as Response);
    expect(await c.fetchTableOnce(0)).toBe("updated");
    await expect(c.fetchTableOnce(0)).rejects.toBeInstanceOf(EdgeResponseTooLargeError);
    expect(applied).toEqual([1]);
    expect(c.version).toBe(1);
  });

  it("long-polls with the ETag of the table in use and treats 304 as confirmation", async () => {
    const seen: Array<{ url: string; inm: string | null }> = [];
    const replies = [jsonResponse(table(3), '"v3"'), new Response(null, { status: 304 })];
    const { c } = client(async (input, init) => {
      seen.push({ url: String(input), inm: new Headers(init?.headers).get("if-none-match") });
      return replies.shift() as Response;
    });
    expect(await c.fetchTableOnce(10)).toBe("updated");
    expect(await c.fetchTableOnce(10)).toBe("unchanged");
    expect(seen[0]).toEqual({ url: "http://edge.invalid/v1/realms/r/route-tables/relay-a", inm: null });
    expect(seen[1]).toEqual({ url: "http://edge.invalid/v1/realms/r/route-tables/relay-a?wait=10", inm: '"v3"' });
    expect(c.reachable).toBe(true);
  });

  it("persists the last good table atomically and starts from it without the edge", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hopway-edge-client-"));
    const a = client(async () => jsonResponse(table(4), '"4"'), { dataDir: dir });
    await a.c.fetchTableOnce(0);
    await a.c.flush();
    expect(readdirSync(dir)).toEqual(["route-table.json"]); // no temp file left behind
    expect(JSON.parse(readFileSync(join(dir, "route-table.json"), "utf8")).table.version).toBe(4);
    const b = client(
      async () => {
        throw new TypeError("fetch failed");
      },
      { dataDir: dir },
    );
    expect(await b.c.loadPersisted()).toBe(true);
    expect(b.applied).toEqual([4]);
    await expect(b.c.fetchTableOnce(0)).rejects.toThrow("fetch failed");
    expect(b.c.version).toBe(4);
  });

  it("serves a table persisted by an earlier agent but fetches it again in full: its ETag would hide fields it dropped", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hopway-edge-client-"));
    const write = (extra: Record<string, unknown>) =>
      writeFileSync(
        join(dir, "route-table.json"),
        JSON.stringify({ table: table(4), etag: '"e.4"', saved_at: 1, ...extra }),
      );
    for (const [extra, inm] of [
      [{}, null], // an earlier agent's file: no format
      [{ format: 1 }, null],
      [{ format: 2 }, '"e.4"'], // this release's: the 304 stands
    ] as const) {
      write(extra);
      const seen: Array<string | null> = [];
      const { c, applied } = client(
        async (_input, init) => {
          seen.push(new Headers(init?.headers).get("if-none-match"));
          return new Response(null, { status: 304 });
        },
        { dataDir: dir },
      );
      expect(await c.loadPersisted()).toBe(true);
      expect(applied).toEqual([4]);
      await c.fetchTableOnce(0).catch(() => undefined);
      expect(seen, JSON.stringify(extra)).toEqual([inm]);
    }
  });

  it("retries a failing edge with capped, fully jittered backoff and reports it unreachable", async () => {
    const clock = new FakeClock();
    let calls = 0;
    const reach: boolean[] = [];
    const { c } = client(
      async () => {
        calls++;
        throw new TypeError("connection refused");
      },
      { clock, random: () => 0.999, backoffBaseMs: 100, backoffCapMs: 1000, onReachability: (r) => reach.push(r) },
    );
    await c.start();
    const delays: number[] = [];
    for (let k = 0; k < 6; k++) {
      await new Promise((r) => setImmediate(r));
      const d = clock.pending;
      delays.push(Math.max(...d));
      const t = clock.timers.shift();
      clock.t = t?.at ?? clock.t;
      t?.fn();
    }
    expect(delays).toEqual([99, 199, 399, 799, 999, 999]);
    expect(calls).toBeGreaterThanOrEqual(6);
    expect(reach).toEqual([false]);
    await c.stop(false);
  });
});

describe("backoff and renewal jitter", () => {
  it("spreads full-jitter delays over [0, ceiling)", () => {
    let seed = 42;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const samples = Array.from({ length: 2000 }, () => backoffDelay(5, 100, 30_000, random));
    const ceiling = 100 * 2 ** 5;
    expect(Math.max(...samples)).toBeLessThan(ceiling);
    expect(Math.min(...samples)).toBeGreaterThanOrEqual(0);
    // Roughly uniform: each quarter of the range holds about a quarter of the samples.
    for (let q = 0; q < 4; q++) {
      const n = samples.filter((s) => s >= (q * ceiling) / 4 && s < ((q + 1) * ceiling) / 4).length;
      expect(n).toBeGreaterThan(400);
      expect(n).toBeLessThan(600);
    }
    expect(backoffDelay(50, 100, 30_000, () => 0.5)).toBe(15_000);
  });

  it("renews leases at a third of the lease, ±20 %", () => {
    expect(renewDelay(30, () => 0)).toBe(8000);
    expect(renewDelay(30, () => 0.5)).toBe(10_000);
    expect(renewDelay(30, () => 0.9999)).toBe(11_999);
  });
});

describe("edge client: records the edge refuses", () => {
  const record = {
    type: "node",
    name: "relay-a",
    metadata: { namespace_name: "ns" },
  } as ConstructorParameters<typeof EdgeClient>[0]["records"][number];
  const refusal = (status: number, code: string) =>
    new Response(JSON.stringify({ error: { code, message: `refused: ${code}` } }), {
      status,
      headers: { "content-type": "application/json" },
    });
  /**
   * A fake edge where relay-a has no record yet: the agent's look-up finds none, its PUTs get
   * `put()`, and every other request `rest`.
   */
  const registering =
    (put: () => Response, rest: (url: string, init?: RequestInit) => Response | Promise<Response>): typeof fetch =>
    async (input, init) => {
      const url = String(input);
      const method = init?.method ?? "GET";
      if (url.endsWith("/nodes/relay-a") && method === "GET") return new Response("{}", { status: 404 });
      if (url.endsWith("/nodes/relay-a") && method === "PUT") return put();
      return rest(url, init);
    };

  it("a lease lost and refused on re-registering is a refused record, not a bad token, until it registers again", async () => {
    const clock = new FakeClock();
    let answer: () => Response = () => refusal(403, "quota_exceeded");
    const puts: number[] = [];
    const { c } = client(
      registering(
        () => {
          puts.push(clock.now());
          return puts.length === 1 ? new Response("{}", { status: 201 }) : answer();
        },
        (url) => {
          if (url.endsWith("/heartbeat")) return new Response("{}", { status: 404 });
          // Route tables: the edge is away for them, so the follow loop waits on the fake clock.
          throw new TypeError("fetch failed");
        },
      ),
      { records: [record], clock },
    );
    void c.start();
    for (let i = 0; i < 50 && puts.length < 1; i++) await new Promise((r) => setImmediate(r));
    expect(puts).toHaveLength(1);
    // The renewal finds the lease gone; registering again is refused for the namespace's limit.
    for (let i = 0; i < 20 && puts.length < 2; i++) {
      clock.advance(15_000);
      for (let j = 0; j < 20; j++) await new Promise((r) => setImmediate(r));
    }
    expect(puts.length).toBeGreaterThanOrEqual(2);
    expect(c.problem?.reason).toBe("record_refused");
    expect(c.problem?.message).toContain("quota_exceeded, HTTP 403");
    expect(c.authFailed).toBe(false);
    // Room again: the next renewal registers it and the problem is gone.
    answer = () => new Response("{}", { status: 201 });
    const before = puts.length;
    for (let i = 0; i < 20 && puts.length === before; i++) {
      clock.advance(15_000);
      for (let j = 0; j < 20; j++) await new Promise((r) => setImmediate(r));
    }
    expect(c.problem).toBeUndefined();
    await c.stop(false);
  });

  it("a node whose record is not registered gets no route table: the edge is reachable all the same", async () => {
    const clock = new FakeClock();
    const { log, lines } = linesLogger();
    const { c } = client(
      async () =>
        new Response(JSON.stringify({ error: { code: "unknown_node", message: "no record named 'relay-a'" } }), {
          status: 404,
          headers: { "content-type": "application/json" },
        }),
      // The top of every jittered backoff, so a growing one shows.
      { clock, log, random: () => 0.99 },
    );
    void c.start();
    for (let i = 0; i < 10; i++) {
      clock.advance(30_000);
      for (let j = 0; j < 20; j++) await new Promise((r) => setImmediate(r));
    }
    expect(c.reachable).toBe(true);
    expect(lines.filter((l) => l.includes("edge unreachable"))).toEqual([]);
    expect(lines.filter((l) => l.includes("no route table yet"))).toHaveLength(1);
    // Polled again within seconds, not after the 30 s cap of an outage's backoff.
    expect(Math.max(...clock.pending)).toBeLessThanOrEqual(4_000);
    await c.stop(false);
  });

  it("a token refused for the record's namespace stays refused while reads succeed, and the edge counts as reachable", async () => {
    const clock = new FakeClock();
    const { log, lines } = linesLogger();
    const reach: boolean[] = [];
    let puts = 0;
    let accept = false;
    const { c } = client(
      registering(
        () => {
          puts++;
          return accept ? new Response("{}", { status: 201 }) : refusal(403, "namespace_forbidden");
        },
        (_url, init) => {
          // Route-table reads with the same token succeed: the table, then a long-poll answered 304
          // every 5 s of the fake clock.
          const headers = (init?.headers ?? {}) as Record<string, string>;
          if (headers["if-none-match"] === undefined) return jsonResponse(table(1), '"t1"');
          return new Promise<Response>((resolve, reject) => {
            clock.setTimeout(() => resolve(new Response(null, { status: 304 })), 5_000);
            init?.signal?.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")));
          });
        },
      ),
      { records: [record], clock, log, onReachability: (r) => reach.push(r) },
    );
    void c.start();
    for (let i = 0; i < 12; i++) {
      clock.advance(5_000);
      for (let j = 0; j < 20; j++) await new Promise((r) => setImmediate(r));
    }
    expect(puts).toBeGreaterThanOrEqual(3);
    expect(c.authFailed).toBe(true);
    expect(c.problem?.reason).toBe("edge_unauthorized");
    expect(lines.filter((l) => l === "error edge forbidden")).toHaveLength(1);
    expect(lines).not.toContain("info edge accepts the token again");
    expect(lines.filter((l) => l.includes("registration failed"))).toEqual([]);
    // The edge answered every time: no outage.
    expect(reach).not.toContain(false);
    // The token is given the namespace: the next registration clears it.
    accept = true;
    for (let i = 0; i < 12 && c.authFailed; i++) {
      clock.advance(30_000);
      for (let j = 0; j < 20; j++) await new Promise((r) => setImmediate(r));
    }
    expect(c.authFailed).toBe(false);
    expect(lines).toContain("info edge accepts the token again");
    await c.stop(false);
  });
});
