// The remote commands' local half: where the edge is, what a selector becomes,
// and how results and refusals are printed. The edge half runs in
// test/e2e/cli-remote.test.ts against the real Worker.
import { describe, expect, it } from "vitest";
import { detectFormat, run as runImport } from "../../src/cli/commands/import.ts";
import { buildFilter, filterQuery, formatNodes, matchesFilter, run as runNodes } from "../../src/cli/commands/nodes.ts";
import { formatRoute, run as runRoute } from "../../src/cli/commands/route.ts";
import { type CliIo, EdgeError, printable, reportError, resolveTarget, UsageError } from "../../src/cli/edge-client.ts";
import type { HopwayRecord } from "../../src/core/schema.ts";

describe("flags", () => {
  async function stderrOf(run: (argv: readonly string[], io: CliIo) => Promise<number>, argv: string[]) {
    let err = "";
    const io: CliIo = { stdout: () => {}, stderr: (t) => (err += t), env: {} };
    const code = await run(argv, io);
    return { code, err };
  }

  it("an unknown or malformed flag is one line naming it, for every remote command", async () => {
    expect(await stderrOf(runNodes, ["--lable", "x"])).toEqual({
      code: 2,
      err: "hopway: unknown flag --lable (hopway nodes --help lists the flags)\n",
    });
    expect(await stderrOf(runRoute, ["--form", "a", "--to", "b"])).toEqual({
      code: 2,
      err: "hopway: unknown flag --form (hopway route --help lists the flags)\n",
    });
    expect(await stderrOf(runRoute, ["--from"])).toEqual({
      code: 2,
      err: "hopway: --from needs a value (hopway route --help lists the flags)\n",
    });
    expect(await stderrOf(runImport, ["--json=yes", "f.yaml"])).toEqual({
      code: 2,
      err: "hopway: --json does not take a value (hopway import --help lists the flags)\n",
    });
  });
});

describe("resolveTarget", () => {
  const env = { HOPWAY_EDGE_URL: "https://env.example/", HOPWAY_REALM: "prod", HOPWAY_TOKEN: "t-env" };

  it("takes the environment, and flags over it", () => {
    expect(resolveTarget({}, env)).toEqual({ url: "https://env.example", realm: "prod", token: "t-env" });
    expect(resolveTarget({ edge: "http://127.0.0.1:8787", realm: "dev", token: "t-flag" }, env)).toEqual({
      url: "http://127.0.0.1:8787",
      realm: "dev",
      token: "t-flag",
    });
  });

  it("refuses what would send a request somewhere unintended", () => {
    expect(() => resolveTarget({}, {})).toThrow(UsageError);
    expect(() => resolveTarget({ edge: "ftp://x" }, env)).toThrow(/http/);
    expect(() => resolveTarget({ edge: "not a url" }, env)).toThrow(/not a URL/);
    expect(() => resolveTarget({ realm: "../admin" }, env)).toThrow(/realm/);
    expect(() => resolveTarget({ realm: "a".repeat(64) }, env)).toThrow(/at most 63/);
    expect(resolveTarget({ realm: "prod.eu-1" }, env).realm).toBe("prod.eu-1");
    expect(() => resolveTarget({ edge: "https://e" }, {})).toThrow(/HOPWAY_REALM/);
  });
});

describe("nodes selector", () => {
  const relay: HopwayRecord = {
    name: "relaysvr1",
    type: "node",
    metadata: { namespace_name: "namespace_1", kind: "relay", labels: { "area.region": "CN", tier: "edge" } },
  };
  const group: HopwayRecord = {
    name: "all",
    type: "group",
    metadata: { namespace_name: "namespace_1" },
    node_list: [{ node_name: "relaysvr1" }],
  };

  it("becomes the edge's query parameters", () => {
    const filter = buildFilter({ namespace: "namespace_1", kind: "relay", label: ["area.region=CN", "tier=edge"] });
    expect(filterQuery(filter).toString()).toBe(
      "namespace_name=namespace_1&kind=relay&label=area.region%3DCN&label=tier%3Dedge",
    );
  });

  it("matches as a selector: every field given, labels a subset", () => {
    expect(matchesFilter(relay, buildFilter({ label: ["area.region=CN"] }))).toBe(true);
    expect(matchesFilter(relay, buildFilter({ label: ["area.region=any"] }))).toBe(false);
    expect(matchesFilter(relay, buildFilter({ kind: "relay", namespace: "namespace_2" }))).toBe(false);
    expect(matchesFilter(group, buildFilter({ kind: "relay" }))).toBe(false);
    // A selector never compares a group's metadata (docs/contract/records.md §2.1).
    expect(matchesFilter(group, buildFilter({ namespace: "namespace_1" }))).toBe(false);
    expect(matchesFilter(group, buildFilter({ type: "group" }))).toBe(true);
  });

  it("rejects malformed filters before asking the edge", () => {
    expect(() => buildFilter({ label: ["novalue"] })).toThrow(/KEY=VALUE/);
    expect(() => buildFilter({ label: ["bad key=v"] })).toThrow(/label key/);
    expect(() => buildFilter({ label: ["area.region=CN", "area.region=any"] })).toThrow(/given twice/);
    expect(() => buildFilter({ name: "Not_A_Name" })).toThrow(/record name/);
    expect(() => buildFilter({ type: "relay" })).toThrow(/node, client or group/);
    expect(() => buildFilter({ kind: "" })).toThrow(/empty/);
  });

  it("prints groups with their members", () => {
    expect(formatNodes([group])).toMatch(/^NAME\s+TYPE.*\nall\s+group\s+namespace_1\s+members: relaysvr1\n$/);
  });
});

describe("output", () => {
  it("prints a missing route with its reason", () => {
    expect(formatRoute({ from: "a", to: "b", hops: null, reason: "no_relay_chain", detail: "x" })).toBe(
      "a -> b: no route (no_relay_chain)\n",
    );
  });

  it("keeps terminal control sequences in record fields away from the terminal", () => {
    expect(printable("ok\u001b[2Jgone\u0007")).toBe("ok?[2Jgone?");
  });

  it("maps edge refusals to exit codes: invalid input 2, the rest 1", () => {
    let err = "";
    const io = {
      stdout: () => {},
      stderr: (t: string) => {
        err += t;
      },
      env: {},
    };
    const invalid = new EdgeError(400, "invalid_input", "x", "a.b", [
      { path: "a.b", message: "expected integer" },
      { path: "c[0]", message: "bad" },
    ]);
    expect(reportError(invalid, io)).toBe(2);
    expect(err).toBe("hopway: invalid_input (HTTP 400): 2 problems\n  a.b: expected integer\n  c[0]: bad\n");
    expect(reportError(new EdgeError(401, "unauthorized", "no"), io)).toBe(1);
    expect(reportError(new UsageError("bad flag"), io)).toBe(2);
  });

  it("detects the file format from the name, then the content", () => {
    expect(detectFormat("t.json", "a: 1")).toBe("json");
    expect(detectFormat("t.yml", "{}")).toBe("yaml");
    expect(detectFormat("-", ' [{"name": "a"}]')).toBe("json");
    expect(detectFormat("-", "a:\n  discovery: {}")).toBe("yaml");
  });
});
