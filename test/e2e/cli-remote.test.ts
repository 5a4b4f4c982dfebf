// `hopway import | route | nodes` against the real Worker under wrangler dev:
// tables for people, --json for scripts, and the exit codes and error codes
// scripts branch on.
import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run as importCmd } from "../../src/cli/commands/import.ts";
import { run as nodesCmd } from "../../src/cli/commands/nodes.ts";
import { run as routeCmd } from "../../src/cli/commands/route.ts";
import type { CliIo } from "../../src/cli/edge-client.ts";
import { createRealm, type LocalEdge, startLocalEdge } from "../support/local-edge.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const CROSS_REGION = join(ROOT, "test/fixtures/topologies/cross-region.yaml");
const REALM = "cli-e2e";

let edge: LocalEdge;
let readerToken: string;
let tmp: string;

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(
  command: (argv: readonly string[], io: CliIo) => Promise<number>,
  argv: string[],
  env: Record<string, string | undefined> = {},
): Promise<Outcome> {
  let stdout = "";
  let stderr = "";
  const io: CliIo = {
    stdout: (t) => {
      stdout += t;
    },
    stderr: (t) => {
      stderr += t;
    },
    env,
  };
  const code = await command(argv, io);
  return { code, stdout, stderr };
}

const asAdmin = () => ["--edge", edge.url, "--realm", REALM, "--token", edge.adminToken];
const readerEnv = () => ({ HOPWAY_EDGE_URL: edge.url, HOPWAY_REALM: REALM, HOPWAY_TOKEN: readerToken });

beforeAll(async () => {
  edge = await startLocalEdge();
  await createRealm(edge, REALM);
  tmp = mkdtempSync(join(tmpdir(), "hopway-cli-"));
  const r = await fetch(`${edge.url}/v1/realms/${REALM}/tokens`, {
    method: "POST",
    headers: { authorization: `Bearer ${edge.adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ role: "reader", namespaces: [] }),
  });
  expect(r.status).toBeLessThan(300);
  readerToken = ((await r.json()) as { token: string }).token;
});

afterAll(async () => {
  await edge?.stop();
});

describe("hopway import", () => {
  it("imports the cross-region topology", async () => {
    const out = await cli(importCmd, [CROSS_REGION, ...asAdmin()]);
    expect(out.stderr).toBe("");
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/^imported 5 records into realm cli-e2e \(version \d+\)\n$/);

    const json = await cli(importCmd, [CROSS_REGION, ...asAdmin(), "--json"]);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ records: 5 });
  });

  it("rejects an invalid file with exit 2, naming every bad field by path, and stores nothing of it", async () => {
    const bad = join(tmp, "bad.yaml");
    writeFileSync(
      bad,
      [
        "newapp:",
        "  discovery:",
        "    name: newapp",
        "    gateway:",
        "      - priority: high",
        "        address: ipv4://10.0.0.9:1234",
        "other:",
        "  discovery:",
        "    name: other",
        "    gateway:",
        "      - priority: 1",
        "        address: tcp://nowhere",
        "",
      ].join("\n"),
    );
    const out = await cli(importCmd, [bad, ...asAdmin()]);
    expect(out.code).toBe(2);
    expect(out.stdout).toBe("");
    expect(out.stderr).toContain("invalid_input");
    expect(out.stderr).toContain("newapp.discovery.gateway[0].priority");
    expect(out.stderr).toContain("other.discovery.gateway[0].address");
    const after = await cli(nodesCmd, ["newapp", "--json"], readerEnv());
    expect(JSON.parse(after.stdout).nodes).toEqual([]);
  });

  it("is a usage error (exit 2) for a missing file, a missing edge and stray arguments", async () => {
    const missing = await cli(importCmd, [join(tmp, "nope.yaml"), ...asAdmin()]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("ENOENT");
    const noEdge = await cli(importCmd, [CROSS_REGION, "--realm", REALM]);
    expect(noEdge.code).toBe(2);
    expect(noEdge.stderr).toContain("HOPWAY_EDGE_URL");
    const stray = await cli(importCmd, [CROSS_REGION, "--bogus", ...asAdmin()]);
    expect(stray.code).toBe(2);
  });

  it("needs a writing token: a reader gets exit 1 with forbidden", async () => {
    const out = await cli(importCmd, [CROSS_REGION], readerEnv());
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/forbidden \(HTTP 403\)/);
  });
});

describe("hopway route", () => {
  it("prints the route app2 → app1 as a table, from the environment's edge, realm and reader token", async () => {
    const out = await cli(routeCmd, ["--from", "app2", "--to", "app1"], readerEnv());
    expect(out.stderr).toBe("");
    expect(out.code).toBe(0);
    const lines = out.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^app2 -> app1: 4 hops, 3 relays/);
    expect(lines[1]).toMatch(/^#\s+NODE\s+ADDRESS\s+PRIORITY\s+ALTERNATIVES$/);
    expect(lines.slice(3).map((l) => l.split(/\s+/).slice(0, 4))).toEqual([
      ["1", "relaysvr2", "ipv4://10.1.1.1:1234", "1"],
      ["2", "relaysvr3", "ipv4://192.18.0.1:1234", "2"],
      ["3", "relaysvr1", "ipv4://192.16.0.1:1234", "3"],
      ["4", "app1", "ipv4://10.0.0.1:1234", "1"],
    ]);
  });

  it("prints the edge's route object with --json", async () => {
    const out = await cli(routeCmd, ["--from", "app2", "--to", "app1", "--json"], readerEnv());
    expect(out.code).toBe(0);
    const route = JSON.parse(out.stdout);
    expect(route).toMatchObject({ from: "app2", to: "app1" });
    expect(route.hops.map((h: { node: string }) => h.node)).toEqual(["relaysvr2", "relaysvr3", "relaysvr1", "app1"]);
  });

  it("flags win over the environment", async () => {
    const out = await cli(routeCmd, ["--from", "app2", "--to", "app1", "--token", "wrong"], readerEnv());
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/^hopway: unauthorized \(HTTP 401\)/);
  });

  it("exits 1 with no_route and the reason when there is none", async () => {
    const put = await fetch(`${edge.url}/v1/realms/${REALM}/nodes/island`, {
      method: "PUT",
      headers: { authorization: `Bearer ${edge.adminToken}`, "content-type": "application/json" },
      body: JSON.stringify({
        name: "island",
        gateway: [{ priority: 1, address: "ipv4://10.9.0.1:1234", match: { metadata: { namespace_name: "nowhere" } } }],
      }),
    });
    expect(put.status).toBeLessThan(300);
    const out = await cli(routeCmd, ["--from", "app2", "--to", "island"], readerEnv());
    expect(out.code).toBe(1);
    expect(out.stdout).toMatch(/^app2 -> island: no route \((no_matching_gateway|no_relay_chain)\)/);
    expect(out.stderr).toMatch(/^hopway: no_route: (no_matching_gateway|no_relay_chain)/);
    const json = await cli(routeCmd, ["--from", "app2", "--to", "island", "--json"], readerEnv());
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ hops: null });
  });

  it("shows one route per member for a group, exit 0 while any member is reachable", async () => {
    const put = await fetch(`${edge.url}/v1/realms/${REALM}/nodes/apps`, {
      method: "PUT",
      headers: { authorization: `Bearer ${edge.adminToken}`, "content-type": "application/json" },
      // Members of two namespaces on purpose: any_namespace says so (docs/contract/records.md §1.4).
      body: JSON.stringify({
        name: "apps",
        type: "group",
        any_namespace: true,
        node_list: [{ node_name: "app1" }, { node_name: "island" }],
      }),
    });
    expect(put.status).toBeLessThan(300);
    const out = await cli(routeCmd, ["--from", "app2", "--to", "apps"], readerEnv());
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/^app2 -> apps: group of 2, 1 reachable\n/);
    expect(out.stdout).toMatch(/\napp2 -> app1: 4 hops, 3 relays/);
    expect(out.stdout).toMatch(/\napp2 -> island: no route/);
    const del = await fetch(`${edge.url}/v1/realms/${REALM}/nodes/apps`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${edge.adminToken}` },
    });
    expect(del.status).toBe(200);
  });

  it("exits 1 with unknown_node for a name the realm does not hold, 2 for a malformed one", async () => {
    const unknown = await cli(routeCmd, ["--from", "app2", "--to", "ghost"], readerEnv());
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/unknown_node \(HTTP 404\)/);
    const malformed = await cli(routeCmd, ["--from", "App_2", "--to", "app1"], readerEnv());
    expect(malformed.code).toBe(2);
    const missing = await cli(routeCmd, ["--from", "app2"], readerEnv());
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("--to NAME is required");
  });

  it("exits 1 with network when the edge is not there", async () => {
    // A port that was just free: nothing listens there, so the connection is refused.
    const probe = createServer();
    await new Promise<void>((done) => probe.listen(0, "127.0.0.1", done));
    const { port } = probe.address() as AddressInfo;
    await new Promise((done) => probe.close(done));
    const url = `http://127.0.0.1:${port}`;
    const out = await cli(routeCmd, ["--from", "a", "--to", "b", "--edge", url, "--realm", REALM]);
    expect(out.code).toBe(1);
    expect(out.stderr).toBe(`hopway: network: cannot reach ${url}: connect ECONNREFUSED 127.0.0.1:${port}\n`);
  });
});

describe("hopway nodes", () => {
  it("lists every record as a table", async () => {
    const out = await cli(nodesCmd, [], readerEnv());
    expect(out.code).toBe(0);
    const lines = out.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^NAME\s+TYPE\s+NAMESPACE\s+KIND\s+LABELS\s+GATEWAYS/);
    expect(lines.slice(1).map((l) => l.split(/\s+/)[0])).toEqual([
      "app1",
      "app2",
      "island",
      "relaysvr1",
      "relaysvr2",
      "relaysvr3",
    ]);
    const relaysvr1 = lines.find((l) => l.startsWith("relaysvr1")) ?? "";
    expect(relaysvr1).toMatch(
      /relaysvr1\s+node\s+namespace_1\s+relay\s+area\.region=CN\s+1:ipv4:\/\/10\.0\.1\.1:1234 2:/,
    );
  });

  it("filters by kind, label, namespace and name, and prints records with --json", async () => {
    const relaysUS = await cli(nodesCmd, ["--kind", "relay", "--label", "area.region=US", "--json"], readerEnv());
    expect(relaysUS.code).toBe(0);
    expect(JSON.parse(relaysUS.stdout).nodes.map((n: { name: string }) => n.name)).toEqual(["relaysvr2"]);

    const ns1 = await cli(nodesCmd, ["--namespace", "namespace_1", "--json"], readerEnv());
    expect(JSON.parse(ns1.stdout).nodes.map((n: { name: string }) => n.name)).toEqual(["app1", "relaysvr1"]);

    const one = await cli(nodesCmd, ["--name", "app2", "--json"], readerEnv());
    const [app2] = JSON.parse(one.stdout).nodes;
    expect(app2).toMatchObject({ name: "app2", type: "node", metadata: { labels: { "area.region": "US" } } });

    const none = await cli(nodesCmd, ["--kind", "nothing"], readerEnv());
    expect(none.code).toBe(0);
    expect(none.stdout).toBe("no records match\n");
  });

  it("rejects a malformed selector with exit 2", async () => {
    const out = await cli(nodesCmd, ["--label", "novalue"], readerEnv());
    expect(out.code).toBe(2);
    expect(out.stderr).toContain("KEY=VALUE");
    const badRealm = await cli(nodesCmd, ["--realm", "Bad Realm"], readerEnv());
    expect(badRealm.code).toBe(2);
  });

  it("exits 1 with unauthorized for a bad token", async () => {
    const out = await cli(nodesCmd, ["--json"], { ...readerEnv(), HOPWAY_TOKEN: "bogus" });
    expect(out.code).toBe(1);
    expect(out.stdout).toBe("");
    expect(out.stderr).toMatch(/^hopway: unauthorized \(HTTP 401\)/);
  });
});

describe("the hopway binary", () => {
  // Through bin/hopway.mjs as a user runs it: the exit status is the process's, output on the real streams.
  async function hopway(args: string[], env: Record<string, string>): Promise<Outcome> {
    try {
      const { stdout, stderr } = await promisify(execFile)(process.execPath, [join(ROOT, "bin/hopway.mjs"), ...args], {
        env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
        timeout: 30_000,
      });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const e = error as { code?: unknown; stdout?: string; stderr?: string };
      if (typeof e.code !== "number") throw error;
      return { code: e.code, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
    }
  }

  it("exits 0 with the route as JSON, 1 on a bad token, 2 on bad usage", async () => {
    const ok = await hopway(["route", "--from", "app2", "--to", "app1", "--json"], readerEnv());
    expect(ok.stderr).toBe("");
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout).hops.map((h: { node: string }) => h.node)).toEqual([
      "relaysvr2",
      "relaysvr3",
      "relaysvr1",
      "app1",
    ]);
    const denied = await hopway(["nodes"], { ...readerEnv(), HOPWAY_TOKEN: "bogus" });
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/^hopway: unauthorized \(HTTP 401\)/);
    const usage = await hopway(["route", "--from", "app2"], readerEnv());
    expect(usage.code).toBe(2);
  });
});
