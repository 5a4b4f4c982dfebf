// The agent's ownership pieces against a real HTTP server standing in for the
// edge's membership endpoint: following, ETags, persistence and answering with
// the edge gone, the local API's validation, and key-affine CONNECT through a
// real relay (only members of a group, only ports in the route table).
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { keyHost, type Membership, membershipEpoch, OwnershipIndex } from "@hopway/core/ownership";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openTunnel } from "../../../test/support/tunnel.ts";
import { keyTargetResolver, localOwners, MembershipFollower } from "../../src/ownership/index.ts";
import { hop, route, startEcho, startRelay } from "./relay/helpers.ts";

const members = [
  { name: "kv-0", draining: false, holds_state: true },
  { name: "kv-1", draining: false, holds_state: true },
  { name: "kv-2", draining: true, holds_state: true },
];
let current: Membership = { group: "kv", version: 3, epoch: membershipEpoch(members), members };
let edge: Server;
let edgeUrl: string;
let requests = 0;
let notModified = 0;
const dir = mkdtempSync(join(tmpdir(), "hopway-ownership-"));

beforeAll(async () => {
  edge = createServer((req, res) => {
    requests++;
    const m = /^\/v1\/realms\/r\/groups\/([^/]+)\/membership$/.exec(req.url ?? "");
    if (req.headers.authorization !== "Bearer t") return res.writeHead(401).end();
    if (!m) return res.writeHead(404).end();
    if (m[1] === "node-not-group") return res.writeHead(400).end('{"error":{"code":"invalid_input"}}');
    if (m[1] !== "kv") return res.writeHead(404).end('{"error":{"code":"unknown_node"}}');
    const etag = `"${current.epoch}.${current.version}"`;
    if (req.headers["if-none-match"] === etag) {
      notModified++;
      return res.writeHead(304, { etag }).end();
    }
    res.writeHead(200, { etag, "content-type": "application/json" }).end(JSON.stringify(current));
  });
  edge.listen(0, "127.0.0.1");
  await once(edge, "listening");
  edgeUrl = `http://127.0.0.1:${(edge.address() as AddressInfo).port}`;
});
afterAll(() => {
  edge.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("MembershipFollower", () => {
  it("past maxGroups, the group asked about least recently makes room for a new one", async () => {
    // Any group the edge is asked about exists, with one member.
    let asked = 0;
    const many = createServer((req, res) => {
      asked++;
      const group = /\/groups\/([^/]+)\/membership$/.exec(req.url ?? "")?.[1] ?? "";
      const one = [{ name: `${group}-0`, draining: false, holds_state: true }];
      const body: Membership = { group, version: 1, epoch: membershipEpoch(one), members: one };
      res.writeHead(200, { etag: '"1"', "content-type": "application/json" }).end(JSON.stringify(body));
    });
    many.listen(0, "127.0.0.1");
    await once(many, "listening");
    const url = `http://127.0.0.1:${(many.address() as AddressInfo).port}`;
    const f = new MembershipFollower({ url, realm: "r", token: "t", pollMs: 60_000, maxGroups: 3 });
    try {
      for (const g of ["app", "x1", "x2"]) expect((await f.lookup(g)).ok).toBe(true);
      expect(f.groups).toEqual(["app", "x1", "x2"]);
      // The application keeps asking about its group; someone else asks about more groups.
      expect((await f.lookup("app")).ok).toBe(true);
      expect((await f.lookup("x3")).ok).toBe(true);
      expect(f.groups).toEqual(["app", "x2", "x3"]);
      const before = asked;
      expect((await f.lookup("app")).ok).toBe(true);
      expect(asked).toBe(before); // held: answered without the edge
      expect((await f.lookup("x4")).ok).toBe(true);
      expect(f.groups).toEqual(["app", "x3", "x4"]);
    } finally {
      await f.stop();
      many.close();
    }
  });

  it("a poll that returns for a group dropped meanwhile does not follow it again", async () => {
    // Every answer is new (no 304); polls of x1 take 300 ms.
    let version = 0;
    let x1Polls = 0;
    const slow = createServer((req, res) => {
      const group = /\/groups\/([^/]+)\/membership$/.exec(req.url ?? "")?.[1] ?? "";
      const polled = req.headers["if-none-match"] !== undefined;
      if (group === "x1" && polled) x1Polls++;
      const one = [{ name: `${group}-0`, draining: false, holds_state: true }];
      const body: Membership = { group, version: ++version, epoch: membershipEpoch(one), members: one };
      const send = () =>
        res.writeHead(200, { etag: `"${version}"`, "content-type": "application/json" }).end(JSON.stringify(body));
      if (group === "x1" && polled) setTimeout(send, 300);
      else send();
    });
    slow.listen(0, "127.0.0.1");
    await once(slow, "listening");
    const url = `http://127.0.0.1:${(slow.address() as AddressInfo).port}`;
    const f = new MembershipFollower({ url, realm: "r", token: "t", pollMs: 50, maxGroups: 2 });
    try {
      await f.start();
      expect((await f.lookup("x1")).ok).toBe(true);
      expect((await f.lookup("x2")).ok).toBe(true);
      // A poll of x1 is under way; x2 is asked about again, so x1 is the oldest; a new group takes its place.
      while (x1Polls === 0) await new Promise((r) => setTimeout(r, 10));
      expect((await f.lookup("x2")).ok).toBe(true);
      expect((await f.lookup("app")).ok).toBe(true);
      expect(f.groups).toEqual(["app", "x2"]);
      // The poll of x1 comes back: nothing changes.
      await new Promise((r) => setTimeout(r, 400));
      expect(f.groups).toEqual(["app", "x2"]);
    } finally {
      await f.stop();
      slow.close();
    }
  });

  it("fetches a group once, follows it with If-None-Match, and applies changes", async () => {
    const f = new MembershipFollower({ url: edgeUrl, realm: "r", token: "t", dataDir: dir, pollMs: 50 });
    await f.start();
    const first = await f.lookup("kv");
    expect(first.ok && first.view.membership.epoch).toBe(current.epoch);
    await new Promise((r) => setTimeout(r, 200));
    expect(notModified).toBeGreaterThan(0);
    const changed = [...members.slice(0, 2), { name: "kv-2", draining: true, holds_state: false }];
    current = { group: "kv", version: 3, epoch: membershipEpoch(changed), members: changed };
    await new Promise((r) => setTimeout(r, 200));
    const after = await f.lookup("kv");
    expect(after.ok && after.view.membership.members[2]?.holds_state).toBe(false);
    const missing = await f.lookup("nope");
    expect(missing).toMatchObject({ ok: false, status: 404 });
    expect(await f.lookup("node-not-group")).toMatchObject({ ok: false, status: 400 });
    await f.stop();
  });

  it("answers from disk after a restart with the edge gone", async () => {
    const gone = new MembershipFollower({
      url: "http://127.0.0.1:9",
      realm: "r",
      token: "t",
      dataDir: dir,
      pollMs: 50,
    });
    await gone.start();
    const r = await gone.lookup("kv");
    expect(r.ok && r.view.source).toBe("disk");
    expect(r.ok && r.view.membership.epoch).toBe(current.epoch);
    const local = await localOwners(gone, new URLSearchParams("group=kv&key=a&key=b"), undefined);
    expect(local.status).toBe(200);
    const idx = new OwnershipIndex(current.members);
    expect((local.body as { owners: unknown[] }).owners).toEqual([idx.lookup("a"), idx.lookup("b")]);
    // Never seen and the edge unreachable: 503, not a guess.
    expect(await gone.lookup("other")).toMatchObject({ ok: false, status: 503 });
    await gone.stop();
  });
});

describe("/v1/local/owners", () => {
  it("validates and names the field", async () => {
    const f = new MembershipFollower({ url: edgeUrl, realm: "r", token: "t", pollMs: 10_000 });
    const cases: Array<[string, unknown, number, string]> = [
      ["key=a", undefined, 400, "group"],
      ["group=kv&key=a&x=1", undefined, 400, "x"],
      [`group=kv&key=${"k".repeat(1025)}`, undefined, 400, "key[0]"],
      ["", { group: "kv", keys: [] }, 400, "keys"],
      ["", { group: "Bad!", keys: ["a"] }, 400, "group"],
      ["group=nope", undefined, 404, "group"],
    ];
    for (const [q, body, status, path] of cases) {
      const r = await localOwners(f, new URLSearchParams(q), body);
      expect(r.status, q || JSON.stringify(body)).toBe(status);
      expect((r.body as { error: { path: string } }).error.path).toBe(path);
    }
    const ok = await localOwners(f, new URLSearchParams(), { group: "kv", keys: ["x", "y"] });
    expect(ok.status).toBe(200);
    await f.stop();
  });
});

describe("key-affine CONNECT through a relay", () => {
  it("reaches the owner, refuses non-members, bad labels and ports outside the table", async () => {
    const f = new MembershipFollower({ url: edgeUrl, realm: "r", token: "t", pollMs: 10_000 });
    const echo0 = await startEcho();
    const echo1 = await startEcho();
    const relay = await startRelay({
      name: "gw",
      routes: [
        route("gw", "kv-0", [hop("kv-0", `ipv4://127.0.0.1:${echo0.port}`)]),
        route("gw", "kv-1", [hop("kv-1", `ipv4://127.0.0.1:${echo1.port}`)]),
      ],
      resolveTarget: keyTargetResolver(f),
    });
    const at = { host: "127.0.0.1", port: relay.port };
    const idx = new OwnershipIndex(current.members);
    const ports: Record<string, number> = { "kv-0": echo0.port, "kv-1": echo1.port };
    let checked = 0;
    for (const key of ["a", "b", "c", "user:7", "Ä/ö"]) {
      const owner = idx.lookup(key).owner as string;
      // Port 0: the owner's own gateway port, so members may listen on different ports.
      const t = await openTunnel(at, `${keyHost("kv", key)}:0`);
      expect(t.status, key).toBe(200);
      expect(t.headers.get("hopway-path")).toBe("gw");
      t.socket.destroy();
      const withPort = await openTunnel(at, `kv:${ports[owner]}`, {
        headers: { "Hopway-Key": encodeURIComponent(key) },
      });
      expect(withPort.status, key).toBe(200);
      withPort.socket.destroy();
      checked++;
    }
    expect(checked).toBe(5);
    for (const [authority, headers, status] of [
      ["a.key.nope:0", {}, 404],
      ["a.key.node-not-group:0", {}, 403],
      ["a--b.key.kv:0", {}, 400],
      ["kv:0", { "Hopway-Key": "%E0%A4%A" }, 400],
      ["a.key.kv:1", {}, 403], // a port that is not the owner's gateway port
    ] as const) {
      const t = await openTunnel(at, authority, { headers });
      expect(t.status, authority).toBe(status);
      t.socket.destroy();
    }
    await relay.close();
    echo0.server.close();
    echo1.server.close();
    await f.stop();
    expect(requests).toBeGreaterThan(0);
  });
});
