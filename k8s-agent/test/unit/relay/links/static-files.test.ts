import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { testPki, writeRelayTls } from "../../../../../test/support/identity.ts";
import { readIdentityFiles } from "../../../../src/relay/links/static-files.ts";

describe("relay.tls source: files", () => {
  it("reads tls.crt, tls.key and every CA of ca.crt, with the leaf's expiry", () => {
    const dir = writeRelayTls(mkdtempSync(join(tmpdir(), "hopway-tls-")), "files-realm", "relay-f");
    // A rotation bundle: two CAs.
    const second = testPki("files-realm", "next").caCert;
    writeFileSync(join(dir, "ca.crt"), `${testPki("files-realm").caCert}\n${second}`);
    const m = readIdentityFiles(dir).material();
    expect(m?.certChain).toContain("BEGIN CERTIFICATE");
    expect(m?.key).toContain("PRIVATE KEY");
    expect(m?.trustBundle).toHaveLength(2);
    expect(m?.notAfter).toBeGreaterThan(Date.now());
    expect(m?.notAfter).toBeLessThan(Date.now() + 3 * 86_400_000);
  });

  it("names the file that is missing or unusable", () => {
    const dir = mkdtempSync(join(tmpdir(), "hopway-tls-"));
    expect(() => readIdentityFiles(dir)).toThrow(/relay\.tls\.dir: cannot read .*tls\.crt: ENOENT/);
    writeRelayTls(dir, "files-realm", "relay-f");
    writeFileSync(join(dir, "ca.crt"), "not a certificate\n");
    expect(() => readIdentityFiles(dir)).toThrow(/ca\.crt holds no certificate/);
  });
});
