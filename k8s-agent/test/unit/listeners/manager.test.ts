// Listeners over real loopback sockets: an unmodified client connects to a plain address and
// reaches the target through the relay as a CONNECT would, and refusals close at once.
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { connect, createServer, type Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { freePort } from "../../../../test/support/loopback-mesh.ts";
import { type ListenerCarrier, ListenerManager, type ListenerResult } from "../../../src/listeners/manager.ts";
import { nativeSpliceStatus } from "../../../src/relay/native-splice.ts";
import { readsInPlaceForTest } from "../../../src/relay/pump.ts";
import { Relay, type RelayOptions } from "../../../src/relay/relay.ts";
import { RoutingTable } from "../../../src/relay/table.ts";
import {
  hop,
  LINK_PROTOCOLS,
  listen,
  type Running,
  readAll,
  route,
  sleep,
  startChain,
  startEcho,
} from "../relay/helpers.ts";

interface Logged {
  level: string;
  msg: string;
  fields: Record<string, unknown>;
}

/**
 * Every behaviour runs against both ways a listener accepts: net.Server handing sockets to
 * `carry`, and native listeners (k8s-agent/native/listen.c) handing connections to `carryNative`.
 */
const MODES = ["javascript", "native"] as const;
type Mode = (typeof MODES)[number];

function setupWith(
  mode: Mode,
  routes: ReturnType<typeof route>[],
  opts: { cidrs?: string[]; resolveTarget?: RelayOptions["resolveTarget"]; refusalLogMs?: number } = {},
) {
  const table = new RoutingTable("r1");
  table.set({ node: "r1", version: 1, routes });
  const relay = new Relay({ name: "r1", table, resolveTarget: opts.resolveTarget });
  const results: ListenerResult[] = [];
  const logs: Logged[] = [];
  // The sockets the listener hands to the relay, as it hands them.
  const carried: Socket[] = [];
  const carrier: ListenerCarrier = {
    bufferBytes: relay.bufferBytes,
    selfAddresses: relay.selfAddresses,
    carry: (socket, target, settled) => {
      carried.push(socket);
      relay.carry(socket, target, settled);
    },
  };
  if (mode === "native") {
    const native = relay.nativeListeners;
    if (native === undefined) throw new Error(`native listeners not loaded: ${nativeSpliceStatus()}`);
    Object.assign(carrier, {
      nativeListeners: native,
      carryNative: relay.carryNative.bind(relay),
      // A connection released to the socket path (a link route) reaches `carry`'s relay path, not this one.
    });
  }
  const listeners = new ListenerManager({
    carrier,
    clientCidrs: opts.cidrs ?? ["127.0.0.0/8"],
    log: (level, msg, fields) => logs.push({ level, msg, fields }),
    observer: { connection: (r) => results.push(r) },
    refusalLogMs: opts.refusalLogMs,
  });
  return { table, relay, listeners, results, logs, carried };
}

/** A resolveTarget that holds every path until `open()`: what a client does meanwhile can be watched. */
function heldPaths() {
  let open = () => {};
  const gate = new Promise<void>((r) => {
    open = r;
  });
  return { resolveTarget: async () => gate.then(() => undefined), open: () => open() };
}

/**
 * A client of the listener at `address` that sends `size` random bytes in 7,000-byte pieces and
 * its FIN with the last one, all at once (before a held path is up); `back` is what it reads.
 */
async function sendAndEnd(address: string, size: number): Promise<{ payload: Buffer; back: Promise<Buffer> }> {
  const client = await dialListener(address);
  const payload = randomBytes(size);
  const back = readAll(client);
  for (let at = 0; at < size; at += 7000) client.write(payload.subarray(at, at + 7000));
  client.end();
  return { payload, back };
}

async function dialListener(address: string): Promise<Socket> {
  const [host, port] = [
    address.slice(0, address.lastIndexOf(":")),
    Number(address.slice(address.lastIndexOf(":") + 1)),
  ];
  const s = connect({ host, port, allowHalfOpen: true });
  s.on("error", () => {});
  await once(s, "connect");
  // Reading, like any real client, so a close by the listener is seen.
  s.resume();
  return s;
}

describe.each(MODES)("listeners, %s accept", (mode) => {
  const setup = (routes: ReturnType<typeof route>[], opts?: Parameters<typeof setupWith>[2]) =>
    setupWith(mode, routes, opts);

  it("carries a client that speaks first, byte for byte, with no CONNECT", async () => {
    const echo = await startEcho({ halfClose: true });
    const { listeners, relay, results, carried } = setup([
      route("r1", "db", [hop("db", `ipv4://127.0.0.1:${echo.port}`)]),
    ]);
    expect(await listeners.apply([{ listen: "127.0.0.1:0", target: `db:${echo.port}` }])).toEqual([]);
    const [open] = listeners.list();
    const client = await dialListener(open?.address as string);
    const payload = randomBytes(3 * 1024 * 1024);
    // Written before the path is up: nothing may be lost while the relay dials.
    client.end(payload);
    const back = await readAll(client);
    expect(createHash("sha256").update(back).digest("hex")).toBe(createHash("sha256").update(payload).digest("hex"));
    expect(results).toEqual(["carried"]);
    expect(relay.counters.up.client).toBe(payload.length);
    expect(relay.counters.down.client).toBe(payload.length);
    // Natively, no net.Socket was made on either side.
    expect(carried).toHaveLength(mode === "native" ? 0 : 1);
    await listeners.close();
    echo.server.close();
  });

  if (mode === "javascript") {
    it("reads an accepted socket through the relay's buffers in place, as the relay's own listener does", async () => {
      const echo = await startEcho();
      const { listeners, carried } = setup([route("r1", "db", [hop("db", `ipv4://127.0.0.1:${echo.port}`)])]);
      await listeners.apply([{ listen: "127.0.0.1:0", target: `db:${echo.port}` }]);
      const client = await dialListener(listeners.list()[0]?.address as string);
      client.write("ping");
      expect(String((await once(client, "data"))[0])).toBe("ping");
      // The socket the listener accepted is the tunnel's own, not moved into a second one.
      expect(carried).toHaveLength(1);
      const accepted = carried[0] as Socket;
      expect(accepted.destroyed).toBe(false);
      expect(readsInPlaceForTest(accepted)).toBe(true);
      client.destroy();
      await listeners.close();
      echo.server.close();
    });

    it("reads what the client sends while its path comes up, up to a bound, and forwards it first", async () => {
      const echo = await startEcho();
      const held = heldPaths();
      const { listeners, carried } = setup([route("r1", "db", [hop("db", `ipv4://127.0.0.1:${echo.port}`)])], held);
      await listeners.apply([{ listen: "127.0.0.1:0", target: `db:${echo.port}` }]);
      const client = await dialListener(listeners.list()[0]?.address as string);
      const readBy = async (n: number) => {
        for (let i = 0; i < 200 && (carried[0]?.bytesRead ?? 0) < n; i++) await sleep(5);
        return carried[0]?.bytesRead;
      };
      client.write("SET k v\r\n");
      // Read before the path is up: the tunnel's first write carries it, no further read is waited for.
      expect(await readBy(9)).toBe(9);
      client.write("GET k\r\n");
      expect(await readBy(16)).toBe(16);
      // A client that sends a lot meanwhile is read up to the bound (16 KiB, plus one read of at
      // most 256 KiB); the rest waits in the kernel.
      const bulk = randomBytes(4 * 1024 * 1024);
      client.write(bulk);
      await sleep(200);
      expect(carried[0]?.bytesRead).toBeGreaterThan(16);
      expect(carried[0]?.bytesRead).toBeLessThanOrEqual(16 + 16 * 1024 + 256 * 1024);
      held.open();
      const chunks: Buffer[] = [];
      client.on("data", (c: Buffer) => chunks.push(c));
      const want = Buffer.concat([Buffer.from("SET k v\r\nGET k\r\n"), bulk]);
      for (let i = 0; i < 1000 && Buffer.concat(chunks).length < want.length; i++) await sleep(5);
      expect(Buffer.concat(chunks).equals(want)).toBe(true);
      client.destroy();
      await listeners.close();
      echo.server.close();
    });
  }

  if (mode === "native") {
    it("holds a client's bytes in the kernel while its path comes up, and forwards them all first", async () => {
      const echo = await startEcho();
      const held = heldPaths();
      const { listeners, relay } = setup([route("r1", "db", [hop("db", `ipv4://127.0.0.1:${echo.port}`)])], held);
      await listeners.apply([{ listen: "127.0.0.1:0", target: `db:${echo.port}` }]);
      const client = await dialListener(listeners.list()[0]?.address as string);
      const bulk = randomBytes(4 * 1024 * 1024);
      client.write("SET k v\r\n");
      client.write(bulk);
      await sleep(200);
      // Nothing is read before the target answers: the relay holds no byte of it.
      expect(relay.counters.up.client).toBe(0);
      expect(relay.openConnections).toBe(1);
      expect(relay.activeTunnels).toBe(0);
      held.open();
      const chunks: Buffer[] = [];
      client.on("data", (c: Buffer) => chunks.push(c));
      const want = Buffer.concat([Buffer.from("SET k v\r\n"), bulk]);
      for (let i = 0; i < 1000 && Buffer.concat(chunks).length < want.length; i++) await sleep(5);
      expect(Buffer.concat(chunks).equals(want)).toBe(true);
      expect(relay.activeTunnels).toBe(1);
      client.destroy();
      for (let i = 0; i < 200 && relay.openConnections > 0; i++) await sleep(5);
      expect(relay.openConnections).toBe(0);
      expect(relay.activeTunnels).toBe(0);
      await listeners.close();
      echo.server.close();
    });
  }

  it("forwards a half-close the client made before its path was up", async () => {
    const echo = await startEcho({ halfClose: true });
    const held = heldPaths();
    const { listeners, carried } = setup([route("r1", "db", [hop("db", `ipv4://127.0.0.1:${echo.port}`)])], held);
    await listeners.apply([{ listen: "127.0.0.1:0", target: `db:${echo.port}` }]);
    for (const payload of ["", "last words"]) {
      const client = await dialListener(listeners.list()[0]?.address as string);
      client.end(payload);
      const accepted = await (async () => {
        if (mode === "native") return undefined;
        for (let i = 0; i < 200 && carried.length === 0; i++) await sleep(5);
        return carried.shift() as Socket;
      })();
      // Only a client that sent nothing has its end read at once; the other waits in the kernel.
      // (A native listener reads nothing before the path is up.)
      if (payload === "" && accepted !== undefined) {
        for (let i = 0; i < 200 && !accepted.readableEnded; i++) await sleep(5);
        expect(accepted.readableEnded).toBe(true);
      }
      held.open();
      // The target saw the end (it echoes and ends in turn), so the client's read ends.
      expect(String(await readAll(client))).toBe(payload);
    }
    await listeners.close();
    echo.server.close();
  });

  it("clients that send up to 300 KiB at once and half-close while their paths come up get every byte back, in order", async () => {
    const echo = await startEcho({ halfClose: true });
    // Sizes around the 16 KiB the listener holds, and past one 256 KiB read.
    for (const size of [1, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 100 * 1024, 300 * 1024]) {
      const held = heldPaths();
      const { listeners, results } = setup([route("r1", "db", [hop("db", `ipv4://127.0.0.1:${echo.port}`)])], held);
      await listeners.apply([{ listen: "127.0.0.1:0", target: `db:${echo.port}` }]);
      // Three clients at once: each one's reads land in the relay's buffers between the others'.
      const runs = await Promise.all([0, 1, 2].map(() => sendAndEnd(listeners.list()[0]?.address as string, size)));
      await sleep(50);
      held.open();
      for (const { payload, back } of runs) {
        const got = await back;
        expect({ size, length: got.length, same: got.equals(payload) }).toEqual({ size, length: size, same: true });
      }
      expect(results).toEqual(["carried", "carried", "carried"]);
      await listeners.close();
    }
    echo.server.close();
  });

  it.each(LINK_PROTOCOLS)(
    "early bytes and an early half-close cross a relay link (%s) whole and in order",
    async (protocol) => {
      const echo = await startEcho({ halfClose: true });
      const [r2, r3] = await startChain(["r2", "r3"], `ipv4://127.0.0.1:${echo.port}`, { links: { protocol } });
      const listeners = new ListenerManager({
        carrier: (r2 as Running).relay,
        clientCidrs: ["127.0.0.0/8"],
        log: () => {},
      });
      await listeners.apply([{ listen: "127.0.0.1:0", target: `app1:${echo.port}` }]);
      // The first clients arrive before the link is up; later ones find it up.
      for (const size of [100 * 1024, 300 * 1024]) {
        const runs = await Promise.all([0, 1, 2].map(() => sendAndEnd(listeners.list()[0]?.address as string, size)));
        for (const { payload, back } of runs) {
          const got = await back;
          expect({ length: got.length, same: got.equals(payload) }).toEqual({ length: size, same: true });
        }
      }
      await listeners.close();
      await r2?.close();
      await r3?.close();
      echo.server.close();
    },
  );

  it("a client whose path fails after it sent bytes and half-closed is closed, and nothing reaches the target", async () => {
    const accepted: Socket[] = [];
    const target = createServer((s) => accepted.push(s));
    const port = await listen(target);
    // The path waits, then is refused (the target is resolved to a node with no route).
    let open = () => {};
    const gate = new Promise<void>((r) => {
      open = r;
    });
    const { listeners, results } = setup([route("r1", "db", [hop("db", `ipv4://127.0.0.1:${port}`)])], {
      resolveTarget: async () => gate.then(() => ({ reason: "unknown_node" as const, detail: "gone" })),
    });
    await listeners.apply([{ listen: "127.0.0.1:0", target: `db:${port}` }]);
    const client = await dialListener(listeners.list()[0]?.address as string);
    const closed = once(client, "close");
    client.end(randomBytes(100 * 1024));
    await sleep(50);
    open();
    await closed;
    expect(results).toEqual(["unknown_node"]);
    expect(accepted).toHaveLength(0);
    await listeners.close();
    target.close();
  });

  it("logs one line per interval however the refusal reasons alternate, with the counts by reason", async () => {
    let n = 0;
    const { listeners, results, logs } = setup([], {
      resolveTarget: async () =>
        n++ % 2 === 0
          ? { reason: "unknown_node" as const, detail: "no such node" }
          : { reason: "forbidden" as const, detail: "not allowed" },
      refusalLogMs: 1_000,
    });
    await listeners.apply([{ name: "db", listen: "127.0.0.1:0", target: "db:1" }]);
    const address = listeners.list()[0]?.address as string;
    for (let i = 0; i < 6; i++) {
      const c = await dialListener(address);
      await once(c, "end");
      c.destroy();
    }
    expect(results).toEqual(["unknown_node", "forbidden", "unknown_node", "forbidden", "unknown_node", "forbidden"]);
    const lines = logs.filter((l) => l.msg === "listener refused a connection");
    expect(lines).toHaveLength(1);
    expect(lines[0]?.fields).toMatchObject({ reason: "unknown_node", refused_since_last_log: 1 });
    // The next line, an interval later, counts what was not logged, by reason.
    await sleep(1_050);
    const c = await dialListener(address);
    await once(c, "end");
    c.destroy();
    const next = logs.filter((l) => l.msg === "listener refused a connection");
    expect(next).toHaveLength(2);
    expect(next[1]?.fields).toMatchObject({
      refused_since_last_log: 6,
      refused_by_reason: { unknown_node: 3, forbidden: 3 },
    });
    await listeners.close();
  });

  it("refuses at once, logs why and counts it, when the target has no route; carries once one appears", async () => {
    const echo = await startEcho();
    const { listeners, table, results, logs } = setup([]);
    await listeners.apply([{ name: "db", listen: "127.0.0.1:0", target: "db:1" }]);
    const address = listeners.list()[0]?.address as string;

    const refused = await dialListener(address);
    const t0 = performance.now();
    await once(refused, "end");
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(results).toEqual(["unknown_node"]);
    const warn = logs.find((l) => l.msg === "listener refused a connection");
    expect(warn?.fields).toMatchObject({ listener: "db", target: "db:1", status: 404, reason: "unknown_node" });

    // A second refusal within the interval is counted but not logged again.
    const again = await dialListener(address);
    await once(again, "end");
    expect(results).toEqual(["unknown_node", "unknown_node"]);
    expect(logs.filter((l) => l.msg === "listener refused a connection")).toHaveLength(1);

    table.set({ node: "r1", version: 2, routes: [route("r1", "db", [hop("db", `ipv4://127.0.0.1:${echo.port}`)])] });
    await listeners.apply([{ name: "db", listen: "127.0.0.1:0", target: `db:${echo.port}` }]);
    // Same listen address: retargeted in place, not rebound.
    expect(listeners.list()[0]?.address).toBe(address);
    const ok = await dialListener(address);
    ok.write("ping");
    const [chunk] = (await once(ok, "data")) as [Buffer];
    expect(chunk.toString()).toBe("ping");
    expect(results.at(-1)).toBe("carried");
    ok.destroy();
    await listeners.close();
    echo.server.close();
  });

  it("never tunnels to itself: a route whose gateway is this listener is refused once, not looped", async () => {
    const port = await freePort("127.0.0.1");
    const { listeners, results, relay } = setup([route("r1", "loop", [hop("loop", `ipv4://127.0.0.1:${port}`)])]);
    await listeners.apply([{ listen: `127.0.0.1:${port}`, target: "loop" }]);
    const s = await dialListener(listeners.list()[0]?.address as string);
    await once(s, "end");
    // One connection, refused at its dial: the relay did not dial its own listener (each such
    // dial would have been another connection here, until the per-source cap).
    expect(results).toEqual(["forbidden"]);
    expect(relay.openConnections).toBe(0);
    // Closed, the address is no longer the relay's own.
    await listeners.apply([]);
    expect(relay.selfAddresses.isSelf("127.0.0.1", port)).toBe(false);
    await listeners.close();
  });

  it("admits only the relay's client source ranges", async () => {
    const echo = await startEcho();
    const { listeners, results } = setup([route("r1", "db", [hop("db", `ipv4://127.0.0.1:${echo.port}`)])], {
      cidrs: ["10.0.0.0/8"],
    });
    await listeners.apply([{ listen: "127.0.0.1:0", target: `db:${echo.port}` }]);
    const s = await dialListener(listeners.list()[0]?.address as string);
    await once(s, "end");
    expect(results).toEqual(["auth"]);
    expect(echo.sockets).toHaveLength(0);
    await listeners.close();
    echo.server.close();
  });

  it("never widens what the table allows: a port that is not the target's gateway port is refused", async () => {
    const echo = await startEcho();
    const { listeners, results } = setup([route("r1", "db", [hop("db", `ipv4://127.0.0.1:${echo.port}`)])]);
    await listeners.apply([{ listen: "127.0.0.1:0", target: "db:22" }]);
    const s = await dialListener(listeners.list()[0]?.address as string);
    await once(s, "end");
    expect(results).toEqual(["forbidden"]);
    expect(echo.sockets).toHaveLength(0);
    await listeners.close();
    echo.server.close();
  });

  it("adds and removes listeners live without touching connections already carried", async () => {
    const echo = await startEcho();
    const { listeners } = setup([route("r1", "db", [hop("db", `ipv4://127.0.0.1:${echo.port}`)])]);
    await listeners.apply([{ name: "a", listen: "127.0.0.1:0", target: `db:${echo.port}` }]);
    const a = listeners.list()[0]?.address as string;
    const carried = await dialListener(a);
    carried.write("one");
    await once(carried, "data");

    // `a` is replaced by `b` (127.0.0.2, another listen address): a stops accepting, its tunnel stays.
    await listeners.apply([{ name: "b", listen: "127.0.0.2:0", target: `db:${echo.port}` }]);
    expect(listeners.list().map((l) => l.name)).toEqual(["b"]);
    const refused = connect({ host: "127.0.0.1", port: Number(a.split(":")[1]) });
    const [err] = (await once(refused, "error")) as [NodeJS.ErrnoException];
    expect(err.code).toBe("ECONNREFUSED");
    carried.write("two");
    const [chunk] = (await once(carried, "data")) as [Buffer];
    expect(chunk.toString()).toBe("two");
    carried.destroy();
    await listeners.close();
    echo.server.close();
  });

  it("reports a listen address it cannot bind and keeps the others", async () => {
    const { listeners } = setup([]);
    await listeners.apply([{ listen: "127.0.0.1:0", target: "db:1" }]);
    const taken = listeners.list()[0]?.address as string;
    const other = new ListenerManager({ carrier: setup([]).relay, clientCidrs: ["127.0.0.0/8"], log: () => {} });
    const problems = await other.apply([
      { listen: taken, target: "db:1" },
      { listen: "127.0.0.1:0", target: "db:1" },
    ]);
    expect(problems).toEqual([{ listen: taken, message: "cannot listen: EADDRINUSE" }]);
    expect(other.list()).toHaveLength(1);
    await other.close();
    await listeners.close();
  });
});

describe("listen addresses a listener may not take", () => {
  const manager = (reserved: string[] = []) =>
    new ListenerManager({
      carrier: setupWith("javascript", []).relay,
      clientCidrs: ["127.0.0.0/8"],
      log: () => {},
      reserved,
    });

  it("refuses the agent's own listen addresses (relay, admin) in any spelling, and a wildcard on their port", async () => {
    const [admin, relay] = [await freePort("127.0.0.1"), await freePort("127.0.0.1")];
    const m = manager([`0.0.0.0:${admin}`, `127.0.0.1:${relay}`]);
    const problems = await m.apply([
      { listen: `127.0.0.1:${admin}`, target: "db:1" },
      { listen: `[::ffff:127.0.0.1]:${relay}`, target: "db:1" },
      { listen: `[::]:${relay}`, target: "db:1" },
      { listen: "127.0.0.1:0", target: "db:1" },
    ]);
    expect(problems.map((p) => p.listen)).toEqual([
      `127.0.0.1:${admin}`,
      `[::ffff:127.0.0.1]:${relay}`,
      `[::]:${relay}`,
    ]);
    expect(problems[0]?.message).toBe(`0.0.0.0:${admin} is this agent's own listen address`);
    expect(m.list()).toHaveLength(1);
    await m.close();
  });

  it("keeps the first of two listeners that would bind one socket, however the second spells it", async () => {
    const port = await freePort("127.0.0.1");
    const m = manager();
    const shared = { name: "shared", listen: `127.0.0.1:${port}`, target: "shared-redis:6379" };
    // A later declaration on the same address: before, it retargeted the running listener in place.
    await m.apply([shared]);
    const problems = await m.apply([shared, { name: "later", listen: `127.0.0.1:${port}`, target: "other:6379" }]);
    expect(problems).toEqual([
      { listen: `127.0.0.1:${port}`, message: `listen address given twice; keeping 'shared' (127.0.0.1:${port})` },
    ]);
    expect(m.list().map((l) => l.target)).toEqual(["shared-redis:6379"]);
    // A wildcard or another spelling of the same socket is refused too, not bound beside it.
    const again = await m.apply([
      shared,
      { name: "wild", listen: `0.0.0.0:${port}`, target: "other:6379" },
      { name: "mapped", listen: `[::ffff:127.0.0.1]:${port}`, target: "other:6379" },
    ]);
    expect(again.map((p) => p.listen)).toEqual([`0.0.0.0:${port}`, `[::ffff:127.0.0.1]:${port}`]);
    expect(m.list().map((l) => l.target)).toEqual(["shared-redis:6379"]);
    await m.close();
  });
});
