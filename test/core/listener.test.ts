// Which declared listeners a relay runs, and the address and target forms: table-driven.
import { describe, expect, it } from "vitest";
import {
  listenersFor,
  type NamedListenerDeclaration,
  parseListenAddress,
  parseListenerTarget,
} from "../../src/core/listener.ts";
import type { HopwayRecord } from "../../src/core/schema.ts";

const relay = (ns: string | undefined, labels: Record<string, string> = {}): HopwayRecord => ({
  name: "relay-a",
  type: "node",
  metadata: { ...(ns !== undefined ? { namespace_name: ns } : {}), kind: "relay", labels },
});
const d = (name: string, extra: Partial<NamedListenerDeclaration> = {}): NamedListenerDeclaration => ({
  name,
  relays: {},
  listen: "0.0.0.0:6379",
  target: "redis:6379",
  ...extra,
});

describe("listenersFor", () => {
  const cases: Array<[string, HopwayRecord | undefined, NamedListenerDeclaration[], string[]]> = [
    ["an admin declaration with an empty selector reaches every relay", relay("a"), [d("x")], ["x"]],
    ["a namespace's declaration reaches its own relays", relay("a"), [d("x", { namespace: "a" })], ["x"]],
    ["…and never another namespace's, whatever the selector", relay("b"), [d("x", { namespace: "a" })], []],
    ["…nor a relay with no namespace", relay(undefined), [d("x", { namespace: "a" })], []],
    [
      "the selector narrows",
      relay("a", { tier: "edge" }),
      [d("x", { relays: { metadata: { labels: { tier: "edge" } } } }), d("y", { relays: { name: "other" } })],
      ["x"],
    ],
    ["no record of its own: nothing", undefined, [d("x")], []],
    ["sorted by name", relay("a"), [d("b"), d("a")], ["a", "b"]],
    [
      "the admin's first, whatever the names: the agent keeps the first of two on one address",
      relay("a"),
      [d("0-redis", { namespace: "a", target: "evil-redis:6379" }), d("redis-shared")],
      ["redis-shared", "0-redis"],
    ],
  ];
  for (const [name, record, decls, want] of cases) {
    it(name, () => {
      expect(listenersFor(record, decls).map((l) => l.name)).toEqual(want);
    });
  }

  it("keeps the key and drops the declaration-only fields", () => {
    const [l] = listenersFor(relay("a"), [d("x", { namespace: "a", key: { from: "client_address" } })]);
    expect(l).toEqual({ name: "x", listen: "0.0.0.0:6379", target: "redis:6379", key: { from: "client_address" } });
  });
});

describe("listen addresses and targets", () => {
  const listen: Array<[string, boolean]> = [
    ["0.0.0.0:6379", true],
    ["127.0.0.1:0", true],
    ["[::1]:5432", true],
    ["[::]:80", true],
    ["localhost:6379", false],
    ["256.0.0.1:1", false],
    ["1.2.3.4:70000", false],
    ["[1.2.3.4]:1", false],
    ["1.2.3.4", false],
  ];
  for (const [text, ok] of listen) {
    it(`listen ${text} → ${ok ? "ok" : "refused"}`, () => {
      expect(typeof parseListenAddress(text) !== "string").toBe(ok);
    });
  }
  const targets: Array<[string, { node: string; port: number } | null]> = [
    ["redis-eu:6379", { node: "redis-eu", port: 6379 }],
    ["app1", { node: "app1", port: 0 }],
    ["k1.key.g:80", { node: "k1.key.g", port: 80 }],
    ["10.0.0.1:80", null],
    ["Redis:1", null],
    ["a:99999", null],
    ["a b:1", null],
  ];
  for (const [text, want] of targets) {
    it(`target ${text}`, () => {
      const r = parseListenerTarget(text);
      if (want === null) expect(typeof r).toBe("string");
      else expect(r).toMatchObject(want);
    });
  }
});
