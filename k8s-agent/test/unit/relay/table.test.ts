import { once } from "node:events";
import { connect, createServer } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { CarryOutcome } from "../../../src/listeners/manager.ts";
import { RoutingTable } from "../../../src/relay/table.ts";
import { hop, listen, request, route, startEcho, startRelay } from "./helpers.ts";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

describe("route table: lookup decisions", () => {
  it("answers repeated lookups from one decision until the table changes", () => {
    const table = new RoutingTable("relay-a");
    table.set({
      node: "relay-a",
      version: 1,
      routes: [route("relay-a", "app1", [hop("app1", "ipv4://10.0.0.1:6379")])],
    });
    const first = table.lookup("app1", 6379);
    expect(first.ok).toBe(true);
    expect(table.lookup("app1", 6379)).toBe(first);
    expect(table.lookup("app1", 80)).toMatchObject({ ok: false, reason: "forbidden" });

    table.set({
      node: "relay-a",
      version: 2,
      routes: [route("relay-a", "app1", [hop("app1", "ipv4://10.0.0.2:6379")])],
    });
    const moved = table.lookup("app1", 6379);
    expect(moved).not.toBe(first);
    expect(moved).toMatchObject({ ok: true, nextAddresses: [{ host: "10.0.0.2", port: 6379 }] });

    table.set({ node: "relay-a", version: 3, routes: [] });
    expect(table.lookup("app1", 6379)).toMatchObject({ ok: false, reason: "unknown_node" });
  });

  it("keeps no decision for nodes outside the table, and a bounded number of ports per node", () => {
    const table = new RoutingTable("relay-a");
    table.set({
      node: "relay-a",
      version: 1,
      routes: [route("relay-a", "app1", [hop("app1", "ipv4://10.0.0.1:6379")])],
    });
    expect(table.lookup("nobody", 1)).not.toBe(table.lookup("nobody", 1));
    for (let port = 1; port <= 1000; port++) table.lookup("app1", port);
    // Past the bound a port still gets the right answer, freshly decided each time.
    const late = table.lookup("app1", 999);
    expect(late).toMatchObject({ ok: false, reason: "forbidden" });
    expect(table.lookup("app1", 999)).not.toBe(late);
    expect(table.lookup("app1", 6379).ok).toBe(true);
  });
});

describe("route table: which intermediates are relays", () => {
  // victim-db is an intermediate only because a tenant's record (evil-bait) names it as its relay
  // (test/core/relays.test.ts). relay-x is a real relay the table vouches for; alias-x a record
  // that publishes relay-x's address.
  const routes = [
    route("relay-a", "victim-db", [hop("victim-db", "ipv4://10.9.0.2:5432")]),
    route("relay-a", "evil-bait", [hop("victim-db", "ipv4://10.9.0.2:5432"), hop("evil-bait", "ipv4://10.66.0.1:1")]),
    route("relay-a", "relay-x", [hop("relay-x", "ipv4://10.8.0.1:7001")]),
    route("relay-a", "app-x", [hop("relay-x", "ipv4://10.8.0.1:7001"), hop("app-x", "ipv4://10.7.0.1:80")]),
    route("relay-a", "alias-x", [hop("alias-x", "ipv4://10.8.0.1:7001")]),
  ];

  it("counts every intermediate, by name and address, when the table does not say (an earlier edge)", () => {
    const table = new RoutingTable("relay-a");
    table.set({ node: "relay-a", version: 1, routes });
    expect(table.lookup("victim-db", 5432)).toMatchObject({
      ok: false,
      detail: expect.stringMatching(/relay listener/),
    });
    expect(table.lookup("relay-x", 7001)).toMatchObject({ ok: false, detail: expect.stringMatching(/relay listener/) });
    expect(table.lookup("alias-x", 7001)).toMatchObject({ ok: false, detail: expect.stringMatching(/relay listener/) });
  });

  it("refuses only the relays the table lists, and aliases only of those it marks by address", () => {
    const byName = new RoutingTable("relay-a");
    byName.set({ node: "relay-a", version: 1, routes, relays: [{ node: "relay-x", aliases: false }] });
    expect(byName.lookup("victim-db", 5432)).toMatchObject({ ok: true, direct: true });
    expect(byName.lookup("relay-x", 7001)).toMatchObject({
      ok: false,
      detail: expect.stringMatching(/relay listener/),
    });
    expect(byName.lookup("alias-x", 7001)).toMatchObject({ ok: true });
    expect(byName.lookup("app-x", 80)).toMatchObject({ ok: true, direct: false });

    const byAddress = new RoutingTable("relay-a");
    byAddress.set({ node: "relay-a", version: 1, routes, relays: [{ node: "relay-x", aliases: true }] });
    expect(byAddress.lookup("victim-db", 5432)).toMatchObject({ ok: true });
    expect(byAddress.lookup("alias-x", 7001)).toMatchObject({
      ok: false,
      detail: expect.stringMatching(/relay listener/),
    });
  });
});

describe("route table: a connection after a route is removed is refused", () => {
  async function setup() {
    const e = await startEcho();
    cleanups.push(() => e.server.close());
    const r = await startRelay({
      name: "relay-a",
      routes: [route("relay-a", "app1", [hop("app1", `ipv4://127.0.0.1:${e.port}`)])],
    });
    cleanups.push(() => r.close());
    return { r, port: e.port };
  }

  it("over CONNECT", async () => {
    const { r, port } = await setup();
    const ok = await request(r.port, `CONNECT app1:${port} HTTP/1.1\r\n\r\n`);
    expect(ok.status).toBe(200);
    ok.socket.destroy();
    // Same target again: answered from the kept decision.
    const again = await request(r.port, `CONNECT app1:${port} HTTP/1.1\r\n\r\n`);
    expect(again.status).toBe(200);
    again.socket.destroy();

    r.table.set({ node: "relay-a", version: 2, routes: [] });
    const refused = await request(r.port, `CONNECT app1:${port} HTTP/1.1\r\n\r\n`);
    expect(refused.status).toBe(404);
    expect(refused.headers.get("hopway-error")).toBe("unknown_node");
    refused.socket.destroy();
  });

  it("through a listener (carry)", async () => {
    const { r, port } = await setup();
    const outcomes: CarryOutcome[] = [];
    // A listener in front of the relay, as the agent's listener manager hands over its sockets.
    const server = createServer((s) =>
      r.relay.carry(s, { authority: `app1:${port}`, node: "app1", port }, (o) => outcomes.push(o)),
    );
    const lport = await listen(server);
    cleanups.push(() => server.close());
    for (let i = 0; i < 2; i++) {
      const client = connect({ host: "127.0.0.1", port: lport });
      client.write("ping");
      const [echoed] = (await once(client, "data")) as [Buffer];
      expect(String(echoed)).toBe("ping");
      client.destroy();
    }
    expect(outcomes).toMatchObject([{ ok: true }, { ok: true }]);

    r.table.set({ node: "relay-a", version: 2, routes: [] });
    const refused = connect({ host: "127.0.0.1", port: lport });
    refused.on("error", () => {});
    await once(refused, "close");
    expect(outcomes[2]).toMatchObject({ ok: false, reason: "unknown_node", status: 404 });
  });
});
