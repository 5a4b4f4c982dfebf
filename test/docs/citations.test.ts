// The repository cites only itself: no path outside it, no issue number, no "routing contract"
// or "spec" document; every `page.md §N.M` citation names a section that exists; every relative
// link in the docs resolves, anchors included (docs/contract/README.md).
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, extname, join, relative, resolve, sep } from "node:path";
import { describe, expect, it } from "vitest";
import { headings, markdownFiles, ROOT, relativeLinks, withoutFences } from "../support/markdown.ts";

const SCANNED = ["src", "durable-objects", "k8s-agent", "test", "bench", "scripts", ".ci", "docs"];
const TEXT = new Set([".ts", ".mts", ".mjs", ".js", ".md", ".sh", ".yaml", ".yml", ".toml"]);
// Built output and vendored upstream schemas, not written here.
const SKIPPED = ["node_modules", "dist", join("src", "edge", "ui", "generated"), join("fixtures", "crds")];
const SELF = relative(ROOT, new URL(import.meta.url).pathname);

function scannedFiles(): string[] {
  const walk = (dir: string): string[] =>
    readdirSync(dir).flatMap((name) => {
      const path = join(dir, name);
      const rel = relative(ROOT, path);
      if (SKIPPED.some((s) => rel === s || rel.endsWith(`${sep}${s}`) || rel.includes(`${sep}${s}${sep}`))) return [];
      if (statSync(path).isDirectory()) return walk(path);
      return TEXT.has(extname(name)) && rel !== SELF ? [rel] : [];
    });
  const root = readdirSync(ROOT).filter((name) => TEXT.has(extname(name)) && statSync(join(ROOT, name)).isFile());
  return [...root, ...SCANNED.filter((d) => existsSync(join(ROOT, d))).flatMap((d) => walk(join(ROOT, d)))];
}

/** What a file may not say, in any file. */
const FORBIDDEN: Array<[RegExp, string]> = [
  [/\.\.\/shared\b|\bshared\/spec\b|\/work\/(?:shared|main|wt)\b/, "a path outside the repository"],
  [/\brouting contract\b/i, 'the "routing contract" (cite docs/contract/<page>.md §N)'],
  [/\bspec\s+[\w-]+\.md\b|\bthe spec(?:'s)?\b/i, 'a "spec" document (cite docs/contract/<page>.md §N)'],
  [/\bthe issue(?:'s)?\b|\bissue\s*#?\d+|\/(?:issues|pull)\/\d+|(?:^|[\s([])#\d{1,6}\b/im, "an issue"],
];
/** What code may not say: its citations are by page and section. */
const FORBIDDEN_IN_CODE: Array<[RegExp, string]> = [
  [/\bsections? \d+(?:\.\d+)*\b/i, "a section without its page (cite docs/contract/<page>.md §N)"],
];

/** The repository path a cited `.md` names, from the citing file; undefined when none exists. */
function resolveDoc(file: string, cited: string): string | undefined {
  // A page in docs/ may also name another by its path below docs/ (`contract/routing.md`).
  const below = file.endsWith(".md") ? [join("docs", cited)] : [];
  const candidates = cited.startsWith("docs/") ? [cited] : [join(dirname(file), cited), cited, ...below];
  return candidates.map((c) => relative(ROOT, resolve(ROOT, c))).find((c) => existsSync(join(ROOT, c)));
}

/** Section numbers of a markdown page. */
const sectionsOf = (() => {
  const cache = new Map<string, Set<string>>();
  return (page: string): Set<string> => {
    let set = cache.get(page);
    if (set === undefined) {
      set = new Set(headings(readFileSync(join(ROOT, page), "utf8")).flatMap((h) => (h.number ? [h.number] : [])));
      cache.set(page, set);
    }
    return set;
  };
})();

function citationProblems(file: string, text: string): string[] {
  const problems: string[] = [];
  const isMarkdown = file.endsWith(".md");
  const prose = (isMarkdown ? withoutFences(text) : text).split("\n");
  text.split("\n").forEach((line, i) => {
    const at = `${file}:${i + 1}`;
    for (const [re, what] of [...FORBIDDEN, ...(isMarkdown ? [] : FORBIDDEN_IN_CODE)]) {
      const m = re.exec(line);
      if (m) problems.push(`${at}: cites ${what}: '${m[0].trim()}'`);
    }
    // A relative path that leaves the repository (imports included).
    // (A markdown page's code blocks show files elsewhere in the tree, relative to themselves.)
    for (const m of (prose[i] ?? "").matchAll(/(?:\.\.\/)+[\w.@-][\w./@-]*/g)) {
      const target = resolve(ROOT, dirname(file), m[0]);
      if (relative(ROOT, target).startsWith(".."))
        problems.push(`${at}: cites a path outside the repository: '${m[0]}'`);
    }
    // Code names documents by their path in the repository.
    if (!isMarkdown) {
      for (const m of line.matchAll(/(?<![\w./-])([\w-][\w./-]*\.md)\b/g)) {
        if (resolveDoc(file, m[1] ?? "") === undefined) problems.push(`${at}: '${m[1]}' is no file of the repository`);
      }
    }
    // `page.md §N.M` must name a section the page has.
    for (const m of line.matchAll(/([\w./-]*[\w-]\.md)\)?\s*§\s*(\d+(?:\.\d+)*)/g)) {
      const cited = m[1] ?? "";
      const page = resolveDoc(file, cited);
      if (page === undefined) problems.push(`${at}: '${cited}' is no file of the repository`);
      else if (!isMarkdown && !page.startsWith(`docs${sep}contract${sep}`))
        problems.push(`${at}: code cites rules in docs/contract/, not '${cited}'`);
      else if (!sectionsOf(page).has(m[2] ?? "")) problems.push(`${at}: ${page} has no section §${m[2]}`);
    }
  });
  return problems;
}

/** Relative links that lead nowhere: a missing file, or an anchor that is no heading of its page. */
function brokenLinks(file: string, markdown: string): string[] {
  const broken: string[] = [];
  for (const link of relativeLinks(markdown)) {
    const [path = "", fragment] = link.split("#");
    const target = path === "" ? join(ROOT, file) : resolve(ROOT, dirname(file), decodeURIComponent(path));
    if (!existsSync(target)) broken.push(`${file} → ${link}`);
    else if (fragment !== undefined && target.endsWith(".md")) {
      const anchors = new Set(headings(readFileSync(target, "utf8")).map((h) => h.anchor));
      if (!anchors.has(decodeURIComponent(fragment))) broken.push(`${file} → ${link} (no such heading)`);
    }
  }
  return broken;
}

describe("citations", () => {
  const files = scannedFiles();

  it("nothing cites a path outside the repository, an issue, or a document by a name it does not have", () => {
    expect(files.length).toBeGreaterThan(200);
    const problems = files.flatMap((f) => citationProblems(f, readFileSync(join(ROOT, f), "utf8")));
    expect(problems).toEqual([]);
  });

  it("code cites the contract by page and section", () => {
    const cites = files
      .filter((f) => !f.endsWith(".md"))
      .flatMap((f) => [...readFileSync(join(ROOT, f), "utf8").matchAll(/docs\/contract\/[\w-]+\.md §\d/g)]);
    expect(cites.length).toBeGreaterThan(10);
  });

  it("finds each kind of bad citation, and lets good ones be", () => {
    const bad = [
      "// section 5 of the routing contract",
      "/** The graceful shutdown of spec autoscaling.md §4 */",
      "// see ../../../../shared/spec/interfaces.md",
      "// 16 KiB, as the issue says",
      "// fixed in #123",
      "// the metrics of section 2",
      "// docs/contract/routing.md §99",
      "// docs/security/edge.md §1",
      "// docs/nope.md",
    ];
    for (const line of bad) expect(citationProblems("src/core/x.ts", line).length, line).toBeGreaterThan(0);
    const good = [
      "// docs/contract/routing.md §3.4 and docs/contract/records.md §1",
      "// RFC 4648 §7, base32hex",
      'import { z } from "../../src/core/schema.ts";',
      'const color = "#111827";',
      "// docs/identity.md says how",
    ];
    for (const line of good) expect(citationProblems("test/core/x.ts", line), line).toEqual([]);
    expect(citationProblems("docs/x.md", "[edge.md §1](security/edge.md#1-realms) and section 2 above")).toEqual([
      "docs/x.md:1: docs/edge.md has no section §1",
    ]);
  });

  it("every relative link in README.md and docs/ resolves, anchors included", () => {
    const pages = [join(ROOT, "README.md"), ...markdownFiles(join(ROOT, "docs"))].map((p) => relative(ROOT, p));
    const links = pages.flatMap((p) => relativeLinks(readFileSync(join(ROOT, p), "utf8")));
    expect(links.length).toBeGreaterThan(100);
    expect(pages.flatMap((p) => brokenLinks(p, readFileSync(join(ROOT, p), "utf8")))).toEqual([]);
  });

  it("finds links the way a reader sees them", () => {
    expect(relativeLinks("see [a](docs/a.md#x), ![p](p.png), [w](https://x.org/y) and `[c](nope.md)`")).toEqual([
      "docs/a.md#x",
      "p.png",
    ]);
    expect(brokenLinks("docs/x.md", "[r](contract/routing.md#34-the-hop-limit)")).toEqual([]);
    expect(brokenLinks("docs/x.md", "[r](contract/routing.md#34-no-such)")).toHaveLength(1);
    expect(brokenLinks("docs/x.md", "[r](contract/nope.md)")).toHaveLength(1);
  });
});

/** Sentences of at least 50 characters, outside code blocks, normalised (case, spaces, markup). */
function sentences(markdown: string): string[] {
  return withoutFences(markdown)
    .split(/\n\s*\n/)
    .flatMap((para) => para.replace(/\s+/g, " ").split(/(?<=[.;:])\s+|\s+- /))
    .map((t) => t.replace(/[`*|]/g, "").trim().toLowerCase())
    .filter((t) => t.length >= 50);
}

describe("docs/contract", () => {
  it("is written once: no sentence of the contract stands again in another page", () => {
    const contract = new Set(
      markdownFiles(join(ROOT, "docs", "contract")).flatMap((p) => sentences(readFileSync(p, "utf8"))),
    );
    expect(contract.size).toBeGreaterThan(200);
    const others = [join(ROOT, "README.md"), ...markdownFiles(join(ROOT, "docs"))].filter(
      (p) => !relative(ROOT, p).startsWith(join("docs", "contract")),
    );
    const again = others.flatMap((p) =>
      sentences(readFileSync(p, "utf8"))
        .filter((t) => contract.has(t))
        .map((t) => `${relative(ROOT, p)}: ${t}`),
    );
    expect(again).toEqual([]);
  });

  for (const page of markdownFiles(join(ROOT, "docs", "contract")).filter((p) => !p.endsWith("README.md"))) {
    it(`${relative(ROOT, page)}: every section is numbered once, each subsection under its section`, () => {
      const numbered = headings(readFileSync(page, "utf8")).filter((h) => h.level >= 2);
      const problems: string[] = [];
      const seen = new Set<string>();
      let section = "";
      for (const h of numbered) {
        if (h.number === undefined) problems.push(`unnumbered: ${h.text}`);
        else if (seen.has(h.number)) problems.push(`numbered twice: ${h.number}`);
        else if (h.level === 2 && h.number.includes("."))
          problems.push(`a section numbered like a subsection: ${h.text}`);
        else if (h.level === 3 && !h.number.startsWith(`${section}.`)) problems.push(`outside §${section}: ${h.text}`);
        if (h.number !== undefined) seen.add(h.number);
        if (h.level === 2 && h.number !== undefined) section = h.number;
      }
      expect(problems).toEqual([]);
      expect(seen.size).toBeGreaterThan(3);
    });
  }
});
