// The README stays a short front page (its links are checked with the rest of the docs, in
// citations.test.ts).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "../support/markdown.ts";

describe("README.md", () => {
  it("the README is a front page of at most 160 lines", () => {
    const lines = readFileSync(join(ROOT, "README.md"), "utf8").trimEnd().split("\n");
    expect(lines.length).toBeLessThanOrEqual(160);
  });
});
