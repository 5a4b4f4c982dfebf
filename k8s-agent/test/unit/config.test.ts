import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../src/config.ts";
import { defaultPerNamespace } from "../../src/relay/relay.ts";

const minimal = `
edge: { url: "http://127.0.0.1:8787", realm: demo, token: "t0ken" }
node: relaysvr1
`;

function problems(yaml: string, env: Record<string, string> = {}): string[] {
  try {
    parseConfig(yaml, env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => `${p.path}: ${p.message}`);
    throw err;
  }
  return [];
}

describe("agent config", () => {
  it("fills defaults", () => {
    const c = parseConfig(minimal, {});
    expect(c.node).toBe("relaysvr1");
    expect(c.relay.listen).toEqual(["0.0.0.0:1234"]);
    expect(c.relay.client_cidrs).toEqual(["127.0.0.0/8", "::1/128"]);
    expect(c.relay.limits.max_connections).toBe(10_000);
    expect(c.scaling.target_load).toBe(0.7);
    expect(c.relay.tls).toEqual({ source: "edge", poll_seconds: 5 });
    expect(c.relay.links).toMatchObject({
      connection_window_bytes: 16 * 1024 * 1024,
      stream_window_bytes: 2 * 1024 * 1024,
      max_concurrent_streams: 1000,
      max_links_per_peer: 16,
      max_stream_window_bytes: 16 * 1024 * 1024,
      window_growth_budget_bytes: 256 * 1024 * 1024,
    });
  });

  it("a relay's default links to one neighbour carry at least as many tunnels as it admits connections", () => {
    // Fewer, and a neighbour that carries the relay's whole load could not: tunnels past
    // max_links_per_peer × max_concurrent_streams would fail as peer_streams_exhausted.
    const { links, limits } = parseConfig(minimal, {}).relay;
    expect(links.max_links_per_peer * links.max_concurrent_streams).toBeGreaterThanOrEqual(limits.max_connections);
  });

  it("lets environment variables override the file", () => {
    const c = parseConfig(minimal, {
      HOPWAY_EDGE_URL: "https://edge.example.com",
      HOPWAY_REALM: "prod",
      HOPWAY_TOKEN: "from-env",
      HOPWAY_TLS_DIR: "/var/run/secrets/hopway/tls",
      HOPWAY_RELAY_LISTEN: "127.0.0.1:1000, [::1]:1001",
      HOPWAY_MAX_CONNECTIONS: "77",
      HOPWAY_MAX_CONNECTIONS_PER_SOURCE: "12",
      HOPWAY_MAX_CONNECTIONS_PER_NAMESPACE: "20",
      HOPWAY_MAX_LINKS_PER_NAMESPACE: "8",
      HOPWAY_NAMESPACE_STREAMS_PER_SECOND: "0.5",
      HOPWAY_LINK_HANDSHAKES_PER_SOURCE_PER_SECOND: "0",
      HOPWAY_MAX_BUFFERED_BYTES: "33554432",
      POD_NAME: "relay-3",
      POD_NAMESPACE: "hopway",
      POD_UID: "9d2c4a1e-0f3b-4e5a-8c7d-6b5a4f3e2d1c",
    });
    expect(c.edge.url).toBe("https://edge.example.com");
    expect(c.edge.realm).toBe("prod");
    expect(c.edgeToken).toBe("from-env");
    expect(c.relay.tls).toEqual({ source: "files", dir: "/var/run/secrets/hopway/tls", poll_seconds: 5 });
    expect(c.relay.listen).toEqual(["127.0.0.1:1000", "[::1]:1001"]);
    expect(c.relay.limits.max_connections).toBe(77);
    expect(c.relay.limits.max_connections_per_source).toBe(12);
    expect(c.relay.limits.max_connections_per_namespace).toBe(20);
    expect(c.relay.limits.max_links_per_namespace).toBe(8);
    expect(c.relay.limits.namespace_streams_per_second).toBe(0.5);
    expect(c.relay.limits.link_handshakes_per_source_per_second).toBe(0);
    expect(c.relay.limits.max_buffered_bytes).toBe(32 * 1024 * 1024);
    expect(c.pod).toMatchObject({
      name: "relay-3",
      namespace: "hopway",
      ordinal: 3,
      uid: "9d2c4a1e-0f3b-4e5a-8c7d-6b5a4f3e2d1c",
    });
    expect(c.node).toBe("relaysvr1");
  });

  it("refuses a POD_UID the edge would refuse as Hopway-Instance, naming pod.uid", () => {
    expect(() => parseConfig(minimal, { POD_UID: "not a uid" })).toThrow(/pod\.uid/);
  });

  it("defaults the node to POD_NAME and reads secrets from files", () => {
    const dir = mkdtempSync(join(tmpdir(), "hopway-config-"));
    writeFileSync(join(dir, "token"), "file-token\n");
    const c = parseConfig(`edge: { url: "http://e", realm: r, token_file: "${dir}/token" }\n`, {
      POD_NAME: "relay-0",
    });
    expect(c.node).toBe("relay-0");
    expect(c.edgeToken).toBe("file-token");
  });

  it("hostile-peer settings: defaults, env overrides, and the local API token from a file", () => {
    const c = parseConfig(minimal, {});
    expect(c.relay.limits).toMatchObject({
      max_connections_per_source: 1_024,
      max_handshakes: 256,
      max_handshakes_per_source: 64,
      handshake_timeout_ms: 3_000,
      max_links_per_namespace: 128,
      namespace_streams_per_second: 1_000,
      namespace_stream_burst: 2_000,
      link_handshakes_per_source_per_second: 20,
      link_handshake_burst_per_source: 100,
      max_buffered_bytes: 64 * 1024 * 1024,
    });
    expect(() => parseConfig(minimal, { HOPWAY_MAX_BUFFERED_BYTES: "-1" })).toThrow(
      /relay\.limits\.max_buffered_bytes/,
    );
    expect(() => parseConfig(minimal, { HOPWAY_NAMESPACE_STREAMS_PER_SECOND: "fast" })).toThrow(
      /relay\.limits\.namespace_streams_per_second/,
    );
    expect(c.ownership).toEqual({
      edge_rate_per_second: 10,
      edge_burst: 20,
      negative_ttl_ms: 10_000,
      error_ttl_ms: 1_000,
    });
    expect(c.localApiToken).toBeUndefined();
    // Unset, the relay takes a quarter of max_connections (relay.ts, defaultPerNamespace).
    expect(c.relay.limits.max_connections_per_namespace).toBeUndefined();
    expect(defaultPerNamespace(c.relay.limits.max_connections)).toBe(2_500);
    expect(() => parseConfig(minimal, { HOPWAY_MAX_CONNECTIONS_PER_NAMESPACE: "-1" })).toThrow(
      /relay\.limits\.max_connections_per_namespace/,
    );
    const e = parseConfig(minimal, { HOPWAY_MAX_HANDSHAKES: "32", HOPWAY_LOCAL_API_TOKEN: "a-local-api-token-1234" });
    expect(e.relay.limits.max_handshakes).toBe(32);
    expect(e.localApiToken).toBe("a-local-api-token-1234");
    const dir = mkdtempSync(join(tmpdir(), "hopway-config-"));
    writeFileSync(join(dir, "local"), "local-api-token-from-file\n");
    writeFileSync(join(dir, "short"), "short\n");
    expect(parseConfig(`${minimal}admin: { local_api_token_file: "${dir}/local" }\n`, {}).localApiToken).toBe(
      "local-api-token-from-file",
    );
    expect(problems(`${minimal}admin: { local_api_token_file: "${dir}/short" }\n`)).toEqual([
      "admin.local_api_token_file: local API token must be at least 16 characters",
    ]);
    expect(problems(`${minimal}admin: { local_api_token: "short" }\n`)[0]).toMatch(/^admin\.local_api_token: /);
    expect(problems(`${minimal}admin: { local_api_token_file: "${dir}/missing" }\n`)[0]).toMatch(
      /^admin\.local_api_token_file: cannot read .*ENOENT/,
    );
  });

  // biome-ignore lint/suspicious/noTemplateCurlyInString: the title names the config's ${VAR} syntax
  it("expands ${VAR} in values and names a missing one by its field", () => {
    const c = parseConfig(`${minimal}data_dir: "/data/\${POD_NAME}"\n`, { POD_NAME: "relay-1" });
    expect(c.data_dir).toBe("/data/relay-1");
    expect(problems(`${minimal}data_dir: "\${NOPE}"\n`)).toContain("data_dir: environment variable NOPE is not set");
  });

  it("names every invalid field", () => {
    const found = problems(`
edge: { url: "ftp://x", realm: "Bad Realm" }
relay:
  listen: ["nowhere"]
  client_cidrs: ["10.0.0.0/99"]
  limits: { connect_timeout_ms: -1 }
records:
  - name: app1
    gateway: [{ priority: x, address: "ipv4://10.0.0.1:1" }]
scaling: { target_load: 0 }
surprise: 1
`);
    const paths = found.map((f) => f.split(":")[0]);
    for (const p of [
      "edge.url",
      "edge.realm",
      "relay.listen[0]",
      "relay.client_cidrs[0]",
      "relay.limits.connect_timeout_ms",
      "records[0].gateway[0].priority",
      "scaling.target_load",
    ]) {
      expect(paths).toContain(p);
    }
    expect(found.some((f) => f.includes("surprise"))).toBe(true);
  });

  it("requires a token and a node", () => {
    expect(problems(`edge: { url: "http://e", realm: r }\n`)).toEqual([
      "edge.token: edge.token or edge.token_file is required",
      "node: node is required (or POD_NAME to default it)",
    ]);
  });

  it("refuses the retired hop key, naming the field and what replaced it", () => {
    const replaced =
      "removed: relays authenticate each other with mTLS links now; configure relay.tls instead (docs/links.md)";
    expect(problems(`${minimal}relay: { hop_key: a-realm-wide-secret-key }\n`)).toEqual([`relay.hop_key: ${replaced}`]);
    expect(problems(`${minimal}relay: { hop_key_file: /x, max_clock_skew_seconds: 60 }\n`)).toEqual([
      `relay.hop_key_file: ${replaced}`,
      `relay.max_clock_skew_seconds: ${replaced}`,
    ]);
    // Named beside the file's other problems, not only once the rest is valid.
    expect(problems(`edge: { url: 5, realm: r, token: t }\nnode: n\nrelay: { hop_key: k }\n`)).toEqual(
      expect.arrayContaining([`relay.hop_key: ${replaced}`, expect.stringMatching(/^edge\.url: /)]),
    );
    expect(problems(minimal, { HOPWAY_HOP_KEY: "a-realm-wide-secret-key" })).toEqual([`HOPWAY_HOP_KEY: ${replaced}`]);
    expect(problems(minimal, { HOPWAY_HOP_KEY_FILE: "/x" })).toEqual([`HOPWAY_HOP_KEY_FILE: ${replaced}`]);
  });

  it("relay.tls takes files; relay.links bounds its settings", () => {
    const c = parseConfig(
      `${minimal}relay: { tls: { source: files, dir: /tls }, links: { stream_window_bytes: 1048576 } }\n`,
      {},
    );
    expect(c.relay.tls).toEqual({ source: "files", dir: "/tls", poll_seconds: 5 });
    expect(c.relay.links.stream_window_bytes).toBe(1048576);
    expect(problems(`${minimal}relay: { tls: { source: vault } }\n`)[0]).toMatch(/^relay\.tls\.source/);
    expect(problems(`${minimal}relay: { links: { max_concurrent_streams: 0 } }\n`)[0]).toMatch(
      /^relay\.links\.max_concurrent_streams/,
    );
    expect(problems(`${minimal}relay: { links: { max_links_per_peer: 0 } }\n`)[0]).toMatch(
      /^relay\.links\.max_links_per_peer/,
    );
    expect(problems(`${minimal}relay: { links: { window_growth_budget_bytes: -1 } }\n`)[0]).toMatch(
      /^relay\.links\.window_growth_budget_bytes/,
    );
  });

  it("relay.links.protocol: mux by default, h2 from the file or HOPWAY_LINK_PROTOCOL, nothing else", () => {
    expect(parseConfig(minimal, {}).relay.links.protocol).toBe("mux");
    expect(parseConfig(`${minimal}relay: { links: { protocol: h2 } }\n`, {}).relay.links.protocol).toBe("h2");
    expect(parseConfig(minimal, { HOPWAY_LINK_PROTOCOL: "h2" }).relay.links.protocol).toBe("h2");
    expect(problems(`${minimal}relay: { links: { protocol: http3 } }\n`)[0]).toMatch(/^relay\.links\.protocol/);
  });

  it("relay.native_splice: on by default, off from the file or HOPWAY_NATIVE_SPLICE, anything else refused", () => {
    expect(parseConfig(minimal, {}).relay.native_splice).toBe(true);
    expect(parseConfig(`${minimal}relay: { native_splice: false }\n`, {}).relay.native_splice).toBe(false);
    expect(parseConfig(minimal, { HOPWAY_NATIVE_SPLICE: "false" }).relay.native_splice).toBe(false);
    expect(parseConfig(minimal, { HOPWAY_NATIVE_SPLICE: "0" }).relay.native_splice).toBe(false);
    expect(
      parseConfig(`${minimal}relay: { native_splice: false }\n`, { HOPWAY_NATIVE_SPLICE: "1" }).relay.native_splice,
    ).toBe(true);
    expect(() => parseConfig(minimal, { HOPWAY_NATIVE_SPLICE: "maybe" })).toThrow(/relay\.native_splice/);
  });
});

describe("relay.tls (docs/identity.md)", () => {
  it("defaults to edge-issued certificates", () => {
    expect(parseConfig(minimal, {}).relay.tls).toEqual({ source: "edge", poll_seconds: 5 });
  });

  it("takes files with a directory, from the file or the environment", () => {
    const c = parseConfig(`${minimal}relay: { tls: { source: files, dir: /etc/hopway/tls, poll_seconds: 2 } }\n`, {});
    expect(c.relay.tls).toEqual({ source: "files", dir: "/etc/hopway/tls", poll_seconds: 2 });
    const e = parseConfig(minimal, { HOPWAY_TLS_SOURCE: "files", HOPWAY_TLS_DIR: "/tls" });
    expect(e.relay.tls).toMatchObject({ source: "files", dir: "/tls" });
  });

  it("names the field when files has no directory or the source is unknown", () => {
    expect(problems(`${minimal}relay: { tls: { source: files } }\n`)).toEqual([
      "relay.tls.dir: relay.tls.dir is required when source is files",
    ]);
    expect(problems(`${minimal}relay: { tls: { source: vault } }\n`)[0]).toMatch(/^relay\.tls\.source:/);
  });
});

describe("shipped example and the command line", () => {
  it("k8s-agent/examples/agent.yaml is a valid configuration", () => {
    const text = readFileSync(new URL("../../examples/agent.yaml", import.meta.url), "utf8");
    const c = parseConfig(text, { HOPWAY_TOKEN: "agent-token" });
    expect(c.node).toBe("relaysvr1");
    expect(c.records.map((r) => r.name)).toEqual(["relaysvr1", "app1"]);
    expect(c.relay.tls.source).toBe("edge");
  });

  it("the example stays on this machine: loopback addresses only, state outside the repository", () => {
    const text = readFileSync(new URL("../../examples/agent.yaml", import.meta.url), "utf8");
    const c = parseConfig(text, { HOPWAY_TOKEN: "agent-token" });
    const addresses = [
      ...c.relay.listen,
      c.admin.listen,
      ...c.records.flatMap((r) => ("gateway" in r ? (r.gateway ?? []) : []).map((g) => g.address)),
    ].map(String);
    expect(addresses.length).toBeGreaterThan(3);
    for (const a of addresses) expect(a).toMatch(/^(ipv4:\/\/)?127\.\d+\.\d+\.\d+:\d+$/);
    expect(new URL(c.edge.url).hostname).toBe("127.0.0.1");
    const repo = fileURLToPath(new URL("../../../", import.meta.url));
    expect(c.data_dir.startsWith("/")).toBe(true);
    expect(c.data_dir.startsWith(repo)).toBe(false);
    expect(c.edge.takeover).toBe(false);
  });

  it("hopway-agent exits 2 naming the bad field", () => {
    const dir = mkdtempSync(join(tmpdir(), "hopway-config-"));
    const file = join(dir, "bad.yaml");
    writeFileSync(file, `${minimal}relay: { listen: ["nowhere"] }\n`);
    const bin = fileURLToPath(new URL("../../bin/hopway-agent.mjs", import.meta.url));
    const r = spawnSync(process.execPath, [bin, "--config", file], { encoding: "utf8" });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("relay.listen[0]: must be host:port");
  });

  it("hopway-agent names a mistyped flag instead of asking for --config", () => {
    const bin = fileURLToPath(new URL("../../bin/hopway-agent.mjs", import.meta.url));
    const r = spawnSync(process.execPath, [bin, "--confg", "agent.yaml"], { encoding: "utf8" });
    expect(r.status).toBe(2);
    expect(r.stderr).toBe("hopway-agent: unknown flag --confg (usage: hopway-agent --config FILE)\n");
  });
});
