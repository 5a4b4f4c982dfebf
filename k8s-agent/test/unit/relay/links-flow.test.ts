// Flow control and faults on relay links: a tunnel whose reader stops does not
// slow the other tunnels of its link, and a relay that dies cuts the tunnels
// through it at the applications while new tunnels re-dial once it is back.
import { createServer, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import {
  cutOff,
  hop,
  LINK_PROTOCOLS,
  listen,
  type Running,
  route,
  sleep,
  startChain,
  startRelay,
  tunnel,
} from "./helpers.ts";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A target that sends to every connection as fast as it is read, until it closes. */
async function startSource(): Promise<number> {
  const chunk = Buffer.alloc(64 * 1024, 7);
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on("error", () => {});
    s.on("close", () => sockets.delete(s));
    const fill = () => {
      while (!s.destroyed && s.write(chunk));
    };
    s.on("drain", fill);
    fill();
  });
  const port = await listen(server);
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return port;
}

/**
 * A target whose first connection is a bulk sender (as fast as it is read) and every later one a
 * steady 4 KiB per 50 ms (80 KiB/s, 16 MiB/s for 199): the steady flows leave CPU to spare on a
 * shared machine, so only the link (not the machine) can slow them.
 */
async function startBulkAndSteady(): Promise<number> {
  const chunk = Buffer.alloc(64 * 1024, 7);
  const tick = Buffer.alloc(4 * 1024, 9);
  const steady = new Set<Socket>();
  let first = true;
  const server = createServer((s) => {
    s.on("error", () => {});
    if (first) {
      first = false;
      const fill = () => {
        while (!s.destroyed && s.write(chunk));
      };
      s.on("drain", fill);
      fill();
      return;
    }
    steady.add(s);
    s.on("close", () => steady.delete(s));
  });
  const timer = setInterval(() => {
    for (const s of steady) if (s.writableLength === 0) s.write(tick);
  }, 50);
  const port = await listen(server);
  cleanups.push(() => {
    clearInterval(timer);
    for (const s of steady) s.destroy();
    server.close();
  });
  return port;
}

describe.each(LINK_PROTOCOLS)("relay links (%s): flow control", (protocol) => {
  it("200 tunnels on one link: one reader stops, every other tunnel keeps ≥ 80 % of its throughput", async () => {
    const port = await startBulkAndSteady();
    const [r2, r3] = (await startChain(["r2", "r3"], `ipv4://127.0.0.1:${port}`, { links: { protocol } })) as [
      Running,
      Running,
    ];
    cleanups.push(
      () => r2.close(),
      () => r3.close(),
    );
    const N = 200;
    const received = new Array<number>(N).fill(0);
    const sockets: Socket[] = [];
    cleanups.push(() => {
      for (const s of sockets) s.destroy();
    });
    const open = async (i: number) => {
      const ans = await tunnel(r2.port);
      expect(ans.status).toBe(200);
      received[i] = ans.rest.length;
      ans.socket.on("data", (c: Buffer) => {
        received[i] = (received[i] as number) + c.length;
      });
      ans.socket.resume();
      sockets[i] = ans.socket;
    };
    await open(0); // the bulk one
    for (let i = 1; i < N; i += 20)
      await Promise.all(Array.from({ length: Math.min(20, N - i) }, (_, k) => open(i + k)));
    // Every tunnel shares the one link r2 → r3.
    expect(r2.relay.linkPool?.handshakes).toBe(1);
    expect(r3.relay.linkStreamsByPeer().get("r2")).toBe(N);
    const window = async (ms: number) => {
      const before = [...received];
      const started = performance.now();
      await sleep(ms);
      const seconds = (performance.now() - started) / 1000;
      return received.map((r, i) => (r - (before[i] as number)) / seconds);
    };
    await sleep(300);
    const alone = await window(3000);
    // Tunnel 0's reader stops: its stream window at r2 fills and stays full.
    (sockets[0] as Socket).pause();
    await sleep(500);
    const stalledAt = received[0] as number;
    const stalled = await window(3000);
    expect(received[0]).toBe(stalledAt);
    // The 199 steady tunnels are the same flow: what one has alone is their median before the stall.
    const median = (xs: number[]) => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)] as number;
    const each = median(alone.slice(1));
    const ratios = stalled.slice(1).map((b) => b / each);
    const worst = Math.min(...ratios);
    const sum = (xs: number[]) => xs.reduce((p, q) => p + q, 0);
    console.log(
      `links flow: bulk tunnel ${((alone[0] as number) / 2 ** 20).toFixed(1)} MiB/s; 199 steady tunnels ` +
        `${(sum(alone.slice(1)) / 2 ** 20).toFixed(1)} MiB/s (${(each / 1024).toFixed(0)} KiB/s each), then ` +
        `${(sum(stalled.slice(1)) / 2 ** 20).toFixed(1)} MiB/s with the bulk reader stopped; worst tunnel ` +
        `${worst.toFixed(2)} of its share`,
    );
    // The bulk tunnel really moved data before it stalled (its stream window could fill).
    expect(stalledAt).toBeGreaterThan(2 ** 20);
    expect(worst).toBeGreaterThanOrEqual(0.8);
    // The stalled tunnel is still open and resumes where it stopped.
    (sockets[0] as Socket).resume();
    await sleep(200);
    expect(received[0]).toBeGreaterThan(stalledAt);
  });
});

describe.each(LINK_PROTOCOLS)("relay links (%s): faults", (protocol) => {
  it("a relay killed mid-transfer ends its tunnels at the applications; new tunnels re-dial once it is back", async () => {
    const port = await startSource();
    const target = `ipv4://127.0.0.1:${port}`;
    const mkBack = (listenPort = 0) =>
      startRelay({
        name: "back",
        routes: [route("back", "app1", [hop("app1", target)])],
        peers: ["front"],
        port: listenPort,
        links: { protocol },
      });
    let back = await mkBack();
    const backPort = back.port;
    const front = await startRelay({
      name: "front",
      routes: [route("front", "app1", [hop("back", `ipv4://127.0.0.1:${backPort}`), hop("app1", target)])],
      peers: ["back"],
      links: { protocol, redialInitialMs: 50, redialMaxMs: 400 },
    });
    cleanups.push(() => front.close());
    const apps = await Promise.all([tunnel(front.port), tunnel(front.port), tunnel(front.port)]);
    const ended = apps.map((a) => {
      expect(a.status).toBe(200);
      a.socket.resume();
      return cutOff(a.socket);
    });
    await sleep(100);
    await back.close();
    // Every tunnel through the dead relay is cut at its application (reset: its data did not all arrive).
    await Promise.all(ended);
    await sleep(20);
    expect(front.relay.activeTunnels).toBe(0);
    // While it is down: a 502 at once, not a hang.
    expect((await tunnel(front.port)).status).toBe(502);
    back = await mkBack(backPort);
    cleanups.push(() => back.close());
    // Back up: a new tunnel re-dials within the backoff (bounded by redialMaxMs).
    const started = performance.now();
    let status = 0;
    while (performance.now() - started < 3000) {
      const a = await tunnel(front.port);
      status = a.status;
      a.socket.destroy();
      if (status === 200) break;
      await sleep(20);
    }
    expect(status).toBe(200);
    expect(performance.now() - started).toBeLessThan(1000);
  });
});
