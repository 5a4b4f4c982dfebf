import { describe, expect, it } from "vitest";
import { CidrList, clientToken } from "../../../src/relay/auth.ts";

describe("client CIDRs", () => {
  const list = new CidrList(["127.0.0.0/8", "10.244.0.0/16", "192.168.1.7", "::1/128", "fd00::/8"]);
  it.each([
    ["127.0.0.1", true],
    ["127.255.255.255", true],
    ["128.0.0.1", false],
    ["10.244.3.9", true],
    ["10.245.0.1", false],
    ["192.168.1.7", true],
    ["192.168.1.8", false],
    ["::ffff:127.0.0.1", true],
    ["::ffff:10.1.0.1", false],
    ["::1", true],
    ["fd12::5", true],
    ["fe80::1", false],
    ["", false],
    ["not-an-ip", false],
    ["1.2.3.400", false],
  ])("%s → %s", (addr, want) => {
    expect(list.allows(addr)).toBe(want);
  });
  it("rejects a bad CIDR naming it", () => {
    expect(() => new CidrList(["10.0.0.0/33"])).toThrow("10.0.0.0/33");
  });
});

describe("client tokens", () => {
  it("reads Bearer and Basic (token as the password)", () => {
    expect(clientToken("Bearer abc")).toBe("abc");
    expect(clientToken(`Basic ${Buffer.from("user:abc").toString("base64")}`)).toBe("abc");
    expect(clientToken("Digest x")).toBeUndefined();
  });
});
