// `hopway routes`, run the way a user runs it: the bin shim in a child process.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
const FIXTURES = join(ROOT, "test/fixtures/topologies");
const BIN = join(ROOT, "bin/hopway.mjs");

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function hopway(args: string[], stdin?: string): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [BIN, ...args],
      { cwd: ROOT, timeout: 30_000, maxBuffer: 64 << 20 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1;
        resolve({ code, stdout, stderr });
      },
    );
    if (stdin !== undefined) child.stdin?.end(stdin);
    else child.stdin?.end();
  });
}

const brief = (routes: Array<{ from: string; to: string; hops: Array<Record<string, unknown>> | null }>) =>
  routes.map((r) => ({
    from: r.from,
    to: r.to,
    hops: r.hops?.map((h) => ({ node: h.node, address: h.address, priority: h.priority })) ?? null,
  }));

describe("hopway routes", () => {
  const expected = JSON.parse(readFileSync(join(FIXTURES, "expected-routes.json"), "utf8")) as Record<
    string,
    unknown[]
  >;

  it("--json with no pair: every ordered pair, exactly the expected routes of docs/contract/routing.md §6", async () => {
    // One topology is enough here: the conformance suite checks both in-process.
    const file = "cross-region.yaml";
    const r = await hopway(["routes", "--topology", join(FIXTURES, file), "--json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const routes = JSON.parse(r.stdout);
    expect(brief(routes)).toEqual(expect.arrayContaining(expected[file]!));
    expect(routes).toHaveLength(expected[file]!.length);
  });

  it("--from/--to gives the one route; without --json a readable table", async () => {
    const topo = join(FIXTURES, "cross-region.yaml");
    const json = await hopway(["routes", "--topology", topo, "--from", "app2", "--to", "app1", "--json"]);
    const table = await hopway(["routes", "--topology", topo, "--from", "app2", "--to", "app1"]);
    expect(json.code).toBe(0);
    expect(brief(JSON.parse(json.stdout)).map((r) => r.hops?.map((h) => h.node))).toEqual([
      ["relaysvr2", "relaysvr3", "relaysvr1", "app1"],
    ]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/app2 -> app1: 4 hops/);
    expect(table.stdout).toMatch(/relaysvr3\s+ipv4:\/\/192\.18\.0\.1:1234\s+2/);
    expect(() => JSON.parse(table.stdout)).toThrow();
  });

  it("--shared-namespaces resolves as a realm that shares only those: a tenant's node dressed as a relay stays out", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hopway-routes-shared-"));
    const file = join(dir, "topology.yaml");
    // Route computation only: nothing dials these addresses.
    const impostor = [
      "aaa-impostor:",
      "  discovery:",
      "    name: aaa-impostor",
      "    metadata: {namespace_name: tenant_4, kind: relay, labels: {area.region: any}}",
      "    gateway: [{priority: 0, address: 'ipv4://10.66.0.1:1234'}]",
      "",
    ].join("\n");
    writeFileSync(file, readFileSync(join(FIXTURES, "cross-region.yaml"), "utf8") + impostor);
    const hopsOf = (r: Result) => brief(JSON.parse(r.stdout)).map((x) => x.hops?.map((h) => h.node));
    const open = await hopway(["routes", "--topology", file, "--from", "app2", "--to", "app1", "--json"]);
    expect(hopsOf(open)).toEqual([["aaa-impostor", "relaysvr1", "app1"]]);
    const shared = await hopway([
      "routes",
      "--topology",
      file,
      "--from",
      "app2",
      "--to",
      "app1",
      "--shared-namespaces",
      "namespace_1,namespace_2,namespace_3",
      "--json",
    ]);
    expect(shared.stderr).toBe("");
    expect(hopsOf(shared)).toEqual([["relaysvr2", "relaysvr3", "relaysvr1", "app1"]]);
    const bad = await hopway(["routes", "--topology", file, "--shared-namespaces", "a,,b"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^hopway routes: --shared-namespaces: /);
    // Names are taken as the edge stores them, so a space is refused rather than trimmed.
    const spaced = await hopway(["routes", "--topology", file, "--shared-namespaces", "namespace_1, namespace_2"]);
    expect(spaced.code).toBe(2);
    expect(spaced.stderr).toMatch(/" namespace_2" has spaces around it/);
  });

  it("lists no-route pairs with hops null and a reason; groups expand; stdin and list-form JSON work", async () => {
    const topology = [
      { name: "a", metadata: { namespace_name: "x" }, gateway: [{ priority: 1, address: "ipv4://10.0.0.1:1" }] },
      {
        name: "b",
        metadata: { namespace_name: "y" },
        gateway: [{ priority: 1, address: "ipv4://10.0.0.2:1", match: { metadata: { namespace_name: "y" } } }],
      },
      { name: "g", type: "group", any_namespace: true, node_list: [{ node_name: "a" }, { node_name: "b" }] },
    ];
    const all = await hopway(["routes", "--topology", "-", "--json"], JSON.stringify(topology));
    expect(all.code).toBe(0);
    expect(JSON.parse(all.stdout)).toEqual([
      { from: "a", to: "b", hops: null, reason: "no_matching_gateway", detail: expect.any(String) },
      { from: "b", to: "a", hops: [{ node: "a", address: "ipv4://10.0.0.1:1", priority: 1, alternatives: [] }] },
    ]);
    const toOnly = await hopway(["routes", "--topology", "-", "--json", "--to", "a"], JSON.stringify(topology));
    expect(JSON.parse(toOnly.stdout).map((r: { from: string }) => r.from)).toEqual(["b"]);
    const group = await hopway(
      ["routes", "--topology", "-", "--json", "--from", "b", "--to", "g"],
      JSON.stringify(topology),
    );
    expect(JSON.parse(group.stdout).map((r: { to: string; reason?: string }) => [r.to, r.reason ?? "ok"])).toEqual([
      ["a", "ok"],
      ["b", "same_node"],
    ]);
  });

  it("exit 2 with every problem on stderr for an invalid topology", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hopway-cli-"));
    const file = join(dir, "bad.yaml");
    writeFileSync(
      file,
      "relaysvr1:\n  discovery:\n    gateway:\n      - { priority: 1, address: ipv4://10.0.0.1:1 }\n      - { priority: x, address: ipv4://10.0.0.1:1 }\n      - { priority: 2.5, address: ftp://a:1 }\napp:\n  discovery: { type: nodez }\n",
    );
    const r = await hopway(["routes", "--topology", file, "--json"]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    for (const path of [
      "relaysvr1.discovery.gateway[1].priority",
      "relaysvr1.discovery.gateway[2].priority: expected integer",
      "relaysvr1.discovery.gateway[2].address",
      "app.discovery.type",
    ]) {
      expect(r.stderr).toContain(path);
    }
  });

  it("exit 2 for unknown flags, an unreadable file, unknown names and unknown commands", async () => {
    const topo = join(FIXTURES, "cross-region.yaml");
    // Sequential: parallel children only contend for the CI machine's two cores.
    const results: Result[] = [];
    for (const args of [
      ["routes", "--topology", topo, "--bogus"],
      ["routes", "--topology", "/nonexistent/topology.yaml"],
      ["routes", "--topology", topo, "--from", "nobody", "--to", "app1"],
      ["routez"],
      ["--lable"],
    ]) {
      results.push(await hopway(args));
    }
    for (const r of results) {
      expect(r.code).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr.length).toBeGreaterThan(0);
    }
    // One line each: the unknown flag named, and no usage after a data error (as `hopway route`).
    expect(results[0]!.stderr).toBe("hopway routes: unknown flag --bogus (hopway routes --help lists the flags)\n");
    expect(results[1]!.stderr).toMatch(/^hopway routes: cannot read .*ENOENT\n$/);
    expect(results[2]!.stderr).toBe(`hopway routes: unknown_node: no record named 'nobody' in ${topo}\n`);
    expect(results[3]!.stderr).toContain("unknown command 'routez'");
    expect(results[4]!.stderr).toBe("hopway: unknown flag --lable (hopway --help lists the commands)\n");
    // The usage that follows an unknown command lists every registered command.
    for (const c of ["routes", "import", "route", "nodes"])
      expect(results[3]!.stderr).toMatch(new RegExp(`^  ${c}\\s`, "m"));
  });
});
