import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// The Worker serves a committed bundle of the page (it embeds the core's dial
// rule). wrangler's [build] rebuilds it for dev and deploy; this catches a
// commit that changed the sources without regenerating it.
const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

describe("topology page bundle", () => {
  it("is up to date with its sources", () => {
    let status = 0;
    try {
      execFileSync(process.execPath, [join(ROOT, "src/edge/ui/build.mjs"), "--check"], { stdio: "pipe" });
    } catch (err) {
      status = (err as { status?: number }).status ?? 1;
    }
    expect(status, "run `node src/edge/ui/build.mjs` and commit src/edge/ui/generated/assets.ts").toBe(0);
  });
});
