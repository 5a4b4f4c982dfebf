import { describe, expect, it } from "vitest";
import { API, type Endpoint } from "../../src/edge/api.ts";
import { createApp } from "../../src/edge/app.ts";
import { openApiPath } from "../../src/edge/openapi.ts";
import { answerProblem } from "./answers.ts";
import { call } from "./helpers.ts";

const ENDPOINTS = Object.values(API) as Endpoint[];

describe("/openapi.json", () => {
  it("documents every route the Worker serves, with the same methods", async () => {
    const doc = await call("GET", "/openapi.json", { token: null });
    expect(doc.status).toBe(200);
    const paths = doc.body.paths as Record<string, Record<string, unknown>>;

    const served = new Set<string>();
    for (const r of createApp().routes) {
      if (r.method === "ALL") continue;
      served.add(`${r.method.toLowerCase()} ${openApiPath(r.path)}`);
    }
    expect(served.size).toBeGreaterThan(30);

    const missing = [...served].filter((entry) => {
      const [method, path] = entry.split(" ") as [string, string];
      return paths[path]?.[method] === undefined;
    });
    expect(missing).toEqual([]);
    // And the table holds nothing the Worker does not serve.
    const stale = ENDPOINTS.filter((e) => !served.has(`${e.method} ${openApiPath(e.path)}`));
    expect(stale.map((e) => `${e.method} ${e.path}`)).toEqual([]);
  });

  it("documents every status of every endpoint, with the body schema the handlers reply with", async () => {
    const doc = await call("GET", "/openapi.json", { token: null });
    const paths = doc.body.paths as Record<
      string,
      Record<string, { responses: Record<string, { content?: unknown }> }>
    >;
    const problems: string[] = [];
    for (const e of ENDPOINTS) {
      const documented = paths[openApiPath(e.path)]?.[e.method]?.responses ?? {};
      for (const [status, answer] of Object.entries(e.answers)) {
        const d = documented[status];
        if (d === undefined) problems.push(`${e.method} ${e.path} ${status}: not documented`);
        else if ((d.content !== undefined) !== (answer.schema !== undefined)) {
          problems.push(`${e.method} ${e.path} ${status}: body documented ${d.content !== undefined}`);
        }
      }
      expect(Object.keys(documented).sort(), `${e.method} ${e.path}`).toEqual(Object.keys(e.answers).sort());
    }
    expect(problems).toEqual([]);
    // A group's members (`routes`) are part of the documented route answer.
    const route = paths["/v1/realms/{realm}/routes"]?.get?.responses["200"]?.content as Record<
      string,
      { schema: { properties: Record<string, unknown> } }
    >;
    expect(Object.keys(route["application/json"]?.schema.properties ?? {})).toContain("routes");
  });
});

describe("the answer check every edge test goes through", () => {
  const realm = "https://edge/v1/realms/r1";
  const ok = { realm: "r1", created: true, created_at: "2026-01-01T00:00:00.000Z" };
  const json = "application/json; charset=utf-8";

  it("passes a documented answer", () => {
    expect(answerProblem("PUT", realm, 201, json, JSON.stringify(ok))).toBeNull();
  });

  it("refuses an unknown key, at the top and deep inside", () => {
    expect(answerProblem("PUT", realm, 201, json, JSON.stringify({ ...ok, extra: 1 }))).toMatch(/Unrecognized key/);
    const route = {
      from: "a",
      to: "b",
      version: 1,
      hops: [{ node: "b", address: "ipv4://127.0.0.1:1", priority: 1, alternatives: [], weight: 3 }],
    };
    expect(answerProblem("GET", `${realm}/routes?from=a&to=b`, 200, json, JSON.stringify(route))).toMatch(
      /hops\.0: Unrecognized key: "weight"/,
    );
  });

  it("refuses a missing field, a status the endpoint does not declare, and a body where none is declared", () => {
    expect(answerProblem("PUT", realm, 201, json, JSON.stringify({ realm: "r1", created: true }))).toMatch(
      /created_at/,
    );
    expect(answerProblem("PUT", realm, 202, json, JSON.stringify(ok))).toMatch(/status not declared/);
    expect(answerProblem("GET", `${realm}/nodes`, 304, null, "{}")).toMatch(/without a body/);
  });

  it("holds a path no endpoint serves to the error body", () => {
    const notFound = { error: { code: "not_found", message: "no such endpoint" } };
    expect(answerProblem("GET", "https://edge/v2/x", 404, json, JSON.stringify(notFound))).toBeNull();
    expect(answerProblem("GET", "https://edge/v2/x", 200, json, "{}")).toMatch(/status not declared/);
    const unknownCode = { error: { code: "teapot", message: "no" } };
    expect(answerProblem("GET", "https://edge/v2/x", 404, json, JSON.stringify(unknownCode))).toMatch(/code/);
  });

  it("is how every edge test reaches the Worker (no test calls SELF.fetch itself)", () => {
    const sources = import.meta.glob("./*.test.ts", { query: "?raw", import: "default", eager: true }) as Record<
      string,
      string
    >;
    expect(Object.keys(sources).length).toBeGreaterThan(10);
    const bypassing = Object.entries(sources)
      .filter(([, text]) => /SELF\s*\.\s*fetch/.test(text))
      .map(([file]) => file);
    expect(bypassing).toEqual([]);
  });
});
