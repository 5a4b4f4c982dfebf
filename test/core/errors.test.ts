import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { CLIENT_ERROR_CODES, describeIssues, ERROR_CODES } from "../../src/core/errors.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith(".ts") && !e.parentPath.includes("generated"))
    .map((e) => readFileSync(join(e.parentPath, e.name), "utf8"));
}

describe("the error vocabulary", () => {
  // A code in the list is a promise to scripts that match on it: each must be one something sends.
  it("holds only codes the edge or the agent's local API produce", () => {
    const text = [...sources("src/edge"), ...sources("durable-objects"), ...sources("k8s-agent/src/admin")];
    text.push(...sources("src/core").filter((t) => !t.includes("export const ERROR_CODES")));
    const unused = ERROR_CODES.filter((code) => !text.some((t) => t.includes(`"${code}"`)));
    expect(unused).toEqual([]);
  });

  it("keeps the CLI's own codes apart from the edge's, and each is produced by the CLI", () => {
    expect(CLIENT_ERROR_CODES.filter((c) => (ERROR_CODES as readonly string[]).includes(c))).toEqual([]);
    const cli = sources("src/cli");
    expect(CLIENT_ERROR_CODES.filter((code) => !cli.some((t) => t.includes(`"${code}"`)))).toEqual([]);
  });
});

describe("describeIssues", () => {
  it("names a field the schema does not know by its own path, one problem per field", () => {
    const schema = z.strictObject({ a: z.array(z.strictObject({ b: z.number() })) });
    const r = schema.safeParse({ a: [{ b: 1, c: 2, d: 3 }], e: 4 });
    expect(r.success).toBe(false);
    if (r.success) return;
    expect(describeIssues(r.error, ["rec"]).map((p) => p.path)).toEqual(["rec.a[0].c", "rec.a[0].d", "rec.e"]);
  });
});
