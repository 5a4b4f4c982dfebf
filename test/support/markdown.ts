// Reading the repository's markdown the way a reader (and GitHub) sees it: links outside code,
// headings and their anchors, numbered sections, fenced blocks. The docs tests share it.
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));

export function markdownFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return markdownFiles(path);
    return name.endsWith(".md") ? [path] : [];
  });
}

/** The text with fenced code blocks blanked (lines kept): their lines are examples, not prose or headings. */
export function withoutFences(markdown: string): string {
  return markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, (block) => block.replace(/[^\n]/g, ""));
}

/** Relative link targets, `#fragment` kept: [text](target) and ![alt](target). */
export function relativeLinks(markdown: string): string[] {
  // Code spans and blocks may hold example links that are not links.
  const text = withoutFences(markdown).replace(/`[^`\n]*`/g, "");
  const targets = [...text.matchAll(/!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) => m[1] ?? "");
  return targets.filter((t) => !/^[a-z][a-z0-9+.-]*:/i.test(t));
}

/** The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as '-'. */
export function slug(heading: string): string {
  return heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1")
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\p{M}\s_-]/gu, "")
    .replace(/\s/g, "-");
}

export interface Heading {
  level: number;
  text: string;
  anchor: string;
  /** "3.2" for `### 3.2 …`, "3" for `## 3. …`; undefined for an unnumbered heading. */
  number: string | undefined;
}

/** Headings outside code blocks, with GitHub's anchors (a repeated one gets -1, -2, …). */
export function headings(markdown: string): Heading[] {
  const seen = new Map<string, number>();
  return [...withoutFences(markdown).matchAll(/^(#{1,6})\s+(.+?)\s*#*\s*$/gm)].map((m) => {
    const text = m[2] ?? "";
    const base = slug(text);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    const number = /^(\d+(?:\.\d+)*)\.?\s/.exec(text.replace(/`/g, ""))?.[1];
    return { level: (m[1] ?? "").length, text, anchor: n === 0 ? base : `${base}-${n}`, number };
  });
}

/** The text of the numbered section `number` (`## 3.` or `### 3.2`), up to the next heading of its level or above. */
export function section(markdown: string, number: string): string {
  const lines = markdown.split("\n");
  const level = number.includes(".") ? 3 : 2;
  const start = lines.findIndex((l) => new RegExp(`^#{${level}} ${number.replace(/\./g, "\\.")}\\.?\\s`).test(l));
  if (start < 0) throw new Error(`no section ${number}`);
  const end = lines.findIndex((l, i) => i > start && new RegExp(`^#{1,${level}} `).test(l));
  return lines.slice(start + 1, end < 0 ? undefined : end).join("\n");
}

/** The body rows of the markdown tables in `text`, each as its cells, trimmed (header and rule rows left out). */
export function tableRows(text: string): string[][] {
  const rows: string[][] = [];
  let header = true;
  for (const line of withoutFences(text).split("\n")) {
    if (!line.startsWith("|")) {
      header = true;
      continue;
    }
    const cells = line
      .slice(1, line.endsWith("|") ? -1 : undefined)
      .split("|")
      .map((c) => c.trim());
    if (cells.every((c) => /^:?-+:?$/.test(c))) continue;
    if (header) header = false;
    else rows.push(cells);
  }
  return rows;
}
