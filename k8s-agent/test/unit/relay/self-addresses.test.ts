// A relay never dials its own listeners, whatever its route table says: a node
// registered with a gateway on the relay's relay port, admin port or unix
// socket (directly, through a wildcard listener, or behind a DNS name) gets
// 403 forbidden, and canaries standing in for those listeners see nothing.
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { type AddressInfo, connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { startAdminServer } from "../../../src/admin/server.ts";
import { ListenerManager } from "../../../src/listeners/manager.ts";
import { Relay } from "../../../src/relay/relay.ts";
import { type AddressLookup, normalizeIp, SelfAddresses } from "../../../src/relay/self-addresses.ts";
import { RoutingTable } from "../../../src/relay/table.ts";
import { ScalingConfigSchema } from "../../../src/scaling/config.ts";
import { ScalingSignals } from "../../../src/scaling/signals.ts";
import { type Canary, canary } from "../hardening/support.ts";
import { hop, readAnswer, request, route, startEcho, startRelay } from "./helpers.ts";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function track<T extends { server: { close(): unknown } }>(x: T): Promise<T> {
  cleanups.push(() => x.server.close());
  return x;
}

describe("the relay never dials its own listeners", () => {
  it("refuses 403 for its specific, wildcard and unix listeners and for DNS names resolving to them", async () => {
    // Stand-ins for the relay's own listeners (a wildcard relay port, an admin port, a unix socket).
    const wildcard: Canary = await track(await canary("0.0.0.0"));
    const admin: Canary = await track(await canary("127.0.0.1"));
    const dir = await mkdtemp(join(tmpdir(), "hopway-self-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const sockPath = join(dir, "relay.sock");
    let unixHits = 0;
    const unixServer = createServer((s) => {
      unixHits++;
      s.destroy();
    });
    unixServer.listen(sockPath);
    await once(unixServer, "listening");
    cleanups.push(() => unixServer.close());
    const echo = await track(await startEcho());

    let lookups = 0;
    const lookup: AddressLookup = async (host) => {
      lookups++;
      if (host === "self.test") return ["127.0.0.1"];
      if (host === "echo.test") return ["127.0.0.1"];
      throw Object.assign(new Error("not found"), { code: "ENOTFOUND" });
    };
    // echo.test is on loopback, as everything here is: allowed for names explicitly.
    const self = new SelfAddresses(lookup, true);
    self.add(wildcard.server.address() as { address: string; port: number });
    self.add(admin.server.address() as { address: string; port: number });
    self.add(unixServer.address() as string);

    const targets: Array<[string, string]> = [
      ["wild-lo", `ipv4://127.0.0.1:${wildcard.port}`],
      ["wild-lo2", `ipv4://127.0.0.9:${wildcard.port}`],
      ["wild-any", `ipv4://0.0.0.0:${wildcard.port}`],
      ["wild-v6", `ipv6://[::1]:${wildcard.port}`],
      ["wild-dns", `dns://self.test:${wildcard.port}`],
      ["admin", `ipv4://127.0.0.1:${admin.port}`],
      ["admin-any", `ipv4://0.0.0.0:${admin.port}`],
      ["admin-dns", `dns://self.test:${admin.port}`],
      ["sock", `unix://${sockPath}`],
      ["sock-dots", `unix://${dir}/./relay.sock`],
      // Listed second: the first alternative is fine, the second is not; never reached here.
      ["echo", `dns://echo.test:${echo.port}`],
    ];
    const r = await startRelay({
      name: "relay-a",
      selfAddresses: self,
      routes: targets.map(([name, addr]) => route("relay-a", name, [hop(name, addr)])),
    });
    cleanups.push(() => r.close());

    const results: Record<string, number> = {};
    for (const [name] of targets.slice(0, -1)) {
      const a = await request(r.port, `CONNECT ${name}:0 HTTP/1.1\r\n\r\n`);
      results[name] = a.status;
      expect(a.headers.get("hopway-error"), name).toBe("forbidden");
      expect(a.headers.get("hopway-reason"), name).toMatch(/one of this relay's own listeners/);
      a.socket.destroy();
    }
    console.log("self-dial refusals:", JSON.stringify(results));
    expect(Object.values(results).every((s) => s === 403)).toBe(true);
    expect(wildcard.hits + admin.hits + unixHits).toBe(0);

    // A name resolved once: the relay dials the address it checked.
    const before = lookups;
    const ok = await request(r.port, `CONNECT echo:${echo.port} HTTP/1.1\r\n\r\n`);
    expect(ok.status).toBe(200);
    ok.socket.write("ping");
    const [back] = (await once(ok.socket.resume(), "data")) as [Buffer];
    expect(back.toString()).toBe("ping");
    ok.socket.destroy();
    expect(lookups - before).toBe(1);
    expect(echo.sockets.length).toBe(1);
  });

  it("a connection the relay opened that comes back to it is never a local client nor a loopback caller", async () => {
    // The address check cannot see every way back (a NAT hairpin through a Service address, a
    // port forward): here the listeners are simply not registered, and the relay and the admin
    // server recognise their own connection by its address and port instead.
    const self = new SelfAddresses(async () => []);
    const registry = new Registry();
    const scaling = new ScalingSignals({ config: ScalingConfigSchema.parse({}), podName: "relay-0", registry });
    const admin = await startAdminServer({
      listen: "127.0.0.1:0",
      registry,
      scaling,
      tunnels: () => 0,
      ready: () => true,
      localApiToken: "local-api-token-0123456789",
      isOwnConnection: (accepted) => self.isOwnConnection(accepted),
    });
    cleanups.push(() => admin.close());
    // A relay and a listener the test wires itself, so the table can name the relay's own port.
    const table = new RoutingTable("relay-b");
    const relay = new Relay({ name: "relay-b", table, selfAddresses: self });
    const server = createServer({ allowHalfOpen: true }, (s) => relay.handle(s));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    cleanups.push(() => {
      relay.destroyAll();
      server.close();
    });
    const port = (server.address() as { port: number }).port;
    table.set({
      node: "relay-b",
      version: 1,
      routes: [
        route("relay-b", "hairpin", [hop("hairpin", `ipv4://127.0.0.1:${port}`)]),
        route("relay-b", "admin-hairpin", [hop("admin-hairpin", `ipv4://127.0.0.1:${admin.address.port}`)]),
      ],
    });

    // Through relay-b to its own listener: the tunnel opens (nothing told it the port is its
    // own), but the CONNECT inside arrives from relay-b's own connection and is refused.
    const outer = await request(port, `CONNECT hairpin:${port} HTTP/1.1\r\n\r\n`);
    expect(outer.status).toBe(200);
    outer.socket.resume();
    outer.socket.removeAllListeners("data");
    outer.socket.write(`CONNECT hairpin:${port} HTTP/1.1\r\n\r\n`);
    const inner = await readAnswer(outer.socket);
    expect(inner.status).toBe(403);
    expect(inner.headers.get("hopway-reason")).toMatch(/opened by this relay itself/);
    outer.socket.destroy();

    // Through relay-b to the admin server: a loopback caller, with the right token even, but
    // relay-b's own connection: refused, and the report never lands.
    const tunnel = await request(port, `CONNECT admin-hairpin:${admin.address.port} HTTP/1.1\r\n\r\n`);
    expect(tunnel.status).toBe(200);
    const body = JSON.stringify({ load: 9, holds_state: true, state_items: 99 });
    tunnel.socket.removeAllListeners("data");
    tunnel.socket.resume();
    tunnel.socket.write(
      `PUT /v1/local/report HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer local-api-token-0123456789\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    );
    const answer = await readAnswer(tunnel.socket);
    expect(answer.status).toBe(403);
    tunnel.socket.destroy();
    expect(scaling.status(0, true).reported_at).toBeNull();

    // The same way back from a listener, whose connections the relay dials natively (listen.c)
    // where it can: the dial has no socket, and is still known as the relay's own.
    const listeners = new ListenerManager({ carrier: relay, clientCidrs: ["127.0.0.0/8"], log: () => {} });
    cleanups.push(() => listeners.close());
    await listeners.apply([
      { listen: "127.0.0.1:0", target: `hairpin:${port}` },
      { listen: "127.0.0.2:0", target: `admin-hairpin:${admin.address.port}` },
    ]);
    const [toRelay, toAdmin] = listeners.list().map((l) => Number(l.address.slice(l.address.lastIndexOf(":") + 1)));
    const viaListener = connect({ host: "127.0.0.1", port: toRelay as number });
    await once(viaListener, "connect");
    viaListener.write(`CONNECT hairpin:${port} HTTP/1.1\r\n\r\n`);
    const refused = await readAnswer(viaListener);
    expect(refused.status).toBe(403);
    expect(refused.headers.get("hopway-reason")).toMatch(/opened by this relay itself/);
    viaListener.destroy();
    const report = connect({ host: "127.0.0.2", port: toAdmin as number });
    await once(report, "connect");
    report.write(
      `PUT /v1/local/report HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer local-api-token-0123456789\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    );
    expect((await readAnswer(report)).status).toBe(403);
    report.destroy();
    expect(scaling.status(0, true).reported_at).toBeNull();
  });

  it("refuses a DNS name that resolves to cloud metadata, the pod's loopback or an undialable address", async () => {
    const echo = await startEcho();
    cleanups.push(() => echo.server.close());
    const answers: Record<string, string[]> = {
      "meta.test": ["169.254.169.254"],
      "lo.test": ["127.0.0.1"],
      "v6lo.test": ["::1"],
      "zero.test": ["0.0.0.0"],
      // One bad answer among allowed ones refuses the name (below, with loopback allowed).
      "mixed.test": ["127.0.0.1", "169.254.1.1"],
    };
    const lookup: AddressLookup = async (host) => {
      const a = answers[host];
      if (a === undefined) throw Object.assign(new Error("not found"), { code: "ENOTFOUND" });
      return a;
    };
    const expected: Array<[string, string]> = [
      ["meta", "link-local"],
      ["lo", "loopback"],
      ["v6lo", "loopback"],
      ["zero", "undialable"],
    ];
    const r = await startRelay({
      name: "relay-a",
      selfAddresses: new SelfAddresses(lookup),
      routes: [
        ...expected.map(([name]) => route("relay-a", name, [hop(name, `dns://${name}.test:${echo.port}`)])),
        // The refused name is skipped for the hop's next address, an IP the edge checked.
        route("relay-a", "alt", [hop("alt", `dns://lo.test:${echo.port}`, [`ipv4://127.0.0.1:${echo.port}`])]),
      ],
    });
    cleanups.push(() => r.close());
    for (const [name, why] of expected) {
      const a = await request(r.port, `CONNECT ${name}:${echo.port} HTTP/1.1\r\n\r\n`);
      expect(a.status, name).toBe(403);
      expect(a.headers.get("hopway-error"), name).toBe("forbidden");
      expect(a.headers.get("hopway-reason"), name).toContain(why);
      a.socket.destroy();
    }
    expect(echo.sockets).toHaveLength(0);
    const ok = await request(r.port, `CONNECT alt:${echo.port} HTTP/1.1\r\n\r\n`);
    expect(ok.status).toBe(200);
    ok.socket.destroy();
    // With relay.dial_names_to_loopback, a name may lead to loopback (never to link-local).
    const allowing = new SelfAddresses(lookup, true);
    const lo = await allowing.check({
      address: `dns://lo.test:${echo.port}`,
      host: "lo.test",
      port: echo.port,
      path: "",
    });
    expect(lo.ok).toBe(true);
    const meta = await allowing.check({ address: "dns://meta.test:80", host: "meta.test", port: 80, path: "" });
    expect(meta).toMatchObject({ ok: false, forbidden: true });
    const mixed = await allowing.check({ address: "dns://mixed.test:80", host: "mixed.test", port: 80, path: "" });
    expect(mixed).toMatchObject({ ok: false, forbidden: true });
  });

  it("spells every address one way", () => {
    const cases: Array<[string, string]> = [
      ["10.1.2.3", "10.1.2.3"],
      ["::ffff:10.1.2.3", "10.1.2.3"],
      ["::ffff:a01:203", "10.1.2.3"],
      ["0:0:0:0:0:FFFF:0A01:0203", "10.1.2.3"],
      ["::1", "::1"],
      ["0000:0000:0000:0000:0000:0000:0000:0001", "::1"],
      ["FE80:0:0:0:0:0:0:1", "fe80::1"],
      ["2001:DB8::0:1", "2001:db8::1"],
      ["::", "::"],
      ["::ffff:0:a01:203", "::ffff:0:a01:203"], // not mapped: SIIT, not this host's IPv4
    ];
    for (const [given, one] of cases) expect(normalizeIp(given), given).toBe(one);
  });

  it("knows which dials land on a listener", () => {
    const self = new SelfAddresses(async () => []);
    self.add({ address: "::", port: 7001 });
    self.add({ address: "10.9.8.7", port: 9090 });
    expect(self.isSelf("127.0.0.1", 7001)).toBe(true);
    expect(self.isSelf("::ffff:127.0.0.1", 7001)).toBe(true);
    // However a route table spells a mapped or long-form address.
    for (const spelled of ["::ffff:7f00:1", "0:0:0:0:0:ffff:7f00:1", "::FFFF:7F00:0001", "0:0:0:0:0:0:0:1"]) {
      expect(self.isSelf(spelled, 7001), spelled).toBe(true);
    }
    expect(self.isSelf("::ffff:a09:807", 9090)).toBe(true); // 10.9.8.7
    expect(self.isSelf("::1", 7001)).toBe(true);
    expect(self.isSelf("127.0.0.1", 7002)).toBe(false);
    expect(self.isSelf("10.9.8.7", 9090)).toBe(true);
    expect(self.isSelf("0.0.0.0", 9090)).toBe(false); // a specific non-local address is not reached via 0.0.0.0
    expect(self.isSelf("10.9.8.6", 9090)).toBe(false);
  });
});

describe("own connections: where they came from and where they went", () => {
  it("a client that happens to use the same local port towards another address is not one", async () => {
    const target = createServer((s) => s.on("error", () => {}));
    target.listen(0, "127.0.0.1");
    await once(target, "listening");
    const out = connect({ host: "127.0.0.1", port: (target.address() as AddressInfo).port });
    await once(out, "connect");
    const self = new SelfAddresses();
    self.trackOutbound(out);
    const ours = {
      remoteAddress: out.localAddress,
      remotePort: out.localPort,
      localAddress: out.remoteAddress,
      localPort: out.remotePort,
    };
    expect(self.isOwnConnection(ours)).toBe(true);
    // Linux reuses a local port for connections to different destinations: another process's
    // client on the same address and port, arriving at one of our listeners, is a stranger
    // when ours went to another address of this host.
    expect(self.isOwnConnection({ ...ours, localPort: (ours.localPort ?? 0) + 1 })).toBe(false);
    out.destroy();
    await once(out, "close");
    expect(self.isOwnConnection(ours)).toBe(false);
    target.close();
  });

  it("a connection that closed before any check was made is not one, and one still open is", async () => {
    const target = createServer((s) => s.on("error", () => {}));
    target.listen(0, "127.0.0.1");
    await once(target, "listening");
    const port = (target.address() as AddressInfo).port;
    const self = new SelfAddresses();
    const open = async () => {
      const out = connect({ host: "127.0.0.1", port });
      await once(out, "connect");
      // As the relay does: the dialled address stands in for the peer's.
      self.trackOutbound(out, { host: "127.0.0.1", port });
      const seen = {
        remoteAddress: out.localAddress,
        remotePort: out.localPort,
        localAddress: "127.0.0.1",
        localPort: port,
      };
      return { out, seen };
    };
    const gone = await open();
    const kept = await open();
    gone.out.destroy();
    await once(gone.out, "close");
    expect(self.isOwnConnection(gone.seen)).toBe(false);
    expect(self.isOwnConnection(kept.seen)).toBe(true);
    kept.out.destroy();
    await once(kept.out, "close");
    expect(self.isOwnConnection(kept.seen)).toBe(false);
    target.close();
  });

  it("one that went to an address not of this host (a Service IP) and was brought back here is one", () => {
    const self = new SelfAddresses();
    // Only the fields the check reads, as a pod's dial to a Service IP and the NAT-ed arrival show them.
    const dialled = {
      localAddress: "10.1.2.3",
      localPort: 40_000,
      remoteAddress: "10.96.0.10",
      remotePort: 7001,
      on: () => dialled,
    } as unknown as Socket;
    self.trackOutbound(dialled);
    const back = { remoteAddress: "10.1.2.3", remotePort: 40_000, localAddress: "10.1.2.3", localPort: 1234 };
    expect(self.isOwnConnection(back)).toBe(true);
    expect(self.isOwnConnection({ ...back, remotePort: 40_001 })).toBe(false);
  });
});
