// scripts/preflight.mjs: the entry points stop at once, with one message that says
// how to get what is missing (a newer Node, the tests' system packages).
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { missingPackages, nodeProblem, systemProblem } from "../../scripts/preflight.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const PREFLIGHT = join(ROOT, "scripts", "preflight.mjs");

/** The machine's own old Node (Debian's, v20 on the CI image), when there is one. */
const OLD_NODE = "/usr/bin/node";
const oldNodeVersion = existsSync(OLD_NODE)
  ? spawnSync(OLD_NODE, ["-p", "process.versions.node"], { encoding: "utf8" }).stdout.trim()
  : "";
const haveOldNode = oldNodeVersion !== "" && nodeProblem(oldNodeVersion) !== undefined;

describe("preflight: Node", () => {
  it("accepts 22.12 and later, and names .ci/ensure-node.sh for anything older", () => {
    for (const v of ["22.12.0", "22.20.1", "24.1.0", "26.0.0"]) expect(nodeProblem(v)).toBeUndefined();
    for (const v of ["20.20.2", "22.11.0", "18.0.0"]) {
      const line = nodeProblem(v);
      expect(line).toContain(`Node ${v} is too old`);
      expect(line).toContain("source .ci/ensure-node.sh");
      expect(line).not.toContain("\n");
    }
  });

  it.skipIf(!haveOldNode)("npm test, npm run demo and npm run dev stop on the old Node with that one line", () => {
    for (const script of ["test", "demo", "dev"]) {
      const r = spawnSync("npm", ["run", "-s", script], {
        cwd: ROOT,
        encoding: "utf8",
        env: { ...process.env, PATH: `${dirname(OLD_NODE)}:${process.env.PATH}` },
        timeout: 60_000,
      });
      expect(r.status, script).not.toBe(0);
      expect(r.stderr.trim(), script).toBe(nodeProblem(oldNodeVersion));
    }
  });
});

describe("preflight: system packages", () => {
  it("names every missing package once, and the one command that installs them", () => {
    expect(missingPackages(() => true)).toEqual([]);
    expect(systemProblem([])).toBeUndefined();
    const all = missingPackages(() => false);
    expect(all).toEqual([
      "prometheus",
      "redis-server",
      "redis-tools",
      "curl",
      "ncat",
      "chromium",
      "openssl",
      "gcc libc6-dev",
      "kubernetes-client",
    ]);
    const text = systemProblem(all) ?? "";
    expect(text).toContain("sudo bash .ci/system-deps.sh");
    expect(text).toContain("apt-get install -y --no-install-recommends prometheus redis-server redis-tools curl ncat");
    expect(text).not.toContain("\n");
  });

  it("stops npm test's first step when a program is not on PATH", () => {
    // Only Node on PATH: every program looked up by name is missing.
    const r = spawnSync(process.execPath, [PREFLIGHT, "--system"], {
      encoding: "utf8",
      env: { PATH: dirname(process.execPath) },
    });
    expect(r.status).toBe(1);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    for (const pkg of ["prometheus", "redis-server", "redis-tools", "curl", "ncat", "openssl"])
      expect(lines[0]).toContain(pkg);
    const ok = spawnSync(process.execPath, [PREFLIGHT, "--system"], { encoding: "utf8" });
    expect(ok.status, ok.stderr).toBe(0);
  });
});
