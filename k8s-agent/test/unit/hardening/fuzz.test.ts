// The seeded CONNECT-head fuzzer, CI slice: 20,000 hostile handshakes over real
// loopback sockets (the full 100,000 run in `npm run soak`). None may crash the
// process, hold a socket past its deadline, get an answer outside its allowed
// set, or leave anything behind in the relay.
import { describe, expect, it } from "vitest";
import { runFuzz, summarize } from "./fuzz.ts";

const SEED = Number(process.env.HOPWAY_FUZZ_SEED ?? 0x5eed_2026);
const CASES = Number(process.env.HOPWAY_FUZZ_CASES ?? 20_000);

describe("relay: hostile CONNECT heads (seeded fuzz)", () => {
  it(`${CASES} cases: each answered or closed in time, nothing leaks`, { timeout: 120_000 }, async () => {
    const r = await runFuzz({ seed: SEED, cases: CASES });
    console.log(summarize(r, SEED));
    expect(r.violations.slice(0, 20), `seed ${SEED}`).toEqual([]);
    expect(r.openAfter).toBe(0);
    expect(r.tunnelsAfter).toBe(0);
    expect(r.handlesAfter).toBe(0);
    // A tunnel is only ever opened for a client that got its 200 (nothing dialed otherwise).
    expect(r.echoAccepted).toBe(r.tunnels);
    expect(r.tunnels).toBeGreaterThan(CASES * 0.03);
    // Every refusal kind the generator aims at was actually produced.
    for (const s of [400, 405, 407, 408, 431, 403, 404])
      expect(r.byStatus.get(s) ?? 0, `status ${s}`).toBeGreaterThan(0);
    // Bounded: what the run leaves on the heap does not grow with the number of cases.
    expect(r.heapGrowthMiB).toBeLessThan(24);
  });
});
