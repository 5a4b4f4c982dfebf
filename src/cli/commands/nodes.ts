// `hopway nodes [NAME] [--namespace NS] [--kind K] [--label k=v]...`: lists the
// records a running edge holds, optionally narrowed by a selector (the same
// selector semantics as gateway matches: every given field equal, labels a subset).
import { type HopwayRecord, LabelKeySchema, LabelValueSchema, NameSchema, type Selector } from "../../core/schema.ts";
import { matchesSelector } from "../../core/selector.ts";
import {
  type CliIo,
  EdgeClient,
  EXIT_OK,
  formatTable,
  parseCommandLine,
  printable,
  processIo,
  reportError,
  resolveTarget,
  TARGET_HELP,
  TARGET_OPTIONS,
  UsageError,
} from "../edge-client.ts";

export const summary = "list the records of a realm on a running edge, filtered by a selector";

const HELP = `usage: hopway nodes [NAME | --name NAME] [--namespace NS] [--kind KIND] [--label KEY=VALUE]...
                    [--type TYPE] [--edge URL] [--realm NAME] [--token TOKEN] [--json]

Lists the records of the realm. Every filter given must match: --label may be
repeated, once per key, and matches records that carry all of those labels. A
reader token is enough.

  --name NAME     the record's name (same as the positional NAME)
  --namespace NS  metadata.namespace_name
  --kind KIND     metadata.kind (e.g. relay, app)
  --label K=V     metadata.labels contains K with value V (repeatable, each key once)
  --type TYPE     node, client or group
${TARGET_HELP}
exit status: 0 ok (also when nothing matches), 1 edge or network error, 2 bad usage
`;

const OPTIONS = {
  ...TARGET_OPTIONS,
  name: { type: "string" },
  namespace: { type: "string" },
  kind: { type: "string" },
  label: { type: "string", multiple: true },
  type: { type: "string" },
} as const;

export interface NodeFilter {
  selector: Selector;
  type?: HopwayRecord["type"];
}

export async function run(argv: readonly string[], io: CliIo = processIo()): Promise<number> {
  try {
    const { values, positionals } = parseCommandLine("nodes", argv, OPTIONS, true);
    if (values.help) {
      io.stdout(HELP);
      return EXIT_OK;
    }
    if (positionals.length > 1)
      throw new UsageError(`nodes takes at most one NAME (hopway nodes --help lists the flags)`);
    const filter = buildFilter({ ...values, name: values.name ?? positionals[0] });
    const target = resolveTarget(values, io.env);
    const answer = await new EdgeClient(target).nodes(filterQuery(filter));
    // The edge filters too; filtering again here keeps the output right whatever subset of the
    // query the edge honours, and costs nothing at realm sizes a terminal can show.
    const records = answer.records.filter((r) => matchesFilter(r, filter)).sort((a, b) => a.name.localeCompare(b.name));
    if (values.json) io.stdout(`${JSON.stringify({ version: answer.version, nodes: records }, null, 2)}\n`);
    else io.stdout(formatNodes(records));
    return EXIT_OK;
  } catch (error) {
    return reportError(error, io);
  }
}

export function buildFilter(values: {
  name?: string | undefined;
  namespace?: string | undefined;
  kind?: string | undefined;
  label?: string[] | undefined;
  type?: string | undefined;
}): NodeFilter {
  const selector: Selector = {};
  if (values.name !== undefined) {
    if (!NameSchema.safeParse(values.name).success)
      throw new UsageError(`--name: '${printable(values.name)}' is not a record name`);
    selector.name = values.name;
  }
  const metadata: NonNullable<Selector["metadata"]> = {};
  if (values.namespace !== undefined) metadata.namespace_name = nonEmpty(values.namespace, "--namespace");
  if (values.kind !== undefined) metadata.kind = nonEmpty(values.kind, "--kind");
  for (const pair of values.label ?? []) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new UsageError(`--label: '${printable(pair)}' must be KEY=VALUE`);
    const key = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    if (!LabelKeySchema.safeParse(key).success) throw new UsageError(`--label: '${printable(key)}' is not a label key`);
    if (!LabelValueSchema.safeParse(value).success)
      throw new UsageError(`--label: '${printable(value)}' is not a label value`);
    // No record carries two values for one key: rather than keep the last, say so.
    if (metadata.labels !== undefined && Object.hasOwn(metadata.labels, key)) {
      throw new UsageError(`--label: '${printable(key)}' is given twice; a record has one value per label key`);
    }
    metadata.labels = { ...metadata.labels, [key]: value };
  }
  if (Object.keys(metadata).length > 0) selector.metadata = metadata;
  const filter: NodeFilter = { selector };
  if (values.type !== undefined) {
    if (values.type !== "node" && values.type !== "client" && values.type !== "group") {
      throw new UsageError(`--type: '${printable(values.type)}' must be node, client or group`);
    }
    filter.type = values.type;
  }
  return filter;
}

function nonEmpty(value: string, flag: string): string {
  if (value === "") throw new UsageError(`${flag} must not be empty`);
  return value;
}

/** The selector as query parameters for the edge's list endpoint. */
export function filterQuery(filter: NodeFilter): URLSearchParams {
  const q = new URLSearchParams();
  const { selector } = filter;
  if (selector.name) q.set("name", selector.name);
  if (selector.metadata?.namespace_name) q.set("namespace_name", selector.metadata.namespace_name);
  if (selector.metadata?.kind) q.set("kind", selector.metadata.kind);
  for (const [k, v] of Object.entries(selector.metadata?.labels ?? {})) q.append("label", `${k}=${v}`);
  if (filter.type) q.set("type", filter.type);
  return q;
}

/** Selector semantics (docs/contract/records.md §2.1), from the core so the CLI and the resolver agree. */
export function matchesFilter(record: HopwayRecord, filter: NodeFilter): boolean {
  if (filter.type !== undefined && record.type !== filter.type) return false;
  return matchesSelector(filter.selector, record);
}

export function formatNodes(records: readonly HopwayRecord[]): string {
  if (records.length === 0) return "no records match\n";
  const rows = records.map((r) => {
    if (r.type === "group") {
      const members = `members: ${r.node_list.map((m) => m.node_name).join(", ")}`;
      return [r.name, "group", r.metadata?.namespace_name ?? "", "", "", members];
    }
    const labels = Object.entries(r.metadata?.labels ?? {})
      .map(([k, v]) => `${k}=${v}`)
      .join(",");
    const gateways =
      r.type === "node"
        ? (r.gateway ?? [])
            .map((g) => `${g.priority}:${Array.isArray(g.address) ? g.address.join("|") : g.address}`)
            .join(" ")
        : "(client)";
    return [r.name, r.type, r.metadata?.namespace_name ?? "", r.metadata?.kind ?? "", labels, gateways];
  });
  return formatTable(
    ["NAME", "TYPE", "NAMESPACE", "KIND", "LABELS", "GATEWAYS (priority:address)"],
    rows.map((r) => r.map(printable)),
  );
}
