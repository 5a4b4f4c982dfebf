import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { EdgePacer, MAX_PAUSE_MS, type PacerClock, retryAfterMs } from "../../../src/edge/pacer.ts";

describe("retryAfterMs", () => {
  const now = Date.UTC(2026, 11, 2, 8, 0, 0);
  const cases: Array<[string | null, number | undefined]> = [
    [null, undefined],
    ["1", 1000],
    [" 3 ", 3000],
    ["0", 0],
    [new Date(now + 2500).toUTCString(), 2000], // HTTP dates have whole seconds
    [new Date(now - 60_000).toUTCString(), 0],
    ["soon", undefined],
    ["-1", undefined],
    ["1.5", undefined],
  ];
  for (const [value, ms] of cases) {
    it(`${JSON.stringify(value)} → ${ms}`, () => expect(retryAfterMs(value, now)).toBe(ms));
  }
});

/** A clock that records the pauses asked of it and moves time by them at once. */
class StepClock implements PacerClock {
  t = 1_000_000;
  slept: number[] = [];
  now(): number {
    return this.t;
  }
  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) throw signal.reason;
    this.slept.push(ms);
    this.t += ms;
  }
}

function answering(statuses: Array<[number, Record<string, string>?]>): { fetch: typeof fetch; sent: number[] } {
  const sent: number[] = [];
  let i = 0;
  const f: typeof fetch = async () => {
    const [status, headers] = statuses[Math.min(i++, statuses.length - 1)] ?? [200];
    sent.push(status);
    return new Response(null, { status, headers: headers ?? {} });
  };
  return { fetch: f, sent };
}

describe("EdgePacer", () => {
  it("after a 429 every request waits the Retry-After, once; later ones go at once", async () => {
    const clock = new StepClock();
    const inner = answering([[429, { "retry-after": "1" }], [200], [200]]);
    const pacer = new EdgePacer(inner.fetch, clock);
    expect((await pacer.fetch("http://edge/a")).status).toBe(429);
    expect(pacer.throttled).toBe(1);
    expect(pacer.pausedForMs).toBe(1000);
    expect((await pacer.fetch("http://edge/b")).status).toBe(200);
    expect(clock.slept).toEqual([1000]);
    expect((await pacer.fetch("http://edge/c")).status).toBe(200);
    expect(clock.slept).toEqual([1000]);
    expect(pacer.throttled).toBe(1);
  });

  it("a 429 without a readable Retry-After pauses a second; a long one is capped", async () => {
    const clock = new StepClock();
    const pacer = new EdgePacer(answering([[429], [429, { "retry-after": "3600" }], [200]]).fetch, clock);
    await pacer.fetch("http://edge/a");
    await pacer.fetch("http://edge/b");
    await pacer.fetch("http://edge/c");
    expect(clock.slept).toEqual([1000, MAX_PAUSE_MS]);
    expect(pacer.throttled).toBe(2);
  });

  it("a request whose caller gives up during the pause is not sent", async () => {
    const clock = new StepClock();
    const inner = answering([[429, { "retry-after": "1" }], [200]]);
    const pacer = new EdgePacer(inner.fetch, clock);
    await pacer.fetch("http://edge/a");
    const ac = new AbortController();
    ac.abort(new Error("shutting down"));
    await expect(pacer.fetch("http://edge/b", { signal: ac.signal })).rejects.toThrow("shutting down");
    expect(inner.sent).toEqual([429]);
  });

  describe("against a real HTTP server", () => {
    let server: Server | undefined;
    afterEach(() => server?.close());

    it("holds every request behind a 429 until its Retry-After, with real time", async () => {
      const arrivals: number[] = [];
      server = createServer((_req, res) => {
        arrivals.push(Date.now());
        if (arrivals.length === 1) res.writeHead(429, { "retry-after": "1" }).end();
        else res.writeHead(200).end("ok");
      });
      server.listen(0, "127.0.0.1");
      await once(server, "listening");
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
      const pacer = new EdgePacer();
      expect((await pacer.fetch(url)).status).toBe(429);
      // Three loops of the agent asking at once: none goes before the second is up.
      const answers = await Promise.all([pacer.fetch(url), pacer.fetch(url), pacer.fetch(url)]);
      expect(answers.map((r) => r.status)).toEqual([200, 200, 200]);
      const first = arrivals[0] ?? 0;
      for (const at of arrivals.slice(1)) expect(at - first).toBeGreaterThanOrEqual(990);
    });
  });
});
