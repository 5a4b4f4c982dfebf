import { beforeAll, describe, expect, it } from "vitest";
import { fullRecord, RECORD_CASES, type RecordCase } from "../core/record-table.cases.ts";
import { call, newRealm } from "./helpers.ts";

// The record table's cases (test/core/record-table.cases.ts) through the edge API under workerd:
// the same records are accepted or refused, at the same paths, by PUT /nodes/{name} and by
// POST /import as by the core. The admin writes them, so the address policy plays no part.

const paths = (issues: ReadonlyArray<{ path: string }> | undefined): string[] => [
  ...new Set((issues ?? []).map((p) => p.path)),
];

/** PUT takes the name from the URL: a body without one is complete, one that differs is refused at `name`. */
function putExpectation(c: RecordCase): { accept: boolean; path?: string } {
  if (c.field === "name" && c.variant === "absent") return { accept: true };
  return c.accept ? { accept: true } : { accept: false, ...(c.path !== undefined ? { path: c.path } : {}) };
}

describe("the record table, field by field (edge)", () => {
  let realm: string;
  beforeAll(async () => {
    realm = await newRealm("table");
  });

  for (const c of RECORD_CASES) {
    it(`${c.id}: PUT and import agree with the table`, async () => {
      const named = typeof c.record.name === "string" && c.record.name !== "" ? c.record.name : fullRecord(c.kind).name;
      const put = await call("PUT", `/v1/realms/${realm}/nodes/${named}`, { body: c.record });
      const want = putExpectation(c);
      if (want.accept) expect([200, 201], JSON.stringify(put.body)).toContain(put.status);
      else {
        expect(put.status, JSON.stringify(put.body)).toBe(400);
        expect(put.body.error.code).toBe("invalid_input");
        expect(put.body.error.path).toBe(want.path);
        expect(paths(put.body.error.issues)).toEqual([want.path]);
      }

      const imported = await call("POST", `/v1/realms/${realm}/import`, { body: [c.record] });
      if (c.accept) expect(imported.status, JSON.stringify(imported.body)).toBe(200);
      else {
        expect(imported.status, JSON.stringify(imported.body)).toBe(400);
        expect(imported.body.error.code).toBe("invalid_input");
        expect(paths(imported.body.error.issues)).toEqual([`[0].${c.path}`]);
      }
    });
  }

  it("keeps a client's gateways as written and routes to it through its relay", async () => {
    const r = await newRealm("table");
    const client = { ...fullRecord("client"), gateway: [{ priority: 0, address: "ipv4://127.0.0.9:1" }] };
    const app = { ...fullRecord("node"), advertise_relay: { name: "relay1" } };
    expect((await call("POST", `/v1/realms/${r}/import`, { body: [fullRecord("relay"), app, client] })).status).toBe(
      200,
    );
    const stored = await call("GET", `/v1/realms/${r}/nodes/client1`);
    expect(stored.body.record.gateway).toEqual(client.gateway);
    const route = await call("GET", `/v1/realms/${r}/routes?from=app1&to=client1`);
    expect(route.status).toBe(200);
    expect(route.body.hops.at(-1)).toMatchObject({ node: "client1", address: null, priority: 0 });
  });
});
