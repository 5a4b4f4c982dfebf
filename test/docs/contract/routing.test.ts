// docs/contract/routing.md §6 shows the reference topologies and their routes; the conformance
// suite runs the same topologies against test/fixtures/topologies/expected-routes.json. This keeps
// the page and the fixtures equal, so neither can drift from the other, and §3.7 equal to the
// core's list of reasons.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { NO_ROUTE_REASONS } from "../../../src/core/schema.ts";
import { ROOT, section, tableRows } from "../../support/markdown.ts";

const FIXTURES = join(ROOT, "test", "fixtures", "topologies");
const PAGE = join(ROOT, "docs/contract/routing.md");

interface Hop {
  node: string;
  address: string | null;
  priority: number;
}
interface ShownRoute {
  from: string;
  to: string;
  hops: Hop[] | null;
}
interface Example {
  file: string;
  yaml: string;
  routes: ShownRoute[];
}

/** `relaysvr2 (`ipv4://10.1.1.1:1234`, 1) → app1 (`null`, 0)`, or `no route`. */
function parseHops(cell: string): Hop[] | null {
  if (cell === "no route") return null;
  return cell.split(" → ").map((hop) => {
    const m = /^(\S+) \(`([^`]+)`, (\d+)\)$/.exec(hop);
    if (m === null) throw new Error(`not a hop: '${hop}'`);
    return { node: m[1] ?? "", address: m[2] === "null" ? null : (m[2] ?? ""), priority: Number(m[3]) };
  });
}

/** The worked examples of §6: each subsection's fixture file, its YAML block and its route table. */
function examples(markdown: string): Example[] {
  const section = markdown.split(/^## /m).find((s) => s.startsWith("6. "));
  if (section === undefined) throw new Error("docs/contract/routing.md has no worked examples (§6)");
  return section
    .split(/^### /m)
    .slice(1)
    .map((sub) => {
      const file = /`test\/fixtures\/topologies\/([\w.-]+\.yaml)`:/.exec(sub)?.[1];
      const yaml = /^```yaml\n([\s\S]*?)^```$/m.exec(sub)?.[1];
      if (file === undefined || yaml === undefined) throw new Error(`§${sub.split("\n")[0]}: no fixture or YAML block`);
      const routes = [...sub.matchAll(/^\| ([\w.-]+) \| ([\w.-]+) \| (.+) \|$/gm)]
        .filter((m) => m[1] !== "from" && !/^-+$/.test(m[1] ?? ""))
        .map((m) => ({ from: m[1] ?? "", to: m[2] ?? "", hops: parseHops(m[3] ?? "") }));
      return { file, yaml, routes };
    });
}

describe("docs/contract/routing.md", () => {
  const shown = examples(readFileSync(PAGE, "utf8"));
  const expected = JSON.parse(readFileSync(join(FIXTURES, "expected-routes.json"), "utf8")) as Record<
    string,
    ShownRoute[]
  >;

  it("shows every reference topology of expected-routes.json, and no other", () => {
    expect(shown.map((e) => e.file)).toEqual(Object.keys(expected));
  });

  for (const file of Object.keys(expected)) {
    it(`${file}: the page shows the fixture's text and exactly its expected routes, in order`, () => {
      const example = shown.find((e) => e.file === file);
      expect(example?.yaml).toBe(readFileSync(join(FIXTURES, file), "utf8"));
      expect(example?.routes).toEqual(expected[file]);
    });
  }

  it("§3.7 explains every reason a route may be missing, and no other", () => {
    const reasons = tableRows(section(readFileSync(PAGE, "utf8"), "3.7")).map((r) => (r[0] ?? "").replace(/`/g, ""));
    expect(reasons.sort()).toEqual([...NO_ROUTE_REASONS].sort());
  });

  it("reads a route table the way it is written", () => {
    expect(parseHops("r2 (`ipv4://10.1.1.1:1234`, 1) → c1 (`null`, 0)")).toEqual([
      { node: "r2", address: "ipv4://10.1.1.1:1234", priority: 1 },
      { node: "c1", address: null, priority: 0 },
    ]);
    expect(parseHops("no route")).toBeNull();
    expect(() => parseHops("r2 at ipv4://10.1.1.1:1234")).toThrow();
  });
});
