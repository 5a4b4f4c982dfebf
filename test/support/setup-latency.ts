// How long a new tunnel takes to set up, for the end-to-end test and the links
// benchmark: one tunnel after another (never two at once, so each figure is one
// path's latency and not a queue), the first reported apart as the cold start.
// The yardstick is the round-trip floor: the least any relay chain can take is
// one round trip over each long leg plus what the local legs take.
import { connect, type Socket } from "node:net";
import { tryTunnel } from "./tunnel.ts";

export interface SetupLatency {
  /** The first tunnel: fresh processes, no pooled or cached anything. */
  coldMs: number;
  /** Every tunnel after the first, in order. */
  warmMs: number[];
  median: number;
  p90: number;
  /** The fastest of all, cold included: what a floor is built from. */
  minMs: number;
}

/** A leg of the path: emulated (its one-way delay, paid twice per round trip) or local (a measured round trip). */
export type Leg = { oneWayMs: number } | { roundTripMs: number };

/** 2 × Σ one-way delays of the emulated legs, plus the measured round trips of the local legs. */
export function roundTripFloor(legs: readonly Leg[]): number {
  return legs.reduce((sum, leg) => sum + ("oneWayMs" in leg ? 2 * leg.oneWayMs : leg.roundTripMs), 0);
}

/** The q-quantile (0..1) of `xs`, nearest rank. */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return Number.NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number;
}

/** Runs `once` `n` times one after another (n ≥ 2): the first is the cold figure, the rest the warm ones. */
export async function measureSequential(n: number, once: () => Promise<number>): Promise<SetupLatency> {
  if (n < 2) throw new Error("measureSequential: n must be ≥ 2 (one cold, at least one warm)");
  const all: number[] = [];
  for (let i = 0; i < n; i++) all.push(await once());
  const warmMs = all.slice(1);
  return {
    coldMs: all[0] as number,
    warmMs,
    median: quantile(warmMs, 0.5),
    p90: quantile(warmMs, 0.9),
    minMs: Math.min(...all),
  };
}

/**
 * Time from connect() to the `200` of `CONNECT authority` through an HTTP CONNECT
 * proxy, over `n` tunnels in sequence. Anything but 200 is an error, not a sample.
 */
export function measureConnectSetup(
  proxy: { host: string; port: number },
  authority: string,
  n: number,
  opts: { timeoutMs?: number } = {},
): Promise<SetupLatency> {
  return measureSequential(n, async () => {
    const t = await tryTunnel(proxy, authority, { timeoutMs: opts.timeoutMs ?? 15_000 });
    t.socket.destroy();
    if (t.error) throw t.error;
    if (t.status !== 200) {
      throw new Error(`CONNECT ${authority}: ${t.status} ${t.headers.get("hopway-reason") ?? ""}`.trim());
    }
    return t.ms;
  });
}

/**
 * For a plain TCP forwarder chain (no CONNECT) in front of an echo server: time
 * from connect() to the first echoed byte of a 16-byte message written at once,
 * over `n` connections in sequence. It is the same milestone as a CONNECT's 200,
 * the moment the client knows the whole path stands.
 */
export function measureEchoSetup(
  addr: { host: string; port: number },
  n: number,
  opts: { timeoutMs?: number } = {},
): Promise<SetupLatency> {
  return measureSequential(
    n,
    () =>
      new Promise<number>((resolve, reject) => {
        const t0 = performance.now();
        const s: Socket = connect({ host: addr.host, port: addr.port, noDelay: true });
        const timer = setTimeout(
          () => done(new Error(`no echo within ${opts.timeoutMs ?? 15_000} ms`)),
          opts.timeoutMs ?? 15_000,
        );
        const done = (err?: Error) => {
          clearTimeout(timer);
          s.destroy();
          if (err) reject(err);
          else resolve(performance.now() - t0);
        };
        s.write("0123456789abcdef");
        s.once("data", () => done());
        s.once("error", (e) => done(e));
        s.once("end", () => done(new Error("closed before the echo")));
      }),
  );
}
