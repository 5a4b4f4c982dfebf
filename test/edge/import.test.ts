// An import stores everything or nothing, and names every bad field.
import { describe, expect, it } from "vitest";
import crossRegion from "../fixtures/topologies/cross-region.yaml?raw";
import { call, newRealm } from "./helpers.ts";

describe("import", () => {
  it("a bad import stores nothing and names every bad field", async () => {
    const realm = await newRealm("bad");
    await call("POST", `/v1/realms/${realm}/import`, { raw: crossRegion, type: "application/yaml" });
    const before = await call("GET", `/v1/realms/${realm}/nodes`);
    const bad = crossRegion
      .replace("priority: 3", "priority: three")
      .replace("ipv4://10.1.1.1:1234", "ipv4://10.1.1.1:99999");
    expect(bad).not.toBe(crossRegion);
    const r = await call("POST", `/v1/realms/${realm}/import`, {
      raw: `${bad}\n  extra: { discovery: { name: new-one } }\n`,
      type: "application/yaml",
    });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe("invalid_input");
    const paths: string[] = r.body.error.issues.map((i: { path: string }) => i.path);
    expect(paths.some((p) => p.endsWith("priority"))).toBe(true);
    expect(paths.some((p) => p.includes("address"))).toBe(true);
    expect(r.body.error.issues.length).toBeGreaterThanOrEqual(2);
    const after = await call("GET", `/v1/realms/${realm}/nodes`);
    expect(after.body.version).toBe(before.body.version);
    expect(after.body.records).toEqual(before.body.records);
  });

  it("who may import is settled before the body is read: a reader or a revoked token never gets it parsed", async () => {
    const realm = await newRealm("impauth");
    const mint = async (role: "reader" | "agent") =>
      (await call("POST", `/v1/realms/${realm}/tokens`, { body: { role, namespaces: role === "agent" ? ["a"] : [] } }))
        .body.token as string;
    const reader = await mint("reader");
    const agent = await mint("agent");
    // Text that does not parse: whoever gets past the role check would get invalid_yaml.
    const garbage = { raw: "records: [ {", type: "application/yaml" };
    const asReader = await call("POST", `/v1/realms/${realm}/import`, { ...garbage, token: reader });
    expect(asReader.status).toBe(403);
    expect(asReader.body.error.code).toBe("forbidden");
    expect((await call("POST", `/v1/realms/${realm}/import`, { ...garbage, token: agent })).body.error.code).toBe(
      "invalid_yaml",
    );
    const tokens = (await call("GET", `/v1/realms/${realm}/tokens`)).body.tokens as Array<{ id: string; role: string }>;
    for (const t of tokens) expect((await call("DELETE", `/v1/realms/${realm}/tokens/${t.id}`)).status).toBe(200);
    const revoked = await call("POST", `/v1/realms/${realm}/import`, { ...garbage, token: agent });
    expect(revoked.status).toBe(401);
    expect(revoked.body.error.code).toBe("unauthorized");
  });

  it("text that is not JSON is invalid_json, not YAML invalid_yaml; an empty body too", async () => {
    const realm = await newRealm("garbage");
    const r = await call("POST", `/v1/realms/${realm}/import`, { raw: "{ nope", type: "application/json" });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe("invalid_json");
    const y = await call("POST", `/v1/realms/${realm}/import`, { raw: "a: [1,\n b", type: "application/yaml" });
    expect(y.status).toBe(400);
    expect(y.body.error.code).toBe("invalid_yaml");
    const e = await call("POST", `/v1/realms/${realm}/import`, { raw: "", type: "application/json" });
    expect(e.status).toBe(400);
    expect(e.body.error.code).toBe("invalid_json");
    const n = await call("GET", `/v1/realms/${realm}/nodes`);
    expect(n.body).toEqual({ version: 0, records: [], shared_namespaces: null });
  });

  it("an import of many records is one version", async () => {
    const realm = await newRealm("many");
    const records = Array.from({ length: 2_000 }, (_, i) => ({
      name: `n${i}`,
      metadata: { namespace_name: `ns${i % 7}` },
      gateway: [{ priority: 1, address: `ipv4://10.${(i >> 8) & 255}.${i & 255}.1:1234` }],
    }));
    const r = await call("POST", `/v1/realms/${realm}/import`, { body: records });
    expect(r.body).toEqual({ version: 1, records: 2_000 });
    const list = await call("GET", `/v1/realms/${realm}/nodes?namespace_name=ns3`);
    expect(list.body.records.length).toBe(records.filter((_, i) => i % 7 === 3).length);
  });
});
