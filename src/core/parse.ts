// The importer (docs/contract/records.md §1.8): topology text (YAML or JSON; a
// list of records or the `topologies/*.yaml` configuration map) to validated records. It rejects the
// input whole and names every problem by its path, so an operator fixes a
// file in one pass and nothing half-imported ever reaches a realm.
import { parseDocument, YAMLParseError } from "yaml";
import { describeIssues, type FieldProblem, formatPath } from "./errors.ts";
import { countsAsMember } from "./group.ts";
import { type HopwayRecord, RecordSchema } from "./schema.ts";

export type ParseResult =
  | {
      ok: true;
      records: HopwayRecord[];
      /** Where each record sits in the text (`[3]`, `relaysvr1.discovery`), for errors found later. */
      paths: string[];
    }
  | {
      ok: false;
      /**
       * `invalid_yaml` / `invalid_json`: the text does not parse (YAML unless the format is JSON, as
       * YAML also reads JSON), or YAML uses a tag a topology never needs (e.g. `!!js/function`);
       * `invalid_input`: it parses, but fields are wrong.
       */
      code: "invalid_yaml" | "invalid_json" | "invalid_input";
      problems: FieldProblem[];
    };

/** Upper bound on records in one import: bounds memory and route-table work per realm. */
export const MAX_RECORDS = 100_000;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/**
 * Parses topology text. Without `format`, the text is read as YAML, which
 * also reads JSON (YAML 1.2 is a superset) and, unlike JSON.parse, refuses
 * duplicate keys instead of silently keeping the last one.
 */
export function parseTopologyText(text: string, format?: "yaml" | "json"): ParseResult {
  let value: unknown;
  try {
    if (format === "json") value = JSON.parse(text);
    else {
      // parseDocument rather than parse: parse() prints every warning (a multi-line one per
      // unknown tag) to the console, so one hostile request could flood the logs. Warnings
      // are collected here instead and an unknown tag refuses the whole text.
      const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true, logLevel: "silent" });
      const error = doc.errors[0];
      if (error !== undefined) throw error;
      const tag = doc.warnings.find((w) => w.code === "TAG_RESOLVE_FAILED");
      if (tag !== undefined) {
        const at = tag.linePos?.[0];
        const where = at === undefined ? "" : `line ${at.line}, column ${at.col}: `;
        const message = `${where}${tag.message
          .split("\n")[0]!
          .replace(/ at line.*$/, "")
          .replace(/:$/, "")}; a topology uses no YAML tags beyond the standard ones`;
        return { ok: false, code: "invalid_yaml", problems: [{ path: "", message }] };
      }
      value = doc.toJS({ maxAliasCount: 1000 });
    }
  } catch (err) {
    const message =
      err instanceof YAMLParseError || err instanceof SyntaxError
        ? err.message.split("\n")[0]!.replace(/:$/, "")
        : String(err);
    const kind = format === "json" ? "JSON" : "YAML or JSON";
    const code = format === "json" ? "invalid_json" : "invalid_yaml";
    return { ok: false, code, problems: [{ path: "", message: `not valid ${kind}: ${message}` }] };
  }
  return parseRecords(value);
}

/** zod's wording for the commonest mistakes, in the words of docs/contract/records.md §1.8. */
function friendlier(problem: FieldProblem): FieldProblem {
  const m = /^Invalid input: expected (int|number|string|boolean|object|array), received (\w+)$/.exec(problem.message);
  if (m === null) return problem;
  const want = m[1] === "int" ? "integer" : m[1];
  return { path: problem.path, message: m[1] === "int" ? "expected integer" : `expected ${want}, received ${m[2]}` };
}

interface Located {
  record: HopwayRecord;
  /** Path prefix of the record itself, e.g. ["relaysvr1", "discovery"] or [3]. */
  at: PropertyKey[];
}

/**
 * Validates an already-decoded document: a list of records, or a map whose
 * values carry a `discovery` record (its `name` defaults to the map key).
 * Other keys beside `discovery` belong to the process's own configuration and
 * are ignored here.
 */
export function parseRecords(value: unknown): ParseResult {
  const problems: FieldProblem[] = [];
  const located: Located[] = [];
  // Names are checked for duplicates on the raw input too, so a duplicate is
  // reported even when one of the two records is invalid for another reason.
  const rawNames = new Map<string, PropertyKey[]>();
  const check = (input: unknown, at: PropertyKey[]) => {
    const name = isPlainObject(input) ? input.name : undefined;
    if (typeof name === "string") {
      const first = rawNames.get(name);
      if (first !== undefined) {
        problems.push({
          path: formatPath([...at, "name"]),
          message: `duplicate name '${name}' (first at ${formatPath(first) || "[0]"})`,
        });
      } else rawNames.set(name, at);
    }
    const r = RecordSchema.safeParse(input);
    if (r.success) located.push({ record: r.data, at });
    else problems.push(...describeIssues(r.error, at).map(friendlier));
  };
  if (Array.isArray(value)) {
    if (value.length > MAX_RECORDS) {
      return { ok: false, code: "invalid_input", problems: [{ path: "", message: `at most ${MAX_RECORDS} records` }] };
    }
    for (let i = 0; i < value.length; i++) check(value[i], [i]);
  } else if (isPlainObject(value)) {
    const entries = Object.entries(value);
    if (entries.length > MAX_RECORDS) {
      return { ok: false, code: "invalid_input", problems: [{ path: "", message: `at most ${MAX_RECORDS} records` }] };
    }
    for (const [key, entry] of entries) {
      if (!isPlainObject(entry) || !isPlainObject(entry.discovery)) {
        problems.push({ path: formatPath([key, "discovery"]), message: "expected an object (the record)" });
        continue;
      }
      const discovery = entry.discovery;
      check("name" in discovery ? discovery : { name: key, ...discovery }, [key, "discovery"]);
    }
  } else {
    return {
      ok: false,
      code: "invalid_input",
      problems: [{ path: "", message: "expected a list of records or a map of configurations with `discovery`" }],
    };
  }
  // Cross-record rules, checked on the records that are valid on their own.
  const byName = new Map<string, Located>();
  for (const item of located) if (!byName.has(item.record.name)) byName.set(item.record.name, item);
  for (const item of located) {
    const rec = item.record;
    if (rec.type !== "group") continue;
    const seen = new Set<string>();
    rec.node_list.forEach((member, i) => {
      const path = formatPath([...item.at, "node_list", i, "node_name"]);
      const target = byName.get(member.node_name)?.record;
      if (target === undefined)
        problems.push({ path, message: `'${member.node_name}' is not a record of this topology` });
      else if (target.type !== "node")
        problems.push({ path, message: `'${member.node_name}' is a ${target.type}, not a node` });
      else if (!countsAsMember(rec, target)) {
        // It would never count (src/core/group.ts): say so now rather than route around it later.
        const ns = target.metadata?.namespace_name;
        problems.push({
          path,
          message: `'${member.node_name}' is ${ns === undefined ? "in no namespace" : `in namespace '${ns}'`}, not in the group's '${rec.metadata?.namespace_name}'`,
        });
      } else if (seen.has(member.node_name)) problems.push({ path, message: `'${member.node_name}' is listed twice` });
      seen.add(member.node_name);
    });
  }
  if (problems.length > 0) return { ok: false, code: "invalid_input", problems };
  return { ok: true, records: located.map((l) => l.record), paths: located.map((l) => formatPath(l.at)) };
}
