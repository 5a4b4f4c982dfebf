// Tunnels inside tunnels: a relay's listener is never a tunnel's final target.
// Otherwise `CONNECT relay-b` through relay A hands the client a raw socket on
// B's listener, the client sends B a fresh CONNECT (no Hopway-Hops) inside it,
// and so on: 40 levels passed 41 relays, past the 8-hop limit. Relays A and B
// below are wired like neighbours in a realm (each is a direct target of the
// other, B is A's way to an application); the nesting attempt is refused at A
// and a counting listener shows B never saw a byte.
import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { hop, readAnswer, route, startEcho } from "../relay/helpers.ts";
import { type CountingRelay, countingRelay } from "./support.ts";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const addr = (r: { host: string; port: number }) => `ipv4://${r.host}:${r.port}`;

/** Opens a tunnel to `first` through `r`, then nests CONNECTs inside it along `inner`; returns each answer's status. */
async function nest(r: CountingRelay, first: string, inner: string[]): Promise<number[]> {
  const socket = connect({ host: r.host, port: r.port });
  socket.on("error", () => {});
  cleanups.push(() => socket.destroy());
  const statuses: number[] = [];
  for (const target of [first, ...inner]) {
    socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
    const a = await readAnswer(socket).catch(() => undefined);
    statuses.push(a?.status ?? 0);
    if (a?.status !== 200) break;
    socket.resume();
  }
  return statuses;
}

describe("tunnels never end at a relay listener", () => {
  it("refuses CONNECT to a neighbour relay (by name or by an alias of its address) before dialing it", async () => {
    const app = await startEcho();
    cleanups.push(() => app.server.close());
    const a = await countingRelay({ name: "relay-a", routes: [] }, "127.0.0.31");
    const b = await countingRelay({ name: "relay-b", routes: [] }, "127.0.0.32");
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    const appAddr = `ipv4://127.0.0.1:${app.port}`;
    a.table.set({
      node: "relay-a",
      version: 2,
      routes: [
        route("relay-a", "app", [hop("relay-b", addr(b)), hop("app", appAddr)]),
        // B is also a direct target of A (it has a gateway A matches), as relays are.
        route("relay-a", "relay-b", [hop("relay-b", addr(b))]),
        // A node registered with B's listener address under another name.
        route("relay-a", "alias", [hop("alias", addr(b))]),
      ],
    });
    b.table.set({
      node: "relay-b",
      version: 2,
      routes: [route("relay-b", "app", [hop("app", appAddr)]), route("relay-b", "relay-a", [hop("relay-a", addr(a))])],
    });

    // The 40-level nesting of the probe: relay-b, then relay-a inside it, relay-b inside that, …
    const inner = Array.from({ length: 39 }, (_, i) => (i % 2 === 0 ? `relay-a:${a.port}` : `relay-b:${b.port}`));
    const byName = await nest(a, `relay-b:${b.port}`, inner);
    const byAlias = await nest(a, `alias:${b.port}`, inner);
    console.log(
      `nesting: by name ${JSON.stringify(byName)}, by alias ${JSON.stringify(byAlias)}; B accepted ${b.accepted}`,
    );
    expect(byName).toEqual([403]);
    expect(byAlias).toEqual([403]);
    expect(b.accepted).toBe(0);

    // The refusal says why, at A.
    const s = connect({ host: a.host, port: a.port });
    s.on("error", () => {});
    s.write(`CONNECT relay-b:${b.port} HTTP/1.1\r\n\r\n`);
    const refused = await readAnswer(s);
    expect(refused.headers.get("hopway-error")).toBe("forbidden");
    expect(refused.headers.get("hopway-failed-at")).toBe("relay-a");
    expect(refused.headers.get("hopway-reason")).toMatch(/relay listener/);
    s.destroy();

    // The ordinary path through B still works: B is a hop, just never a destination.
    const ok = await nest(a, `app:${app.port}`, []);
    expect(ok).toEqual([200]);
    expect(b.accepted).toBe(1);
  });
});
