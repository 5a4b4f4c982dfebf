// The agent's log helpers: the limit on repeated warnings, with a fake clock.
import { describe, expect, it } from "vitest";
import { LogLimit } from "../../src/log.ts";

describe("LogLimit", () => {
  it("at most its lines per window, and the next line says how many it left out", () => {
    let now = 0;
    const limit = new LogLimit(3, 100, () => now);
    expect([limit.take(), limit.take(), limit.take(), limit.take(), limit.take()]).toEqual([
      0,
      0,
      0,
      undefined,
      undefined,
    ]);
    now = 99;
    expect(limit.take()).toBeUndefined();
    now = 100;
    expect(limit.take()).toBe(3);
    expect(limit.take()).toBe(0);
  });
});
