// docs/contract/records.md §1.2 says, per record type, which fields are required, optional,
// accepted and ignored, or refused. Each cell is checked against the wire schema, and the
// ignored ones against the resolver, so the table and the code cannot disagree.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { buildRealm, type HopwayRecord, parseRecords, RecordSchema, routeTable } from "../../../src/core/index.ts";
import { ROOT, section, tableRows } from "../../support/markdown.ts";

const PAGE = readFileSync(join(ROOT, "docs/contract/records.md"), "utf8");
const TYPES = ["node", "client", "group"] as const;
type Type = (typeof TYPES)[number];

/** The smallest valid record of each type. */
const BASE: Record<Type, Record<string, unknown>> = {
  node: { name: "n1", type: "node" },
  client: { name: "c1", type: "client" },
  group: { name: "g1", type: "group", node_list: [{ node_name: "n1" }] },
};

/** A valid value for each field of the table (dotted names are nested). */
const SAMPLE: Record<string, unknown> = {
  name: "n1",
  type: undefined,
  version: 1,
  hash_code: "h",
  custom_data: "anything",
  "host.hostname": "host-1",
  "host.pid": 1,
  "metadata.namespace_name": "ns",
  "metadata.api_version": "v1",
  "metadata.kind": "relay",
  "metadata.group": "g",
  "metadata.labels": { "area.region": "any" },
  advertise_relay: { metadata: { kind: "relay" } },
  gateway: [{ priority: 1, address: "ipv4://10.9.0.1:1234" }],
  node_list: [{ node_name: "n1" }],
  any_namespace: true,
};

function withField(base: Record<string, unknown>, field: string, value: unknown): Record<string, unknown> {
  const [head = "", sub] = field.split(".");
  if (sub === undefined) return { ...base, [head]: value };
  return { ...base, [head]: { ...(base[head] as object | undefined), [sub]: value } };
}

function withoutField(base: Record<string, unknown>, field: string): Record<string, unknown> {
  const { [field]: _gone, ...rest } = base;
  return rest;
}

const accepts = (input: unknown) => RecordSchema.safeParse(input).success;

/** The table: field → (type → R | O | I | —). */
function table(): Map<string, Record<Type, string>> {
  const out = new Map<string, Record<Type, string>>();
  for (const row of tableRows(section(PAGE, "1.2"))) {
    const field = (row[0] ?? "").replace(/`/g, "");
    const cell = (i: number) => (row[i] ?? "").charAt(0);
    out.set(field, { node: cell(1), client: cell(2), group: cell(3) });
  }
  return out;
}

describe("docs/contract/records.md §1.2", () => {
  const rows = table();

  it("has a row for every field of every record type, and a sample to check it with", () => {
    expect([...rows.keys()].sort()).toEqual(Object.keys(SAMPLE).sort());
    for (const cells of rows.values()) for (const t of TYPES) expect(["R", "O", "I", "—"]).toContain(cells[t]);
  });

  for (const [field, cells] of rows) {
    for (const type of TYPES) {
      const cell = cells[type];
      if (cell === "I") continue;
      it(`${type}.${field} is ${cell}`, () => {
        const base = BASE[type];
        if (field === "type") {
          // Omitting `type` makes a node: required for the others, optional (the default) for nodes.
          const parsed = RecordSchema.safeParse(withoutField(base, "type"));
          expect(parsed.success && parsed.data.type === type).toBe(cell === "O");
          return;
        }
        const value = field === "name" ? base.name : SAMPLE[field];
        const top = field.split(".")[0] ?? field;
        if (cell === "R") {
          expect(accepts(base)).toBe(true);
          expect(accepts(withoutField(base, top))).toBe(false);
        } else if (cell === "O") {
          expect(accepts(withoutField(base, top))).toBe(true);
          expect(accepts(withField(base, field, value))).toBe(true);
        } else {
          const parsed = RecordSchema.safeParse(withField(base, field, value));
          expect(parsed.success).toBe(false);
          expect(parsed.error?.issues.map((i) => [...i.path, ...("keys" in i ? i.keys : [])].join("."))).toContainEqual(
            expect.stringContaining(top),
          );
        }
      });
    }
  }

  // Accepted and ignored: the same records with and without the field give the same routes.
  for (const [field, cells] of rows) {
    for (const type of TYPES.filter((t) => cells[t] === "I")) {
      const realm = (extra: boolean): HopwayRecord[] => {
        const input = [
          {
            name: "r1",
            metadata: { kind: "relay" },
            gateway: [{ priority: 1, address: "ipv4://10.9.0.2:1234" }],
          },
          {
            name: "n1",
            gateway: [{ priority: 1, address: "ipv4://10.9.0.3:1234" }],
            advertise_relay: { name: "r1" },
          },
          withField({ ...BASE[type], advertise_relay: { name: "r1" } }, field, extra ? SAMPLE[field] : undefined),
        ];
        const parsed = parseRecords(input);
        if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
        return parsed.records;
      };
      // The schema that accepts it may arrive after this page; until then there is nothing to route.
      it.runIf(accepts(withField(BASE[type], field, SAMPLE[field])))(`${type}.${field} is accepted and ignored`, () => {
        for (const from of ["r1", "n1", BASE[type].name as string]) {
          expect(routeTable(buildRealm(realm(true)), from)).toEqual(routeTable(buildRealm(realm(false)), from));
        }
      });
    }
  }
});
