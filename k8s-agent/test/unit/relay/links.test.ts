// Relay links over real loopback sockets: tunnels through three relays chained
// by mTLS HTTP/2 links, link reuse, bulk integrity, half-close, and drain.
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { createServer } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { listen, type Running, readAll, sleep, startChain, startEcho, tunnel } from "./helpers.ts";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function chain(targetPort: number, extra: Parameters<typeof startChain>[2] = {}): Promise<Running[]> {
  const relays = await startChain(["r2", "r3", "r1"], `ipv4://127.0.0.1:${targetPort}`, extra);
  for (const r of relays) cleanups.push(() => r.close());
  return relays;
}

async function echo(): Promise<number> {
  const e = await startEcho();
  cleanups.push(() => e.server.close());
  return e.port;
}

describe("relay links: tunnels through three relays", () => {
  it("app → r2 → r3 → r1 → target works, and the second tunnel reuses the links", async () => {
    const port = await echo();
    const [r2, r3, r1] = (await chain(port)) as [Running, Running, Running];
    const first = await tunnel(r2.port);
    expect(first.status).toBe(200);
    expect(first.headers.get("hopway-path")).toBe("r2, r3, r1");
    first.socket.resume();
    first.socket.write("hello over links");
    expect(String((await once(first.socket, "data"))[0])).toBe("hello over links");

    const second = await tunnel(r2.port);
    expect(second.status).toBe(200);
    second.socket.resume();
    second.socket.write("again");
    expect(String((await once(second.socket, "data"))[0])).toBe("again");
    // One TLS handshake per hop for both tunnels.
    expect(r2.relay.linkPool?.dials).toBe(1);
    expect(r3.relay.linkPool?.dials).toBe(1);
    expect(r1.relay.linkPool?.dials).toBe(0);
    expect(r3.relay.linkStreamsByPeer().get("r2")).toBe(2);
    expect(r1.relay.linksByPeer().get("r3")).toBe(1);
    first.socket.destroy();
    second.socket.destroy();
  });
});
