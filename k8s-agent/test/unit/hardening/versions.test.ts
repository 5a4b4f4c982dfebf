// Route-table versions never go backwards in an agent, whatever order the edge's
// answers arrive in: randomised (fast-check) interleavings of concurrent polls,
// duplicate and stale answers, 304s and a stale table on disk.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RouteTable } from "@hopway/core/wire";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type Clock, EdgeClient } from "../../../src/edge/client.ts";

const table = (version: number): RouteTable => ({
  node: "relay-v",
  version,
  routes: [
    {
      from: "relay-v",
      to: "app1",
      hops: [{ node: "app1", address: "ipv4://127.0.0.1:1", priority: 1, alternatives: [] }],
    },
  ],
});

const stillClock: Clock = { now: () => 1_000, setTimeout: () => 0, clearTimeout: () => {} };

describe("agent route-table versions", () => {
  it("only ever move forward, for any arrival order of answers (property, 300 runs)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hopway-versions-"));
    let runs = 0;
    let answers = 0;
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.oneof(fc.integer({ min: 0, max: 50 }), fc.constant(-1)), { minLength: 1, maxLength: 25 }),
          fc.integer({ min: 0, max: 50 }),
          fc.boolean(),
          fc.infiniteStream(fc.nat()),
          async (versions, onDisk, withDisk, order) => {
            runs++;
            const applied: number[] = [];
            const resolvers: Array<() => void> = [];
            let call = 0;
            const fetchFn = (() => {
              const v = versions[call++] as number;
              return new Promise<Response>((resolve) => {
                // -1 stands for a 304 (unchanged) answer.
                resolvers.push(() =>
                  resolve(
                    v < 0
                      ? new Response(null, { status: 304 })
                      : new Response(JSON.stringify(table(v)), { status: 200, headers: { etag: `"${v}"` } }),
                  ),
                );
              });
            }) as typeof fetch;
            const sub = join(dir, String(runs));
            const c = new EdgeClient({
              url: "http://edge.invalid",
              realm: "r",
              token: "t",
              node: "relay-v",
              records: [],
              leaseSeconds: 30,
              waitSeconds: 1,
              dataDir: withDisk ? sub : undefined,
              onTable: (t) => applied.push(t.version),
              fetch: fetchFn,
              clock: stillClock,
            });
            const polls = versions.map(() => c.fetchTableOnce(0).catch(() => "failed"));
            // Answers arrive in an arbitrary order, with a stale table from disk landing midway.
            const pending = [...resolvers];
            const it = order[Symbol.iterator]();
            let diskDone = false;
            while (pending.length > 0) {
              const k = (it.next().value as number) % pending.length;
              pending.splice(k, 1)[0]?.();
              answers++;
              await Promise.resolve();
              if (withDisk && !diskDone && pending.length <= versions.length / 2) {
                diskDone = true;
                await c.flush();
                mkdirSync(sub, { recursive: true });
                writeFileSync(join(sub, "route-table.json"), JSON.stringify({ table: table(onDisk), saved_at: 0 }));
                await c.loadPersisted();
              }
            }
            await Promise.all(polls);
            await c.flush();
            for (let i = 1; i < applied.length; i++) expect(applied[i]).toBeGreaterThan(applied[i - 1] as number);
            const best = Math.max(...versions, withDisk && diskDone ? onDisk : -1);
            if (best >= 0) expect(c.version).toBe(best);
          },
        ),
        { numRuns: 300, seed: 20261126 },
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    console.log(`route-table versions: ${runs} random interleavings, ${answers} out-of-order answers, never backwards`);
  });
});
