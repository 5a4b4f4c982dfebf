// A newcomer's first two commands, on a fresh clone: `npm ci` and `npm run demo`
// must work with nothing but Node, leave the checkout exactly as cloned, and the
// relays must dial nothing outside 127.0.0.0/8.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const work = mkdtempSync(join(tmpdir(), "hopway-fresh-clone-"));
const clone = join(work, "hopway");
// The Node running the tests (>= 22.12) comes first, as `source .ci/ensure-node.sh` would arrange.
const env = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ""}` };

afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Runs a command in the clone, bounded in time; resolves with its exit code and output. */
function run(cmd: string, args: string[], timeoutMs: number): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: clone, env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (out += c.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

describe("a fresh clone", () => {
  it("npm ci && npm run demo work, leave the tree clean and dial only loopback", async () => {
    const head = spawnSync("git", ["rev-parse", "HEAD"], { cwd: ROOT, encoding: "utf8" }).stdout.trim();
    const cloned = spawnSync("git", ["clone", "--quiet", "--no-hardlinks", ROOT, clone], { encoding: "utf8" });
    expect(cloned.status, cloned.stderr).toBe(0);
    expect(spawnSync("git", ["rev-parse", "HEAD"], { cwd: clone, encoding: "utf8" }).stdout.trim()).toBe(head);

    const ci = await run("npm", ["ci", "--prefer-offline", "--no-audit", "--no-fund"], 420_000);
    expect(ci.code, ci.out.slice(-3000)).toBe(0);

    const demo = await run("npm", ["run", "-s", "demo"], 180_000);
    expect(demo.code, demo.out.slice(-3000)).toBe(0);
    expect(demo.out).toMatch(/^OK: \d+ bytes went app2 → relaysvr2 → relaysvr3 → relaysvr1 → app1 and back/m);

    // Every address the relays dialled, as they logged it.
    const line = /^demo: the relays dialled (\d+) addresses: (.*)$/m.exec(demo.out);
    expect(line, demo.out).not.toBeNull();
    const dialed = (line?.[2] ?? "").split(", ");
    expect(dialed).toHaveLength(Number(line?.[1]));
    // One dial per hop after the first relay: relaysvr3, relaysvr1, app1.
    expect(dialed.length).toBeGreaterThanOrEqual(3);
    for (const address of dialed) expect(address).toMatch(/^ipv4:\/\/127\.\d{1,3}\.\d{1,3}\.\d{1,3}:\d+$/);

    const status = spawnSync("git", ["status", "--porcelain", "--untracked-files=all"], {
      cwd: clone,
      encoding: "utf8",
    });
    expect(status.status).toBe(0);
    expect(status.stdout).toBe("");
    console.log(`fresh clone: npm ci and npm run demo passed; ${dialed.length} dials, all on loopback; tree clean`);
  }, 660_000);
});
