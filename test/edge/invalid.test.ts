// Every endpoint fed garbage answers 4xx with a stable code and changes nothing.

import { describe, expect, it } from "vitest";
import { ADMIN, call, edgeFetch, newRealm, node } from "./helpers.ts";

describe("invalid input changes nothing", () => {
  it("bodies: invalid JSON, wrong types, unknown fields, oversized", async () => {
    const realm = await newRealm("inv");
    const b = `/v1/realms/${realm}`;
    await call("PUT", `${b}/nodes/a`, { body: { ...node("a"), ttl_seconds: 600 } });
    const snapshot = async () => {
      const list = await call("GET", `${b}/nodes`);
      const a = await call("GET", `${b}/nodes/a`);
      const tokens = await call("GET", `${b}/tokens`);
      return { list: list.body, a: a.body.record, ttl: a.body.ttl_seconds, tokens: tokens.body };
    };
    const before = await snapshot();
    const big = "x".repeat(300 * 1024);
    const cases: [string, string, { raw?: string; body?: unknown; type?: string }, number, string, string?][] = [
      ["PUT", `${b}/nodes/a`, { raw: "{not json" }, 400, "invalid_json"],
      ["PUT", `${b}/nodes/a`, { raw: "" }, 400, "invalid_json"],
      ["PUT", `${b}/nodes/a`, { body: [1, 2] }, 400, "invalid_input"],
      ["PUT", `${b}/nodes/a`, { body: { ...node("a"), gateway: "nope" } }, 400, "invalid_input", "gateway"],
      ["PUT", `${b}/nodes/a`, { body: { ...node("a"), surprise: 1 } }, 400, "invalid_input"],
      ["PUT", `${b}/nodes/a`, { body: { ...node("a"), name: "b" } }, 400, "invalid_input", "name"],
      ["PUT", `${b}/nodes/a`, { body: { ...node("a"), ttl_seconds: 0 } }, 400, "invalid_input", "ttl_seconds"],
      ["PUT", `${b}/nodes/a`, { body: { ...node("a"), ttl_seconds: 86_401 } }, 400, "invalid_input", "ttl_seconds"],
      ["PUT", `${b}/nodes/a`, { body: { ...node("a"), custom_data: big } }, 413, "body_too_large"],
      ["PUT", `${b}/nodes/Not_A_Name`, { body: node("x") }, 400, "invalid_input", "name"],
      ["POST", `${b}/nodes/a/heartbeat`, { raw: "[" }, 400, "invalid_json"],
      ["POST", `${b}/nodes/a/heartbeat`, { body: { ttl_seconds: "10" } }, 400, "invalid_input", "ttl_seconds"],
      ["POST", `${b}/nodes/a/heartbeat`, { body: { extra: true } }, 400, "invalid_input"],
      [
        "POST",
        `${b}/nodes/a/heartbeat`,
        { body: { report: { workload: "w", ordinal: -1, load: 1, holds_state: true } } },
        400,
        "invalid_input",
        "report.ordinal",
      ],
      ["POST", `${b}/nodes/a/heartbeat`, { raw: big }, 413, "body_too_large"],
      ["POST", `${b}/tokens`, { raw: "nope" }, 400, "invalid_json"],
      ["POST", `${b}/tokens`, { body: { role: "root", namespaces: [] } }, 400, "invalid_input", "role"],
      ["POST", `${b}/tokens`, { body: { role: "reader", admin: true } }, 400, "invalid_input"],
      ["POST", `${b}/tokens`, { raw: big }, 413, "body_too_large"],
      ["POST", `${b}/import`, { raw: "[{]", type: "application/json" }, 400, "invalid_json"],
      [
        "POST",
        `${b}/import`,
        { body: [{ name: "a", gateway: [{ priority: "x", address: "ipv4://1.2.3.4:1" }] }] },
        400,
        "invalid_input",
      ],
      ["POST", `${b}/import`, { body: [{ ...node("a"), bogus: 1 }] }, 400, "invalid_input"],
      ["POST", `/v1/realms/BAD_REALM/import`, { body: [] }, 400, "invalid_input", "realm"],
    ];
    for (const [method, path, opts, status, code, p] of cases) {
      const r = await call(method, path, opts);
      const label = `${method} ${path} ${JSON.stringify(opts).slice(0, 80)}`;
      expect(r.status, `${label}: ${JSON.stringify(r.body).slice(0, 300)}`).toBe(status);
      expect(r.body.error.code, label).toBe(code);
      expect(typeof r.body.error.message, label).toBe("string");
      if (p !== undefined) expect(r.body.error.path, label).toBe(p);
    }
    const unknownField = await call("PUT", `${b}/nodes/a`, { body: { ...node("a"), surprise: 1, other: 2 } });
    expect(unknownField.body.error.message).toContain("surprise");
    expect(unknownField.body.error.message).toContain("other");
    expect(await snapshot()).toEqual(before);
  });

  it("queries: unknown parameters, wrong types, missing parameters", async () => {
    const realm = await newRealm("invq");
    const b = `/v1/realms/${realm}`;
    await call("PUT", `${b}/nodes/a`, { body: node("a") });
    const cases: [string, number, string, string?][] = [
      [`${b}/nodes?colour=blue`, 400, "invalid_input"],
      [`${b}/nodes?pid=abc`, 400, "invalid_input", "pid"],
      [`${b}/nodes?label=nokey`, 400, "invalid_input"],
      // Assignment would make it the prototype and drop the condition: every record would match.
      [`${b}/nodes?label=app=a&label=__proto__=x`, 400, "invalid_input", "label[1]"],
      [`${b}/nodes?kind=a&kind=b`, 400, "invalid_input", "kind"],
      [`${b}/routes?from=a`, 400, "invalid_input", "to"],
      [`${b}/routes?from=a&to=a&x=1`, 400, "invalid_input"],
      [`${b}/route-tables/a?wait=soon`, 400, "invalid_input", "wait"],
      [`${b}/workloads/NOPE_`, 400, "invalid_input", "workload"],
      [`${b}/nothing-here`, 404, "not_found"],
    ];
    for (const [path, status, code, p] of cases) {
      const r = await call("GET", path);
      expect(r.status, `${path}: ${JSON.stringify(r.body)}`).toBe(status);
      expect(r.body.error.code).toBe(code);
      if (p !== undefined) expect(r.body.error.path).toBe(p);
    }
    expect((await call("GET", `${b}/nodes`)).body.version).toBe(1);
  });

  it("an import over the size limit is 413 before it is buffered", async () => {
    const realm = await newRealm("huge");
    const { MAX_IMPORT_BYTES } = await import("../../src/edge/http.ts");
    // A streamed body without a declared length: the limit must hold while reading.
    const chunk = new Uint8Array(1024 * 1024).fill(0x61);
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent > MAX_IMPORT_BYTES) return controller.close();
        sent += chunk.byteLength;
        controller.enqueue(chunk);
      },
    });
    const res = await edgeFetch(`https://edge/v1/realms/${realm}/import`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/yaml" },
      body: stream,
    });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("body_too_large");
    expect((await call("GET", `/v1/realms/${realm}/nodes`)).body.version).toBe(0);
  });
});
