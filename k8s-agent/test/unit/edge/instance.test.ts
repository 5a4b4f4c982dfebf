import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InstanceIdSchema } from "@hopway/core/wire";
import { describe, expect, it } from "vitest";
import { agentInstance, INSTANCE_FILE } from "../../../src/edge/instance.ts";
import { linesLogger } from "./lines-logger.ts";

describe("agentInstance", () => {
  it("is the pod's UID when there is one, and nothing is written", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hopway-instance-"));
    expect(await agentInstance("0b7c2f1e-5a4d-4c6b-9e2f-3d1a7b8c9e0f", dir)).toBe(
      "0b7c2f1e-5a4d-4c6b-9e2f-3d1a7b8c9e0f",
    );
    expect(() => readFileSync(join(dir, INSTANCE_FILE))).toThrow(/ENOENT/);
  });

  it("without one, is made once and kept in data_dir, so a restart is the same instance", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "hopway-instance-")), "not-yet");
    const first = await agentInstance(undefined, dir);
    expect(InstanceIdSchema.safeParse(first).success).toBe(true);
    expect(await agentInstance(undefined, dir)).toBe(first);
    expect(readFileSync(join(dir, INSTANCE_FILE), "utf8").trim()).toBe(first);
  });

  it("replaces a malformed id, and still gives one when data_dir cannot be written", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hopway-instance-"));
    writeFileSync(join(dir, INSTANCE_FILE), "not an id\n");
    const { log, lines } = linesLogger();
    const warnings = () => lines.filter((l) => l.startsWith("warn "));
    const fresh = await agentInstance(undefined, dir, log);
    expect(fresh).not.toBe("not an id");
    expect(await agentInstance(undefined, dir)).toBe(fresh);
    const locked = mkdtempSync(join(tmpdir(), "hopway-instance-"));
    chmodSync(locked, 0o500);
    try {
      const id = await agentInstance(undefined, join(locked, "sub"), log);
      expect(InstanceIdSchema.safeParse(id).success).toBe(true);
    } finally {
      chmodSync(locked, 0o700);
    }
    expect(warnings()[0]).toContain("malformed");
    // Running as root, the directory is writable all the same; otherwise the failure is said.
    if (process.getuid?.() !== 0) expect(warnings().at(-1)).toContain("cannot keep the instance id");
  });
});
