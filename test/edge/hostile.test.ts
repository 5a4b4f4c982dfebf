// Every edge endpoint, systematically, fed what a hostile or broken client
// sends: malformed and pathological JSON, every field of every body with a
// wrong type, unknown and prototype-polluting fields, oversized bodies, bad
// path parameters and queries, wrong methods. Each answers 4xx with a stable
// code and a message (never 5xx, never 2xx), and the realm is unchanged after.
import { evictDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { clearRealmCacheForTest } from "../../src/edge/realm-cache.ts";
import { call, edgeFetch, newRealm, node } from "./helpers.ts";

type Body = { raw: string | Uint8Array; type?: string } | { body: unknown };

const BAD_JSON: Array<[string, string | Uint8Array]> = [
  ["truncated", '{"name": "a"'],
  ["trailing comma", '{"a": 1,}'],
  ["single quotes", "{'a': 1}"],
  ["NaN", "NaN"],
  ["bare word", "nul"],
  ["NUL byte", "\u0000"],
  ["BOM then garbage", "\ufeff{"],
  ["invalid UTF-8", new Uint8Array([0x7b, 0xff, 0xfe, 0xfd, 0x7d])],
  ["empty", ""],
  ["whitespace", "  \n\t "],
  ["two documents", "{} {}"],
  ["comment", '{"a": 1 /* x */}'],
];

const WRONG_SHAPES: Array<[string, string]> = [
  ["a string", '"x"'],
  ["a number", "42"],
  ["null", "null"],
  ["true", "true"],
  ["deep array nesting", `${"[".repeat(60_000)}${"]".repeat(60_000)}`],
  ["deep object nesting", `${'{"a":'.repeat(20_000)}1${"}".repeat(20_000)}`],
  ["prototype pollution", '{"__proto__": {"admin": true, "role": "agent"}, "constructor": {"prototype": {"x": 1}}}'],
  ["unknown fields only", '{"zzz": 1, "yyy": [2]}'],
  ["number overflow", '{"ttl_seconds": 1e309, "priority": -1e309}'],
];

/** A valid body per endpoint and, per top-level field, values that are wrong for it. */
function fieldMatrix(): Array<{
  method: string;
  path: string;
  base: Record<string, unknown>;
  wrong: Record<string, unknown[]>;
}> {
  const long = "x".repeat(5000);
  const gw = { priority: 1, address: "ipv4://10.1.2.3:80" };
  return [
    {
      method: "PUT",
      path: "/nodes/a",
      base: { ...node("a"), ttl_seconds: 600 },
      wrong: {
        name: [1, null, true, [], {}, "A", "b", "a_b", long],
        type: ["nope", 1, null],
        metadata: [null, 1, "ns", [], { namespace_name: 1 }, { namespace_name: "ns", labels: "x" }],
        gateway: [
          null,
          1,
          "ipv4://10.1.2.3:80",
          {},
          [1],
          [{}],
          [{ ...gw, priority: "1" }],
          [{ ...gw, priority: 1.5 }],
          [{ ...gw, address: 7 }],
          [{ ...gw, address: "http://10.1.2.3/" }],
          [{ ...gw, address: "ipv4://10.1.2.3:99999" }],
          [{ ...gw, extra: true }],
          Array.from({ length: 65 }, () => gw),
        ],
        ttl_seconds: [0, -1, 1.5, "600", null, 86_401, [], {}],
        advertise_relay: [1, true, "x"],
        zzz_unknown: [1, null, {}],
      },
    },
    {
      method: "POST",
      path: "/nodes/a/heartbeat",
      base: { ttl_seconds: 600 },
      wrong: {
        ttl_seconds: [0, -5, "60", null, [], 86_401, 2.5],
        report: [1, "x", [], {}, { workload: 1 }, { workload: "w", ordinal: "0", load: 1, holds_state: true }],
        zzz_unknown: [1],
      },
    },
    {
      method: "POST",
      path: "/tokens",
      base: { role: "agent", namespaces: ["ns1"] },
      wrong: {
        role: [1, null, "admin", "READER", [], {}],
        namespaces: ["ns1", [1], [null], {}, [long]],
        zzz_unknown: [true],
      },
    },
    {
      method: "POST",
      path: "/owners",
      base: { group: "kv", keys: ["k1"] },
      wrong: {
        group: [1, null, "KV!", [], {}],
        keys: [[], "k1", [1], [null], {}, null, [{}]],
        zzz_unknown: [1],
      },
    },
  ];
}

describe("hostile input to every edge endpoint", () => {
  it("answers 4xx with a code and message to every malformed body, and changes nothing", async () => {
    const realm = await newRealm("hostile");
    const b = `/v1/realms/${realm}`;
    await call("PUT", `${b}/nodes/a`, { body: { ...node("a"), ttl_seconds: 600 } });
    await call("PUT", `${b}/nodes/c`, { body: node("c") });
    await call("POST", `${b}/tokens`, { body: { role: "reader" } });
    const snapshot = async () => {
      const list = await call("GET", `${b}/nodes`);
      const a = await call("GET", `${b}/nodes/a`);
      const tokens = await call("GET", `${b}/tokens`);
      return { list: list.body, a: a.body, tokens: tokens.body };
    };
    const before = await snapshot();

    const bodyEndpoints: Array<[string, string]> = [
      ["PUT", "/nodes/a"],
      ["PUT", "/nodes/new-one"],
      ["POST", "/nodes/a/heartbeat"],
      ["POST", "/tokens"],
      ["POST", "/owners"],
      ["POST", "/import"],
    ];
    const requests: Array<[string, string, Body]> = [];
    for (const [method, path] of bodyEndpoints) {
      for (const [, raw] of [...BAD_JSON, ...WRONG_SHAPES]) {
        // A heartbeat may have no body at all (it renews with the stored lease): not an error.
        if (path.endsWith("/heartbeat") && typeof raw === "string" && raw.trim() === "") continue;
        requests.push([method, path, { raw }]);
      }
      requests.push([method, path, { raw: JSON.stringify({ pad: "x".repeat(300 * 1024) }) }]);
    }
    for (const { method, path, base, wrong } of fieldMatrix()) {
      for (const [field, values] of Object.entries(wrong)) {
        for (const v of values) requests.push([method, path, { body: { ...base, [field]: v } }]);
      }
    }
    // Required fields missing.
    requests.push(["POST", "/tokens", { body: { namespaces: ["ns1"] } }]);
    requests.push(["POST", "/owners", { body: { keys: ["k1"] } }]);
    requests.push(["POST", "/owners", { body: { group: "kv" } }]);
    // Imports: the topology format, with broken records.
    for (const bad of [[1], [null], [{ name: 1 }], { x: 1 }, { x: { discovery: 1 } }, [{ ...node("z"), bogus: 1 }]]) {
      requests.push(["POST", "/import", { body: bad }]);
    }
    requests.push(["POST", "/import", { raw: "a: [unclosed\n  - : :", type: "application/yaml" }]);
    requests.push(["POST", "/import", { raw: "&a [*a]", type: "application/yaml" }]);

    const problems: string[] = [];
    const codes = new Map<string, number>();
    for (const [method, path, body] of requests) {
      const opts = "raw" in body ? { raw: body.raw, type: body.type ?? "application/json" } : { body: body.body };
      const r = await call(method, `${b}${path}`, opts);
      const label = `${method} ${path} ${String("raw" in body ? body.raw : JSON.stringify(body.body)).slice(0, 60)}`;
      const code = r.body?.error?.code;
      codes.set(`${r.status} ${code}`, (codes.get(`${r.status} ${code}`) ?? 0) + 1);
      if (r.status < 400 || r.status >= 500) problems.push(`${label}: ${r.status}`);
      else if (typeof code !== "string" || code === "" || typeof r.body.error.message !== "string") {
        problems.push(`${label}: no error code/message: ${JSON.stringify(r.body).slice(0, 120)}`);
      }
    }
    expect(problems, problems.slice(0, 15).join("\n")).toEqual([]);
    expect(await snapshot()).toEqual(before);
    console.log(
      `edge hostile bodies: ${requests.length} requests over ${bodyEndpoints.length} body endpoints, all 4xx (${[...codes].map(([k, v]) => `${k}×${v}`).join(", ")}); realm unchanged`,
    );
  });

  it("bad path parameters, queries and methods on every route: 4xx with a code, never 5xx", async () => {
    const realm = await newRealm("hostileq");
    const b = `/v1/realms/${realm}`;
    await call("PUT", `${b}/nodes/a`, { body: node("a") });
    const before = (await call("GET", `${b}/nodes`)).body;
    const names = ["A", "a_b", "%00", "..", "..%2F..%2Fx", "a%2Fb", "%C3%A9", "a".repeat(300), "-a", "a.", "%20"];
    const paths: Array<[string, string]> = [];
    for (const n of names) {
      paths.push(
        ["GET", `${b}/nodes/${n}`],
        ["PUT", `${b}/nodes/${n}`],
        ["DELETE", `${b}/nodes/${n}`],
        ["POST", `${b}/nodes/${n}/heartbeat`],
        ["GET", `${b}/route-tables/${n}`],
        ["GET", `${b}/workloads/${n}`],
        ["GET", `${b}/groups/${n}/membership`],
        ["DELETE", `${b}/tokens/${n}`],
        ["GET", `/v1/realms/${n}/nodes`],
        ["POST", `/v1/realms/${n}/import`],
      );
    }
    for (const q of ["wait=-1", "wait=61", "wait=1e3", "wait=abc", "wait=1&wait=2", "x=1", `wait=${"9".repeat(400)}`]) {
      paths.push(["GET", `${b}/route-tables/a?${q}`]);
    }
    for (const q of [
      "from=a",
      "to=a",
      "from=a&to=A",
      "from=a&to=a&to=b",
      "from=&to=",
      "from[]=a&to=a",
      "from=a&to=nope",
    ]) {
      paths.push(["GET", `${b}/routes?${q}`]);
    }
    for (const q of ["label=", "label==", "kind=", "pid=-1", "zzz=1"]) paths.push(["GET", `${b}/nodes?${q}`]);
    for (const q of [
      "",
      "group=kv",
      "key=a",
      "group=a&key=",
      `group=a&${Array.from({ length: 300 }, (_, i) => `key=k${i}`).join("&")}`,
    ]) {
      paths.push(["GET", `${b}/owners?${q}`]);
    }
    // Methods no route takes.
    for (const p of ["/nodes", "/nodes/a", "/routes", "/route-tables/a", "/tokens", "/import", "/owners"]) {
      paths.push(["PATCH", `${b}${p}`]);
    }
    paths.push(
      ["DELETE", `${b}/nodes`],
      ["PUT", `${b}/routes`],
      ["POST", `${b}/route-tables/a`],
      ["GET", `${b}/import`],
    );

    const problems: string[] = [];
    const statuses = new Map<number, number>();
    for (const [method, path] of paths) {
      const opts = method === "PUT" || method === "POST" ? { body: node("zz") } : {};
      const r = await call(method, path, opts);
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      if (r.status < 400 || r.status >= 500) problems.push(`${method} ${path.slice(0, 90)}: ${r.status}`);
      else if (typeof r.body?.error?.code !== "string") problems.push(`${method} ${path.slice(0, 90)}: no code`);
    }
    expect(problems, problems.slice(0, 15).join("\n")).toEqual([]);
    expect((await call("GET", `${b}/nodes`)).body).toEqual(before);
    console.log(
      `edge hostile paths/queries/methods: ${paths.length} requests, all 4xx (${[...statuses].map(([k, v]) => `${k}×${v}`).join(", ")}); realm unchanged`,
    );
  });
});

describe("names and YAML a hostile tenant sends", () => {
  it("NUL or newline in a namespace, a __proto__ label key and unknown YAML tags: 400 naming the field, nothing stored", async () => {
    const realm = await newRealm("names");
    const b = `/v1/realms/${realm}`;
    const before = (await call("GET", `${b}/nodes`)).body;
    for (const ns of ["a\u0000b", "a\nb", "a\r\nInjected: 1"]) {
      const put = await call("PUT", `${b}/nodes/x`, { body: node("x", ns) });
      expect(put.status, JSON.stringify(ns)).toBe(400);
      expect(put.body.error.path).toBe("metadata.namespace_name");
      const imp = await call("POST", `${b}/import`, { body: [node("x", ns)] });
      expect(imp.status).toBe(400);
      expect(imp.body.error.path).toBe("[0].metadata.namespace_name");
      const tok = await call("POST", `${b}/tokens`, { body: { role: "agent", namespaces: [ns] } });
      expect(tok.status).toBe(400);
      expect(tok.body.error.path).toBe("namespaces[0]");
    }
    const proto = await call("PUT", `${b}/nodes/x`, {
      raw: '{"metadata": {"namespace_name": "ns1", "labels": {"__proto__": "x"}}}',
    });
    expect(proto.status).toBe(400);
    expect(proto.body.error.path).toBe("metadata.labels.__proto__");
    const tagged = await call("POST", `${b}/import`, {
      raw: "- name: x\n  custom_data: !!js/function 'function () {}'\n",
      type: "application/yaml",
    });
    expect(tagged.status).toBe(400);
    expect(tagged.body.error.code).toBe("invalid_yaml");
    expect((await call("GET", `${b}/nodes`)).body).toEqual(before);
  });
});

describe("oversized bodies without a declared length", () => {
  it("every body endpoint stops reading a streamed body past its limit: 413, nothing stored", async () => {
    const realm = await newRealm("stream");
    const b = `/v1/realms/${realm}`;
    await call("PUT", `${b}/nodes/a`, { body: { ...node("a"), ttl_seconds: 600 } });
    const before = (await call("GET", `${b}/nodes/a`)).body;
    const endpoints: Array<[string, string]> = [
      ["PUT", "/nodes/a"],
      ["PUT", "/nodes/b"],
      ["POST", "/nodes/a/heartbeat"],
      ["POST", "/tokens"],
      ["POST", "/owners"],
    ];
    for (const [method, path] of endpoints) {
      const chunk = new TextEncoder().encode(`${" ".repeat(64 * 1024 - 1)}\n`);
      let sent = 0;
      // A JSON object that never ends: 4 MiB of whitespace after an opening brace.
      const stream = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode("{"));
        },
        pull(controller) {
          if (sent >= 4 * 1024 * 1024) return controller.close();
          sent += chunk.byteLength;
          controller.enqueue(chunk);
        },
      });
      const res = await edgeFetch(`https://edge${b}${path}`, {
        method,
        headers: { authorization: "Bearer test-admin-token", "content-type": "application/json" },
        body: stream,
      });
      const body = (await res.json()) as { error?: { code?: string } };
      expect(res.status, `${method} ${path}`).toBe(413);
      expect(body.error?.code).toBe("body_too_large");
    }
    expect((await call("GET", `${b}/nodes/b`)).status).toBe(404);
    expect((await call("GET", `${b}/nodes/a`)).body).toEqual(before);
    expect((await call("GET", `${b}/tokens`)).body.tokens).toEqual([]);
  });
});

describe("concurrent mixed writes", () => {
  it("400 concurrent creates, changes and deletes: one version each, none lost, all kept across eviction", async () => {
    const realm = await newRealm("mixed");
    const b = `/v1/realms/${realm}`;
    const seed = await call("POST", `${b}/import`, {
      body: Array.from({ length: 200 }, (_, i) => node(`old${i}`)),
    });
    expect(seed.status).toBe(200);
    const v0 = seed.body.version as number;
    const ops = [
      ...Array.from({ length: 200 }, (_, i) => () => call("PUT", `${b}/nodes/new${i}`, { body: node(`new${i}`) })),
      ...Array.from({ length: 100 }, (_, i) => () => call("DELETE", `${b}/nodes/old${i}`)),
      ...Array.from(
        { length: 100 },
        (_, i) => () => call("PUT", `${b}/nodes/old${100 + i}`, { body: node(`old${100 + i}`, "changed") }),
      ),
    ];
    const results = await Promise.all(ops.map((op) => op()));
    expect(results.filter((r) => r.status >= 300).map((r) => r.status)).toEqual([]);
    const versions = results.map((r) => r.body.version as number).sort((x, y) => x - y);
    expect(versions).toEqual(Array.from({ length: ops.length }, (_, i) => v0 + 1 + i));
    const check = async () => {
      const list = await call("GET", `${b}/nodes`);
      expect(list.body.version).toBe(v0 + ops.length);
      const byName = new Map(
        (list.body.records as Array<{ name: string; metadata: { namespace_name: string } }>).map((r) => [r.name, r]),
      );
      expect(byName.size).toBe(300);
      for (let i = 0; i < 200; i++) expect(byName.has(`new${i}`)).toBe(true);
      for (let i = 0; i < 100; i++) expect(byName.has(`old${i}`)).toBe(false);
      for (let i = 100; i < 200; i++) expect(byName.get(`old${i}`)?.metadata.namespace_name).toBe("changed");
    };
    await check();
    await evictDurableObject(env.REALM.get(env.REALM.idFromName(realm)));
    clearRealmCacheForTest();
    await check();
    console.log(
      `edge mixed writes: ${ops.length} concurrent ops → versions ${v0 + 1}..${v0 + ops.length}, none lost, same after eviction`,
    );
  });
});
