// A minimal, non-reloading IdentitySource over the files an external PKI writes
// (a cert-manager Secret mounted as a directory): tls.crt (leaf first, then any
// intermediates), tls.key, ca.crt (one or more trusted CA certificates). Read
// once at start; a reloading source replaces this one.
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { IdentitySource, TlsMaterial } from "../../../../src/core/identity.ts";

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Reads `dir` now; throws naming the file that is missing or unusable. */
export function readIdentityFiles(dir: string): IdentitySource {
  const read = (name: string) => {
    try {
      return readFileSync(join(dir, name), "utf8");
    } catch (err) {
      throw new Error(`relay.tls.dir: cannot read ${join(dir, name)}: ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
  };
  const certChain = read("tls.crt");
  const key = read("tls.key");
  const trustBundle = read("ca.crt").match(PEM_CERT) ?? [];
  if (trustBundle.length === 0) throw new Error(`relay.tls.dir: ${join(dir, "ca.crt")} holds no certificate`);
  let notAfter: number;
  try {
    notAfter = Date.parse(new X509Certificate(certChain).validTo);
  } catch (err) {
    throw new Error(`relay.tls.dir: ${join(dir, "tls.crt")} is not a PEM certificate: ${String(err)}`);
  }
  const material: TlsMaterial = { key, certChain, trustBundle, notAfter };
  return { material: () => material, onChange: () => () => {} };
}
