// An edge that misbehaves (answers 5xx, garbage, truncated or wrong-shaped JSON, a
// table for another node, a table with an older version, or hangs) never costs
// the agent its last good route table: it keeps routing, keeps retrying, and
// recovers as soon as a good answer comes.
import { once } from "node:events";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { RouteTable } from "@hopway/core/wire";
import { afterEach, describe, expect, it } from "vitest";
import { EdgeClient } from "../../../src/edge/client.ts";
import { waitFor } from "./support.ts";

const table = (version: number, node = "relay-h"): RouteTable => ({
  node,
  version,
  routes: [
    { from: node, to: "app1", hops: [{ node: "app1", address: "ipv4://127.0.0.1:1", priority: 1, alternatives: [] }] },
  ],
});

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

type Behaviour = (res: ServerResponse) => void;

const json = (res: ServerResponse, status: number, body: string, etag = '"x"') => {
  res.writeHead(status, { "content-type": "application/json", etag });
  res.end(body);
};

const BAD: Array<[string, Behaviour]> = [
  ["500", (res) => json(res, 500, '{"error":{"code":"internal","message":"boom"}}')],
  ["503 html", (res) => json(res, 503, "<html>bad gateway</html>")],
  ["garbage", (res) => json(res, 200, "\u0000\u0001not json")],
  ["truncated JSON", (res) => json(res, 200, JSON.stringify(table(99)).slice(0, 40))],
  ["wrong shape", (res) => json(res, 200, '{"node":"relay-h","version":"100","routes":{}}')],
  ["negative version", (res) => json(res, 200, JSON.stringify({ ...table(1), version: -5 }))],
  ["another node's table", (res) => json(res, 200, JSON.stringify(table(500, "someone-else")))],
  ["an older version", (res) => json(res, 200, JSON.stringify(table(2)))],
  ["invalid hop", (res) => json(res, 200, JSON.stringify({ ...table(101), routes: [{ from: "relay-h", to: 5 }] }))],
  ["empty 200", (res) => json(res, 200, "")],
  [
    "connection cut mid-body",
    (res) => {
      res.writeHead(200, { "content-type": "application/json", "content-length": "1000" });
      res.write('{"node":"relay-h",');
      setTimeout(() => res.socket?.destroy(), 5);
    },
  ],
];

describe("agent against a misbehaving edge", () => {
  it("keeps its last good table through every kind of bad answer, then recovers", async () => {
    let behaviour: Behaviour = (res) => json(res, 200, JSON.stringify(table(7)), '"7"');
    let requests = 0;
    const server: Server = createServer((req, res) => {
      requests++;
      req.resume();
      behaviour(res);
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    cleanups.push(() => {
      server.closeAllConnections();
      server.close();
    });
    const applied: number[] = [];
    const client = new EdgeClient({
      url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
      realm: "r",
      token: "t",
      node: "relay-h",
      records: [],
      leaseSeconds: 30,
      waitSeconds: 1,
      onTable: (t) => applied.push(t.version),
      backoffBaseMs: 10,
      backoffCapMs: 50,
    });
    await client.start();
    cleanups.push(() => client.stop(false));
    expect(await waitFor(() => client.version === 7, 5000)).toBe(true);

    const seen: string[] = [];
    for (const [what, b] of BAD) {
      behaviour = b;
      const before = requests;
      // Several bad answers in a row for each kind.
      expect(await waitFor(() => requests >= before + 3, 5000), what).toBe(true);
      expect(client.version, what).toBe(7);
      seen.push(what);
    }
    expect(applied).toEqual([7]);
    // A hanging edge (accepts, never answers) does not block either: the table stays.
    behaviour = () => {};
    await new Promise((r) => setTimeout(r, 300));
    expect(client.version).toBe(7);
    server.closeAllConnections();
    // And the first good answer is taken.
    behaviour = (res) => json(res, 200, JSON.stringify(table(8)), '"8"');
    expect(await waitFor(() => client.version === 8, 20_000)).toBe(true);
    expect(applied).toEqual([7, 8]);
    console.log(
      `hostile edge: ${BAD.length} kinds of bad answer (${requests} requests) never replaced table v7; recovered to v8`,
    );
  });
});
