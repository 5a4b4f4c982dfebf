// `hopway route --from A --to B`: asks a running edge for the route between two
// records, the same answer the agents act on, and shows each hop with the
// address and gateway priority used. No route is exit 1 with the reason.
import type { ClientErrorCode } from "../../core/errors.ts";
import { NameSchema, type Route } from "../../core/schema.ts";
import type { RouteAnswer } from "../../core/wire.ts";
import {
  type CliIo,
  EdgeClient,
  EXIT_EDGE,
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

export const summary = "show the route between two records, resolved by a running edge";

const HELP = `usage: hopway route --from A --to B [--edge URL] [--realm NAME] [--token TOKEN] [--json]

Prints every hop of the route from A to B: the node, the address dialled, the
gateway priority used and the fallback addresses; for a group B, the route to
each member. A reader token is enough.

${TARGET_HELP}
exit status: 0 a route exists (to a group: to at least one member), 1 no route / edge or
network error, 2 bad usage
`;

const OPTIONS = { ...TARGET_OPTIONS, from: { type: "string" }, to: { type: "string" } } as const;

export async function run(argv: readonly string[], io: CliIo = processIo()): Promise<number> {
  try {
    const { values } = parseCommandLine("route", argv, OPTIONS, false);
    if (values.help) {
      io.stdout(HELP);
      return EXIT_OK;
    }
    const from = requireName(values.from, "--from");
    const to = requireName(values.to, "--to");
    const target = resolveTarget(values, io.env);
    const route = await new EdgeClient(target).route(from, to);
    if (values.json) io.stdout(`${JSON.stringify(route, null, 2)}\n`);
    else io.stdout(formatRoute(route));
    if ("routes" in route && route.routes) {
      // A group: fine as long as some member can be reached.
      return route.routes.some((r) => r.hops !== null) ? EXIT_OK : EXIT_EDGE;
    }
    if (route.hops === null) {
      const code: ClientErrorCode = "no_route";
      if (!values.json)
        io.stderr(
          `hopway: ${code}: ${route.reason ?? "unknown reason"}${route.detail ? `: ${printable(route.detail)}` : ""}\n`,
        );
      return EXIT_EDGE;
    }
    return EXIT_OK;
  } catch (error) {
    return reportError(error, io);
  }
}

function requireName(value: string | undefined, flag: string): string {
  if (value === undefined || value === "")
    throw new UsageError(`${flag} NAME is required (hopway route --help lists the flags)`);
  const parsed = NameSchema.safeParse(value);
  if (!parsed.success)
    throw new UsageError(`${flag}: '${printable(value)}' ${parsed.error.issues[0]?.message ?? "is not a record name"}`);
  return value;
}

/** A route answer, or one member's route within it (no version of its own). */
export function formatRoute(route: RouteAnswer | Route): string {
  const title = `${route.from} -> ${route.to}`;
  if ("routes" in route && route.routes) {
    const found = route.routes.filter((r) => r.hops !== null).length;
    const head = `${title}: group of ${route.routes.length}, ${found} reachable\n`;
    return head + route.routes.map((member) => `\n${formatRoute(member)}`).join("");
  }
  if (route.hops === null) return `${title}: no route (${route.reason ?? "unknown"})\n`;
  const relays = Math.max(0, route.hops.length - 1);
  const head = `${title}: ${route.hops.length} hop${route.hops.length === 1 ? "" : "s"}, ${relays} relay${relays === 1 ? "" : "s"}${"version" in route ? ` (version ${route.version})` : ""}\n`;
  const rows = [
    ["0", route.from, "(source)", "", ""],
    ...route.hops.map((hop, i) => [
      String(i + 1),
      hop.node,
      hop.address ?? "(client connection)",
      String(hop.priority),
      hop.alternatives.join(", "),
    ]),
  ];
  return (
    head +
    formatTable(
      ["#", "NODE", "ADDRESS", "PRIORITY", "ALTERNATIVES"],
      rows.map((r) => r.map(printable)),
    )
  );
}
