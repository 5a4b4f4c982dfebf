// The record table (docs/edge-api.md#records), walked field by field for each
// record type: every field present alone, absent, empty and of the wrong type,
// with whether a record so written is accepted and, if not, the path the
// refusal names. One list, run by the core (test/core/record-table.test.ts),
// by the edge under workerd through PUT and import (test/edge/record-table.test.ts)
// and by the agent's records sync (k8s-agent/test/unit/edge/record-table.test.ts),
// so that all three accept and refuse the same records.

export type RecordKind = "node" | "relay" | "client";
export const RECORD_KINDS: readonly RecordKind[] = ["node", "relay", "client"];

export type Variant = "present" | "absent" | "empty" | "wrong type" | "not in the table";

export interface RecordCase {
  /** `client gateway empty` etc.: kind, field, variant. */
  id: string;
  kind: RecordKind;
  /** The field, as the table names it (`gateway[].priority`). */
  field: string;
  variant: Variant;
  record: Record<string, unknown>;
  accept: boolean;
  /** The path the refusal names (formatted as in every error answer), when refused. */
  path?: string;
}

type Json = Record<string, unknown>;

/** A record of `kind` with every field of the table given a valid value. */
export function fullRecord(kind: RecordKind): Json {
  const name = kind === "node" ? "app1" : kind === "relay" ? "relay1" : "client1";
  return {
    name,
    type: kind === "client" ? "client" : "node",
    version: 2,
    hash_code: "h-1",
    custom_data: '{"owner":"team-a"}',
    host: { hostname: `${name}-host`, pid: 4242 },
    metadata: {
      namespace_name: "ns1",
      api_version: "apps/v1",
      kind: kind === "relay" ? "relay" : "Deployment",
      group: "apps",
      labels: { region: "cn", "example.com/tier": "edge" },
    },
    // Loopback only: these cases are for validation and route computation, nothing dials them.
    gateway: [
      {
        priority: 1,
        address: kind === "relay" ? ["ipv4://127.0.0.2:1234", "dns://relay1.example:1234"] : "ipv4://127.0.0.1:1234",
        match: { metadata: { labels: { region: "cn" } } },
      },
    ],
    advertise_relay: kind === "relay" ? [{ metadata: { kind: "relay" } }] : { name: "relay1" },
  };
}

/** The least a record of `kind` needs: its name (and type, but for a node). */
export function minimalRecord(kind: RecordKind): Json {
  const full = fullRecord(kind);
  return kind === "client" ? { name: full.name, type: "client" } : { name: full.name };
}

interface FieldSpec {
  /** Path in the record; `0` stands for the first gateway. */
  at: ReadonlyArray<string | number>;
  /** How the table names it. */
  field: string;
  required?: boolean;
  present: unknown;
  /** The empty value of its type ("", [], {}, 0) and whether the table allows it. */
  empty: { value: unknown; accept: boolean };
  wrong: unknown;
}

const FIELDS: readonly FieldSpec[] = [
  { at: ["name"], field: "name", required: true, present: "x1", empty: { value: "", accept: false }, wrong: 42 },
  { at: ["type"], field: "type", present: undefined, empty: { value: "", accept: false }, wrong: 5 },
  { at: ["version"], field: "version", present: 7, empty: { value: 0, accept: true }, wrong: "1" },
  { at: ["hash_code"], field: "hash_code", present: 99, empty: { value: "", accept: true }, wrong: true },
  { at: ["custom_data"], field: "custom_data", present: "opaque", empty: { value: "", accept: true }, wrong: 1 },
  { at: ["host"], field: "host", present: { hostname: "h1" }, empty: { value: {}, accept: true }, wrong: "h1" },
  { at: ["host", "hostname"], field: "host.hostname", present: "h1", empty: { value: "", accept: false }, wrong: 1 },
  { at: ["host", "pid"], field: "host.pid", present: 1, empty: { value: 0, accept: true }, wrong: "1" },
  { at: ["metadata"], field: "metadata", present: { kind: "k" }, empty: { value: {}, accept: true }, wrong: [] },
  ...(["namespace_name", "api_version", "kind", "group"] as const).map(
    (f): FieldSpec => ({
      at: ["metadata", f],
      field: `metadata.${f}`,
      present: "v1",
      empty: { value: "", accept: false },
      wrong: 1,
    }),
  ),
  {
    at: ["metadata", "labels"],
    field: "metadata.labels",
    present: { a: "b" },
    empty: { value: {}, accept: true },
    wrong: ["a"],
  },
  {
    at: ["gateway"],
    field: "gateway",
    present: [{ priority: 1, address: "ipv4://127.0.0.1:9" }],
    empty: { value: [], accept: true },
    wrong: { priority: 1 },
  },
  {
    at: ["gateway", 0, "priority"],
    field: "gateway[].priority",
    required: true,
    present: 3,
    empty: { value: 0, accept: true },
    wrong: "1",
  },
  {
    at: ["gateway", 0, "address"],
    field: "gateway[].address",
    required: true,
    present: ["unix:///run/app.sock", "ipv6://[::1]:80"],
    empty: { value: [], accept: false },
    wrong: 5,
  },
  {
    at: ["gateway", 0, "match"],
    field: "gateway[].match",
    present: { host: { hostname: "h1" } },
    empty: { value: {}, accept: true },
    wrong: "anyone",
  },
  {
    at: ["advertise_relay"],
    field: "advertise_relay",
    present: [{ name: "relay1" }, { metadata: { kind: "relay" } }],
    empty: { value: [], accept: true },
    wrong: "relay1",
  },
];

/** `["gateway", 0, "priority"]` → `gateway[0].priority`, as error answers name it. */
export function pathText(at: ReadonlyArray<string | number>): string {
  return at.map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? p : `.${p}`)).join("");
}

function clone(v: Json): Json {
  return structuredClone(v);
}

function setAt(record: Json, at: ReadonlyArray<string | number>, value: unknown): void {
  let cur: Record<string | number, unknown> = record;
  for (const key of at.slice(0, -1)) cur = cur[key] as Record<string | number, unknown>;
  const last = at[at.length - 1] as string | number;
  if (value === undefined) delete cur[last];
  else cur[last] = value;
}

/** `minimal` plus the parents `at` needs (a gateway for gateway fields, {} for objects). */
function withParents(kind: RecordKind, at: ReadonlyArray<string | number>): Json {
  const r = minimalRecord(kind);
  if (at[0] === "gateway" && at.length > 1) r.gateway = [{ priority: 1, address: "ipv4://127.0.0.1:1234" }];
  else if (at.length > 1) r[at[0] as string] = {};
  return r;
}

function casesFor(kind: RecordKind): RecordCase[] {
  const out: RecordCase[] = [];
  const add = (field: string, variant: Variant, record: Json, accept: boolean, path?: string) =>
    out.push({
      id: `${kind} ${field} ${variant}`,
      kind,
      field,
      variant,
      record,
      accept,
      ...(path !== undefined ? { path } : {}),
    });
  for (const f of FIELDS) {
    const where = pathText(f.at);
    if (f.field !== "type") {
      const present = withParents(kind, f.at);
      setAt(present, f.at, f.present);
      add(f.field, "present", present, true);
    }
    const absent = clone(fullRecord(kind));
    setAt(absent, f.at, undefined);
    // Without `type` a record is a node (the table's default), so a client written so is accepted as one.
    add(f.field, "absent", absent, !f.required, f.required ? where : undefined);
    const empty = clone(fullRecord(kind));
    setAt(empty, f.at, f.empty.value);
    add(f.field, "empty", empty, f.empty.accept, f.empty.accept ? undefined : where);
    const wrong = clone(fullRecord(kind));
    setAt(wrong, f.at, f.wrong);
    add(f.field, "wrong type", wrong, false, where);
  }
  // What the table rules out: a group's member list, and fields it does not have at all.
  for (const [at, value] of [
    [["node_list"], [{ node_name: "app1" }]],
    [["gateways"], []],
    [["gateway", 0, "weight"], 1],
    [["host", "ip"], "127.0.0.1"],
  ] as const) {
    const r = clone(fullRecord(kind));
    setAt(r, at, value);
    add(pathText(at), "not in the table", r, false, pathText(at));
  }
  return out;
}

export const RECORD_CASES: readonly RecordCase[] = RECORD_KINDS.flatMap(casesFor);

/** The headline case: a client that carries gateways (empty or not) is a valid client. */
export const CLIENT_GATEWAY_CASES = RECORD_CASES.filter(
  (c) => c.kind === "client" && c.field === "gateway" && (c.variant === "present" || c.variant === "empty"),
);
