import { SELF } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";

describe("smoke", () => {
  it("health", async () => {
    const r = await SELF.fetch("https://edge/healthz");
    expect(r.status).toBe(200);
    const stub = env.REALM.get(env.REALM.idFromName("x"));
    expect(await stub.ping()).toBe(1);
  });
});
