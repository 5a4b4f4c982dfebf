// The setup-latency helpers: the floor arithmetic, and both probes through a WAN
// link, where the emulator's model fixes the answer (first byte at 3d, echo at 4d).
import { once } from "node:events";
import { createServer, type Server } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { measureConnectSetup, measureEchoSetup, quantile, roundTripFloor } from "./setup-latency.ts";
import { startWan } from "./wan.ts";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function serve(server: Server): Promise<number> {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  const a = server.address();
  return typeof a === "object" && a ? a.port : 0;
}

/** A CONNECT proxy stand-in that answers at once with `status` (no upstream). */
function answering(status: number): Server {
  return createServer((s) => {
    s.on("error", () => {});
    s.once("data", () => s.write(`HTTP/1.1 ${status} X\r\n\r\n`));
  });
}

describe("setup latency helpers", () => {
  it("computes the floor as two crossings of each emulated leg plus the measured local round trips", () => {
    expect(roundTripFloor([{ oneWayMs: 25 }, { oneWayMs: 25 }, { roundTripMs: 3 }])).toBe(103);
    expect(roundTripFloor([])).toBe(0);
  });

  it("takes nearest-rank quantiles", () => {
    const xs = [5, 1, 4, 2, 3, 10, 9, 8, 7, 6];
    expect(quantile(xs, 0.5)).toBe(5);
    expect(quantile(xs, 0.9)).toBe(9);
    expect(quantile(xs, 1)).toBe(10);
  });

  it("measures CONNECT → 200 through a link: the handshake hold plus one round trip (4d)", async () => {
    const d = 25;
    const port = await serve(answering(200));
    const link = await startWan({ target: { host: "127.0.0.1", port }, delayMs: d });
    cleanups.push(() => link.close());
    const r = await measureConnectSetup(link, "app:1", 5);
    expect(r.warmMs).toHaveLength(4);
    // Never below 4d; the best of the tunnels within a few ms of it (one more d would be 25 ms).
    for (const ms of [r.coldMs, ...r.warmMs]) expect(ms).toBeGreaterThanOrEqual(4 * d);
    expect(r.minMs).toBeLessThan(4 * d + 15);
    expect(r.p90).toBeGreaterThanOrEqual(r.median);
    expect(r.minMs).toBe(Math.min(r.coldMs, ...r.warmMs));
  });

  it("refuses to count an answer other than 200 as a setup", async () => {
    const port = await serve(answering(502));
    await expect(measureConnectSetup({ host: "127.0.0.1", port }, "app:1", 2)).rejects.toThrow(/502/);
  });

  it("measures connect → first echoed byte for a plain forwarder", async () => {
    const d = 25;
    const echo = createServer((s) => {
      s.on("error", () => {});
      s.pipe(s);
    });
    const port = await serve(echo);
    const link = await startWan({ target: { host: "127.0.0.1", port }, delayMs: d });
    cleanups.push(() => link.close());
    const r = await measureEchoSetup(link, 4);
    // Never below 4d; the best of the tunnels within a few ms of it (one more d would be 25 ms).
    for (const ms of [r.coldMs, ...r.warmMs]) expect(ms).toBeGreaterThanOrEqual(4 * d);
    expect(r.minMs).toBeLessThan(4 * d + 15);
  });
});
