// docs/contract/edge-api.md lists every endpoint the edge serves and every error code it may
// answer, and nothing else: read from the routers' source and the core's code list, so a new
// endpoint or code without its contract text fails here.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ERROR_CODES } from "../../../src/core/errors.ts";
import { ROOT, section, tableRows } from "../../support/markdown.ts";

const PAGE = readFileSync(join(ROOT, "docs/contract/edge-api.md"), "utf8");
const EDGE = join(ROOT, "src", "edge");

/** `GET /v1/realms/{realm}/nodes/{name}` for every route the edge's routers declare. */
function servedRoutes(): string[] {
  const routes = new Set<string>();
  for (const file of readdirSync(EDGE).filter((f) => f.endsWith(".ts"))) {
    const source = readFileSync(join(EDGE, file), "utf8");
    for (const m of source.matchAll(/\b(app|realms|ui)\.(get|put|post|delete)\(\s*"([^"]+)"/g)) {
      const prefix = m[1] === "realms" ? "/v1/realms/:realm" : "";
      // `:realm{[a-z0-9]…}`: a parameter with its pattern is still one parameter.
      const path = `${prefix}${m[3]}`.replace(/:(\w+)(\{[^}]*\})?/g, "{$1}");
      routes.add(`${(m[2] ?? "").toUpperCase()} ${path}`);
    }
  }
  return [...routes].sort();
}

/** Every `METHOD /path` the page writes in code spans, without its query or body. */
function documentedRoutes(): string[] {
  const routes = new Set<string>();
  for (const m of PAGE.matchAll(/`(GET|PUT|POST|DELETE) (\/[^`?\s]*)/g)) routes.add(`${m[1]} ${m[2]}`);
  return [...routes].sort();
}

describe("docs/contract/edge-api.md", () => {
  it("documents every endpoint the edge serves, and only those", () => {
    const served = servedRoutes();
    expect(served.length).toBeGreaterThan(30);
    expect(documentedRoutes()).toEqual(served);
  });

  it("§1.3 lists every error code of the core, once, with its status", () => {
    const rows = tableRows(section(PAGE, "1.3"));
    const codes = rows.map((r) => (r[1] ?? "").replace(/`/g, ""));
    expect([...codes].sort()).toEqual([...ERROR_CODES].sort());
    for (const r of rows) expect(r[0], r.join(" | ")).toMatch(/^(\d{3}|–)$/);
  });
});
