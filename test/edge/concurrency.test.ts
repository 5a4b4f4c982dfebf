// Hundreds of concurrent registrations: each bumps the version exactly once and none is lost.
import { describe, expect, it } from "vitest";
import { call, newRealm, node } from "./helpers.ts";

describe("concurrent writes", () => {
  it("300 concurrent PUTs give 300 distinct versions and 300 records", async () => {
    const realm = await newRealm("conc");
    const N = 300;
    const results = await Promise.all(
      Array.from({ length: N }, (_, i) => call("PUT", `/v1/realms/${realm}/nodes/n${i}`, { body: node(`n${i}`) })),
    );
    expect(results.every((r) => r.status === 201)).toBe(true);
    const versions = results.map((r) => r.body.version as number).sort((a, b) => a - b);
    expect(versions).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    const list = await call("GET", `/v1/realms/${realm}/nodes`);
    expect(list.body.version).toBe(N);
    expect(list.body.records).toHaveLength(N);
    // Concurrent heartbeats and re-registrations of unchanged records do not bump it.
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        i % 2 === 0
          ? call("POST", `/v1/realms/${realm}/nodes/n${i}/heartbeat`, { body: { ttl_seconds: 60 } })
          : call("PUT", `/v1/realms/${realm}/nodes/n${i}`, {
              body: list.body.records.find((r: { name: string }) => r.name === `n${i}`),
            }),
      ),
    );
    expect((await call("GET", `/v1/realms/${realm}/nodes`)).body.version).toBe(N);
  });
});
