// `hopway routes --topology FILE [--from A] [--to B] [--shared-namespaces LIST] [--json]`: resolves routes
// offline, with no edge, with the same core the edge and the agents run. With
// neither --from nor --to: every ordered pair of distinct non-group records.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import {
  buildRealm,
  EdgeError,
  parseTopologyText,
  type Realm,
  type Route,
  resolveRoutes,
  routeTable,
  type SharedNamespaces,
  SharedNamespacesSchema,
} from "../../core/index.ts";
import { type CliIo, EXIT_OK, EXIT_USAGE, flagProblem, formatTable, printable, processIo } from "../edge-client.ts";

export const summary = "resolve routes offline from a topology file (no edge needed)";

const HELP = `usage: hopway routes --topology FILE [--from A] [--to B] [--shared-namespaces LIST] [--json]

Resolves routes from a topology file (YAML or JSON; a list of records or the
topologies/*.yaml configuration map) with the same resolver as the edge.

  --topology FILE  the topology; "-" reads standard input
  --from A         only routes from A (with --to: the one route A -> B)
  --to B           only routes to B; a group gives one route per member
  --shared-namespaces LIST
                   resolve as a realm whose policy shares only these namespaces
                   (comma-separated; "" shares none); without it, every one
  --json           a JSON array of {from, to, hops} (+ reason, detail where hops is null)

Without --from and --to: every ordered pair of distinct non-group records.
exit status: 0 resolved (even where some pairs have no route), 2 invalid input or usage
`;

const OPTIONS = {
  topology: { type: "string" },
  from: { type: "string" },
  to: { type: "string" },
  "shared-namespaces": { type: "string" },
  json: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
} as const;

/** Bad flags: one line plus where the flags are listed. */
class Usage extends Error {}
/** A problem with the data (file, names): one line, no usage, as `hopway route` does. */
class DataError extends Error {}

export function run(argv: readonly string[], io: CliIo = processIo()): number {
  try {
    let values: {
      topology?: string;
      from?: string;
      to?: string;
      "shared-namespaces"?: string;
      json: boolean;
      help: boolean;
    };
    try {
      values = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: false, strict: true }).values;
    } catch (error) {
      throw new Usage(flagProblem(error));
    }
    if (values.help) {
      io.stdout(HELP);
      return EXIT_OK;
    }
    if (values.topology === undefined || values.topology === "") throw new Usage("--topology FILE is required");
    const list = values["shared-namespaces"];
    const shared = list === undefined ? null : sharedList(list);
    const realm = load(values.topology, io, shared);
    if (realm === undefined) return EXIT_USAGE;
    for (const name of [values.from, values.to]) {
      if (name !== undefined && realm.get(name) === undefined) {
        throw new DataError(`unknown_node: no record named '${printable(name)}' in ${printable(values.topology)}`);
      }
    }
    const routes = select(realm, values.from, values.to);
    if (values.json) writeJson(routes, io);
    else io.stdout(formatRoutes(routes, values.from !== undefined && values.to !== undefined));
    return EXIT_OK;
  } catch (error) {
    if (error instanceof Usage) {
      io.stderr(`hopway routes: ${error.message} (hopway routes --help lists the flags)\n`);
      return EXIT_USAGE;
    }
    if (
      error instanceof DataError ||
      (error instanceof EdgeError && error.status !== undefined && error.status < 500)
    ) {
      io.stderr(`hopway routes: ${error.message}\n`);
      return EXIT_USAGE;
    }
    throw error;
  }
}

/** `a,b,c` as the policy's list, checked as the edge checks `shared_namespaces`. */
function sharedList(text: string): SharedNamespaces {
  const names = text === "" ? [] : text.split(",");
  // The edge stores names as written, so a trimmed name here could resolve unlike the realm.
  const spaced = names.find((n) => n !== n.trim());
  if (spaced !== undefined) throw new Usage(`--shared-namespaces: "${spaced}" has spaces around it (write a,b)`);
  const parsed = SharedNamespacesSchema.safeParse(names);
  if (!parsed.success) {
    throw new Usage(
      `--shared-namespaces: ${parsed.error.issues[0]?.message ?? "invalid"} (a comma-separated list of namespaces)`,
    );
  }
  return new Set(parsed.data);
}

function load(file: string, io: CliIo, shared: SharedNamespaces): Realm | undefined {
  let text: string;
  try {
    text = readFileSync(file === "-" ? 0 : file, "utf8");
  } catch (error) {
    throw new DataError(`cannot read ${printable(file)}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  const format = /\.json$/i.test(file) ? "json" : /\.ya?ml$/i.test(file) ? "yaml" : undefined;
  const parsed = parseTopologyText(text, format);
  if (!parsed.ok) {
    for (const p of parsed.problems) {
      io.stderr(
        `hopway routes: ${printable(file)}: ${parsed.code}: ${p.path ? `${printable(p.path)}: ` : ""}${printable(p.message)}\n`,
      );
    }
    return undefined;
  }
  return buildRealm(parsed.records, {}, shared);
}

/** The routes asked for, in record order. Each table is computed once per source, not per pair. */
function* select(realm: Realm, from: string | undefined, to: string | undefined): Generator<Route> {
  if (from !== undefined && to !== undefined) {
    yield* resolveRoutes(realm, from, to);
    return;
  }
  const sources = from !== undefined ? [realm.get(from)!] : realm.records.filter((r) => r.type !== "group");
  for (const s of sources) {
    if (to !== undefined) {
      if (s.name !== to) yield* resolveRoutes(realm, s.name, to);
      continue;
    }
    if (s.type === "group") throw new DataError(`'${printable(s.name)}' is a group: it has no routes from it`);
    yield* routeTable(realm, s.name);
  }
}

/** Streams the array so that every-pair output of a large realm never sits in memory as one string. */
function writeJson(routes: Iterable<Route>, io: CliIo): void {
  let first = true;
  let chunk = "[";
  for (const r of routes) {
    chunk += `${first ? "\n" : ",\n"}${JSON.stringify(r)}`;
    first = false;
    if (chunk.length > 1 << 16) {
      io.stdout(chunk);
      chunk = "";
    }
  }
  io.stdout(`${chunk}${first ? "]" : "\n]"}\n`);
}

function formatRoutes(routes: Iterable<Route>, detailed: boolean): string {
  const list = [...routes];
  if (detailed) {
    return list
      .map((route) => {
        const head = `${route.from} -> ${route.to}: `;
        if (route.hops === null) return `${head}no route (${route.reason}): ${route.detail ?? ""}\n`;
        const rows = route.hops.map((h, i) => [
          String(i + 1),
          h.node,
          h.address ?? "(client connection)",
          String(h.priority),
          h.alternatives.join(", "),
        ]);
        return `${head}${route.hops.length} hop${route.hops.length === 1 ? "" : "s"}\n${formatTable(
          ["#", "NODE", "ADDRESS", "PRIORITY", "ALTERNATIVES"],
          rows.map((r) => r.map(printable)),
        )}`;
      })
      .join("\n");
  }
  const rows = list.map((r) =>
    r.hops === null
      ? [r.from, r.to, "-", "-", `no route: ${r.reason}`]
      : [
          r.from,
          r.to,
          String(r.hops.length),
          String(r.hops.reduce((sum, h) => sum + h.priority, 0)),
          r.hops.map((h) => `${h.node} (${h.address ?? "client"})`).join(" -> "),
        ],
  );
  return formatTable(
    ["FROM", "TO", "HOPS", "COST", "PATH"],
    rows.map((r) => r.map(printable)),
  );
}
