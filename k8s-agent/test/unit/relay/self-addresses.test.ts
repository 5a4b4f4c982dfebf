// A relay never dials its own listeners, whatever its route table says: a node
// registered with a gateway on the relay's relay port, admin port or unix
// socket (directly, through a wildcard listener, or behind a DNS name) gets
// 403 forbidden, and canaries standing in for those listeners see nothing.
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type AddressLookup, SelfAddresses } from "../../../src/relay/self-addresses.ts";
import { type Canary, canary } from "../hardening/support.ts";
import { hop, request, route, startEcho, startRelay } from "./helpers.ts";

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
    const self = new SelfAddresses(lookup);
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

  it("knows which dials land on a listener", () => {
    const self = new SelfAddresses(async () => []);
    self.add({ address: "::", port: 7001 });
    self.add({ address: "10.9.8.7", port: 9090 });
    expect(self.isSelf("127.0.0.1", 7001)).toBe(true);
    expect(self.isSelf("::ffff:127.0.0.1", 7001)).toBe(true);
    expect(self.isSelf("::1", 7001)).toBe(true);
    expect(self.isSelf("127.0.0.1", 7002)).toBe(false);
    expect(self.isSelf("10.9.8.7", 9090)).toBe(true);
    expect(self.isSelf("0.0.0.0", 9090)).toBe(false); // a specific non-local address is not reached via 0.0.0.0
    expect(self.isSelf("10.9.8.6", 9090)).toBe(false);
  });
});
