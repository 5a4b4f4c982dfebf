import { describe, expect, it } from "vitest";
import { call, newRealm, node } from "./helpers.ts";

describe("edge basics", () => {
  it("healthz and openapi", async () => {
    expect((await call("GET", "/healthz", { token: null })).status).toBe(200);
    const doc = await call("GET", "/openapi.json", { token: null });
    expect(doc.status).toBe(200);
    expect(doc.body.paths["/v1/realms/{realm}/route-tables/{node}"].get).toBeDefined();
  });

  it("put, get, list, delete bump the version once each", async () => {
    const realm = await newRealm();
    const put = await call("PUT", `/v1/realms/${realm}/nodes/a1`, { body: node("a1") });
    expect(put.status, JSON.stringify(put.body)).toBe(201);
    expect(put.body.version).toBe(1);
    const got = await call("GET", `/v1/realms/${realm}/nodes/a1`);
    expect(got.body.record.name).toBe("a1");
    const list = await call("GET", `/v1/realms/${realm}/nodes`);
    expect(list.body).toMatchObject({ version: 1, records: [{ name: "a1" }] });
    const del = await call("DELETE", `/v1/realms/${realm}/nodes/a1`);
    expect(del.body.version).toBe(2);
    expect((await call("GET", `/v1/realms/${realm}/nodes/a1`)).status).toBe(404);
  });
});
