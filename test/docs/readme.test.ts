// The README stays a short front page, and no link in it or in docs/ leads nowhere.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

function markdownFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return markdownFiles(path);
    return name.endsWith(".md") ? [path] : [];
  });
}

/** Relative link targets, without their #fragment: [text](target) and ![alt](target). */
function relativeLinks(markdown: string): string[] {
  // Code spans and blocks may hold example links that are not links.
  const text = markdown.replace(/```[\s\S]*?```/g, "").replace(/`[^`\n]*`/g, "");
  const targets = [...text.matchAll(/!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) => m[1] ?? "");
  return targets
    .filter((t) => !/^[a-z][a-z0-9+.-]*:/i.test(t) && !t.startsWith("#"))
    .map((t) => decodeURIComponent(t.split("#")[0] ?? ""));
}

describe("README.md and docs/", () => {
  it("the README is a front page of at most 160 lines", () => {
    const lines = readFileSync(join(ROOT, "README.md"), "utf8").trimEnd().split("\n");
    expect(lines.length).toBeLessThanOrEqual(160);
  });

  it("every relative link in README.md and docs/ resolves to an existing file", () => {
    const files = [join(ROOT, "README.md"), ...markdownFiles(join(ROOT, "docs"))];
    const broken: string[] = [];
    let checked = 0;
    for (const file of files) {
      for (const target of relativeLinks(readFileSync(file, "utf8"))) {
        checked++;
        if (!existsSync(join(dirname(file), target))) broken.push(`${relative(ROOT, file)} → ${target}`);
      }
    }
    expect(broken).toEqual([]);
    // The README alone links every docs page and the picture.
    expect(checked).toBeGreaterThan(12);
  });

  it("finds links the way a reader sees them", () => {
    expect(relativeLinks("see [a](docs/a.md#x), ![p](p.png), [w](https://x.org/y) and `[c](nope.md)`")).toEqual([
      "docs/a.md",
      "p.png",
    ]);
  });
});
