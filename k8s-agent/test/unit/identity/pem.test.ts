// checkChain on leaves made by openssl (test/support/identity.ts): a relay certificate must serve
// both ends of a link, so one whose extended key usage leaves an end out is refused when it loads,
// not at every neighbour later.
import { describe, expect, it } from "vitest";
import { testPki } from "../../../../test/support/identity.ts";
import { checkChain } from "../../../src/identity/pem.ts";

describe("checkChain", () => {
  const pki = testPki("pem-realm");
  const check = (eku?: string) => {
    const m = pki.issue("relay-a", eku === undefined ? {} : { extendedKeyUsage: eku });
    return () => checkChain("pem-realm", "relay-a", m.key, m.certChain, m.trustBundle);
  };

  it("takes a leaf for both ends of a link", () => {
    expect(check()().leaf.subject).toContain("relay-a");
  });

  it.each([
    ["serverAuth", "clientAuth"],
    ["clientAuth", "serverAuth"],
    ["codeSigning", "serverAuth and clientAuth"],
  ])("refuses a leaf whose extended key usage is only %s, naming what it lacks (%s)", (eku, lacks) => {
    expect(check(eku)).toThrow(`the certificate's extended key usage lacks ${lacks}`);
  });
});
