import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it, vi } from "vitest";
import { stringify, parse as yamlParse } from "yaml";
import { parseRecords, parseTopologyText } from "../../src/core/index.ts";

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "../fixtures/topologies");

const BROKEN_YAML = `
relaysvr1:
  discovery:
    name: relaysvr1
    metadata: { namespace_name: ns1, kind: relay, labels: { "bad key!": x } }
    gateway:
      - { priority: 1, address: ipv4://10.0.0.1:1234 }
      - { priority: 2, address: "ftp://x:1" }
      - { priority: 2.5, address: ipv4://10.0.0.1:1234, extra: 1 }
app:
  discovery:
    type: nodez
g:
  discovery: { type: group, node_list: [{ node_name: relaysvr1 }, { node_name: nope }, { node_name: c }] }
c:
  discovery: { type: client }
dup:
  discovery: { name: relaysvr1 }
`;

describe("parseTopologyText", () => {
  it("reads both reference topologies (map form, name defaults to the key)", () => {
    for (const file of ["cross-namespace.yaml", "cross-region.yaml"]) {
      const r = parseTopologyText(readFileSync(join(FIXTURES, file), "utf8"));
      expect(r.ok).toBe(true);
      if (r.ok) expect(r.records.every((rec) => rec.type === "node")).toBe(true);
    }
    const r = parseTopologyText("app1:\n  discovery:\n    metadata: { kind: app }\n");
    expect(r).toEqual({
      ok: true,
      records: [{ name: "app1", type: "node", metadata: { kind: "app" } }],
      paths: ["app1.discovery"],
    });
  });

  it("reports every problem of a YAML file at once, each by its path", () => {
    const r = parseTopologyText(BROKEN_YAML);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.code).toBe("invalid_input");
    const byPath = Object.fromEntries(r.problems.map((p) => [p.path, p.message]));
    expect(byPath).toMatchObject({
      'relaysvr1.discovery.metadata.labels["bad key!"]': expect.any(String),
      "relaysvr1.discovery.gateway[1].address": expect.stringContaining("unknown scheme 'ftp'"),
      "relaysvr1.discovery.gateway[2].priority": "expected integer",
      // An unknown field is named by its own path.
      "relaysvr1.discovery.gateway[2].extra": expect.stringContaining("not a field"),
      "app.discovery.type": expect.any(String),
      "g.discovery.node_list[1].node_name": expect.stringContaining("'nope'"),
      "g.discovery.node_list[2].node_name": expect.stringContaining("client, not a node"),
      "dup.discovery.name": expect.stringContaining("duplicate name 'relaysvr1'"),
    });
    expect(r.problems).toHaveLength(8);
  });

  it("takes the same document as JSON, and a list of records", () => {
    const asJson = parseTopologyText(JSON.stringify(yamlParse(BROKEN_YAML)), "json");
    const asYaml = parseTopologyText(BROKEN_YAML);
    expect(asJson).toEqual(asYaml);
    const list = parseTopologyText(
      JSON.stringify([
        { name: "A" },
        { name: "b", gateway: [{ priority: "1", address: "ipv4://1.2.3.4:5" }] },
        { name: "b" },
      ]),
    );
    expect(list.ok).toBe(false);
    if (!list.ok) expect(list.problems.map((p) => p.path)).toEqual(["[0].name", "[1].gateway[0].priority", "[2].name"]);
    const listYaml = parseTopologyText(
      stringify([
        { name: "a", type: "client" },
        { name: "b", gateway: [] },
      ]),
    );
    expect(listYaml.ok && listYaml.records.map((r) => r.type)).toEqual(["client", "node"]);
  });

  it("rejects text that does not parse with a code naming the syntax it was read as", () => {
    for (const [text, fmt, code] of [
      ["a: [1,\n b", undefined, "invalid_yaml"],
      ['{"a": ', undefined, "invalid_yaml"],
      ["a: 1", "json", "invalid_json"],
      ["a: 1\na: 2", "yaml", "invalid_yaml"],
    ] as const) {
      const r = parseTopologyText(text, fmt);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.code).toBe(code);
    }
  });

  it("refuses unknown YAML tags with one invalid_yaml and writes nothing to the console", () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    const emit = vi.spyOn(process, "emitWarning").mockImplementation(() => {});
    try {
      for (const text of [
        "- name: a\n  custom_data: !!js/function 'function () { return 1 }'\n",
        "- name: a\n  custom_data: !foo x\n",
        "- !!js/regexp /x/\n",
      ]) {
        const r = parseTopologyText(text);
        expect(r.ok, text).toBe(false);
        if (!r.ok) {
          expect(r.code).toBe("invalid_yaml");
          expect(r.problems).toHaveLength(1);
          expect(r.problems[0]?.message).toMatch(/^line \d+, column \d+: .*tag/);
          expect(r.problems[0]?.message).not.toContain("\n");
        }
      }
      // Standard tags stay fine.
      expect(parseTopologyText("- name: a\n  custom_data: !!str x\n").ok).toBe(true);
      expect(warn).not.toHaveBeenCalled();
      expect(emit).not.toHaveBeenCalled();
    } finally {
      warn.mockRestore();
      emit.mockRestore();
    }
  });

  it("refuses control characters in namespace names and a __proto__ label key, by path", () => {
    for (const [ns, label] of [
      ["a\u0000b", "metadata.namespace_name"],
      ["a\nb", "metadata.namespace_name"],
    ] as const) {
      const r = parseRecords([{ name: "a", metadata: { namespace_name: ns } }]);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.problems.map((p) => p.path)).toEqual([`[0].${label}`]);
    }
    const proto = parseTopologyText('[{"name": "a", "metadata": {"labels": {"__proto__": "x", "ok": "y"}}}]', "json");
    expect(proto.ok).toBe(false);
    if (!proto.ok) expect(proto.problems.map((p) => p.path)).toEqual(["[0].metadata.labels.__proto__"]);
    const yamlProto = parseTopologyText("- name: a\n  metadata:\n    labels:\n      __proto__: x\n");
    expect(yamlProto.ok).toBe(false);
  });

  it("rejects documents that are neither a list nor a map, and map values without discovery", () => {
    for (const doc of [null, 42, "text", true]) {
      const r = parseRecords(doc);
      expect(r.ok).toBe(false);
    }
    const r = parseRecords({
      a: { discovery: 1 },
      b: { other: {} },
      c: { discovery: { metadata: { kind: "app" } }, listen: ":1" },
    });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problems.map((p) => p.path)).toEqual(["a.discovery", "b.discovery"]);
  });

  it("rejects a group listed twice or naming a group, and keeps nothing of a bad import", () => {
    const r = parseRecords([
      { name: "n" },
      { name: "g1", type: "group", node_list: [{ node_name: "n" }, { node_name: "n" }] },
      { name: "g2", type: "group", node_list: [{ node_name: "g1" }] },
    ]);
    expect(r).toMatchObject({ ok: false, code: "invalid_input" });
    if (!r.ok)
      expect(r.problems.map((p) => p.path)).toEqual(["[1].node_list[1].node_name", "[2].node_list[0].node_name"]);
    expect("records" in r).toBe(false);
  });

  it("rejects a member outside the namespace its group names, which could never count", () => {
    const r = parseRecords([
      { name: "a", metadata: { namespace_name: "team-a" } },
      { name: "b", metadata: { namespace_name: "team-b" } },
      { name: "c" },
      {
        name: "g",
        type: "group",
        metadata: { namespace_name: "team-b" },
        node_list: [{ node_name: "a" }, { node_name: "b" }, { node_name: "c" }],
      },
    ]);
    expect(r).toMatchObject({ ok: false, code: "invalid_input" });
    if (!r.ok) {
      expect(r.problems).toEqual([
        { path: "[3].node_list[0].node_name", message: "'a' is in namespace 'team-a', not in the group's 'team-b'" },
        { path: "[3].node_list[2].node_name", message: "'c' is in no namespace, not in the group's 'team-b'" },
      ]);
    }
    expect(
      parseRecords([
        { name: "b", metadata: { namespace_name: "team-b" } },
        { name: "g", type: "group", metadata: { namespace_name: "team-b" }, node_list: [{ node_name: "b" }] },
      ]).ok,
    ).toBe(true);
  });
});
