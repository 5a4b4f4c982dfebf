// The relay is never an open proxy: a matrix of well over 500 CONNECT targets
// that its table does not allow (loopback ports, cloud metadata, private
// ranges, IPv6 literals, host names, odd ports of known nodes, encoded and
// case tricks, userinfo, absolute-form URLs) is refused, and canary listeners
// on every real loopback target the table does not allow see no connection.

import { NAME_PATTERN } from "@hopway/core/schema";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hop, route } from "../relay/helpers.ts";
import {
  type Canary,
  type CountingRelay,
  canary,
  countingRelay,
  dial,
  pool,
  sleep,
  statusOf,
  waitFor,
} from "./support.ts";

let relay: CountingRelay;
const canaries: Canary[] = [];
let app1: Canary;
let appB: Canary;

beforeAll(async () => {
  // The two allowed targets are canaries too: the matrix never names them correctly.
  app1 = await canary("127.0.0.1");
  appB = await canary("127.0.0.2");
  canaries.push(await canary("127.0.0.1"), await canary("127.0.0.2"), await canary("127.0.0.3"));
  try {
    canaries.push(await canary("::1"));
  } catch {
    // No IPv6 loopback on this host: the IPv6 literals are still refused, just without a canary there.
  }
  relay = await countingRelay({
    name: "r1",
    routes: [
      route("r1", "app1", [hop("app1", `ipv4://127.0.0.1:${app1.port}`)]),
      route("r1", "app-b", [hop("app-b", `ipv4://127.0.0.2:${appB.port}`)]),
      route("r1", "cli", [hop("cli", null, [], 0)]),
      { from: "r1", to: "iso", hops: null, reason: "no_relay_chain" },
    ],
  });
});

afterAll(async () => {
  await relay.close();
  for (const c of [app1, appB, ...canaries]) c.server.close();
});

/**
 * What the relay must answer, derived from docs/contract/relay-protocol.md §1 and §2.3 rather than from its parser:
 * a target is `<dns-1123 name>[:<decimal port>]` or it is a bad request; a name not in
 * the table is 404; a name in the table on a port that is not its gateway port, this
 * relay itself, a client or a node without a route is 403. undefined = really allowed.
 */
function expected(target: string, allowedPorts: Map<string, Set<number>>): number | undefined {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: any control or space character is malformed.
  if (/[\s\0-\x1f\x7f]/.test(target)) return 400;
  const parts = target.split(":");
  if (parts.length > 2) return 400;
  const [name = "", portText] = parts;
  if (name.length > 253 || !NAME_PATTERN.test(name)) return 400;
  let port = 0;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) return 400;
    port = Number(portText);
  }
  const ports = allowedPorts.get(name);
  if (ports === undefined) return ["r1", "cli", "iso"].includes(name) ? 403 : 404;
  return port === 0 || ports.has(port) ? undefined : 403;
}

describe("relay: not an open proxy", () => {
  it("refuses a matrix of 500+ disallowed targets and no byte reaches any canary", async () => {
    const C = canaries.map((c) => c.port);
    const names = [
      ...["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.1", "0.0.0.0", "0", "localhost", "localhost."],
      ...["169.254.169.254", "metadata.google.internal", "metadata", "169.254.170.2", "fd00-ec2--254"],
      ...["10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.255.254", "192.168.0.1", "100.64.0.1"],
      ...["2130706433", "0x7f000001", "017700000001", "0177.0.0.1", "127.000.000.001"],
      ...["[::1]", "::1", "[::ffff:127.0.0.1]", "[fe80::1%25lo]", "[::]", "fd00::1", "[0:0:0:0:0:0:0:1]"],
      ...["APP1", "App1", "app1.", "app1..", ".app1", "app1%2e", "app1%2E", "%61pp1", "app%31", "app1%00"],
      ...["app1.evil.example", "evil.example", "app1.local", "-app1", "app1-", "a".repeat(254), "app1\\"],
      ...["user@app1", "user:pass@app1", "app1@127.0.0.1", "@app1", "app1#frag", "app1/", "app1?x=1"],
      ...["http://app1", "http://127.0.0.1", "https://app1", "//app1", "app1/..%2f127.0.0.1"],
      ...["r1", "cli", "iso", "nobody", "app-b.", "app_b", "APP-B", "app-b.app1", "app1,app-b", "*"],
    ];
    const ports = [
      ...["", ":0", `:${app1.port}`, `:${appB.port}`, ...C.map((p) => `:${p}`), `:0${C[0]}`],
      ...[":22", ":80", ":443", ":6379", ":65535", ":65536", ":99999", ":-1", ":+80", ":0x50", ":", "::"],
    ];
    const allowed = new Map([
      ["app1", new Set([app1.port])],
      ["app-b", new Set([appB.port])],
    ]);
    const cases: Array<{ head: string; want: number; label: string }> = [];
    for (const n of names) {
      for (const p of ports) {
        const target = `${n}${p}`;
        const want = expected(target, allowed);
        if (want === undefined) continue;
        cases.push({ head: `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`, want, label: target });
      }
    }
    // Odd ports of the known nodes, and smuggling a good Host beside a bad target.
    for (const c of C) {
      cases.push({ head: `CONNECT app1:${c} HTTP/1.1\r\nHost: app1:${app1.port}\r\n\r\n`, want: 403, label: "host" });
      cases.push({ head: `CONNECT app-b:${c} HTTP/1.1\r\n\r\n`, want: 403, label: `app-b:${c}` });
      // Proxy-style requests are not tunnels.
      cases.push({ head: `GET http://127.0.0.1:${c}/ HTTP/1.1\r\n\r\n`, want: 405, label: "GET abs" });
      cases.push({ head: `GET / HTTP/1.1\r\nHost: 127.0.0.1:${c}\r\n\r\n`, want: 405, label: "GET host" });
    }
    expect(cases.length).toBeGreaterThanOrEqual(500);

    const t0 = performance.now();
    const failures: string[] = [];
    const byStatus = new Map<number, number>();
    await pool(cases.length, 64, async (i) => {
      const c = cases[i] as (typeof cases)[number];
      const s = dial(relay.host, relay.port);
      let buf = Buffer.alloc(0);
      s.on("data", (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
      });
      s.once("connect", () => s.write(c.head));
      const closed = await Promise.race([
        new Promise<boolean>((r) => s.once("close", () => r(true))),
        sleep(2000).then(() => false),
      ]);
      const status = statusOf(buf);
      byStatus.set(status ?? 0, (byStatus.get(status ?? 0) ?? 0) + 1);
      if (status !== c.want || !closed) {
        failures.push(`${JSON.stringify(c.label)}: got ${status} closed=${closed}, want ${c.want}`);
      }
      s.destroy();
    });
    const ms = performance.now() - t0;
    expect(failures, failures.slice(0, 20).join("\n")).toEqual([]);
    // Nothing was dialed: no canary, no allowed target on the wrong terms, and not the relay
    // itself (it accepted exactly the matrix's connections, so it never connected to itself).
    for (const c of [app1, appB, ...canaries]) expect(c.hits, `${c.host}:${c.port}`).toBe(0);
    expect(relay.accepted).toBe(cases.length);
    // The relay's own side closes once our FIN reaches it: give that a moment, never more than a second.
    expect(await waitFor(() => relay.relay.openConnections === 0, 1000)).toBe(true);
    console.log(
      `open-proxy matrix: ${cases.length} targets refused (${[...byStatus].map(([k, v]) => `${k}×${v}`).join(", ")}) in ${ms.toFixed(0)} ms; canaries hit: 0 of ${canaries.length + 2}`,
    );

    // The control: the same canaries do count a legitimate tunnel, so the zero above means something.
    for (const target of [`app1:${app1.port}`, "app1", "app-b:0"]) {
      const s = dial(relay.host, relay.port);
      s.write(`CONNECT ${target} HTTP/1.1\r\n\r\n`);
      const first = await new Promise<Buffer>((r) => s.once("data", (d: Buffer) => r(d)));
      expect(statusOf(first)).toBe(200);
      s.destroy();
    }
    expect(app1.hits).toBe(2);
    expect(appB.hits).toBe(1);
  });
});
