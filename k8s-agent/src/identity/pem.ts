// Checks both identity sources share (docs/contract/relay-protocol.md §3.2;
// docs/identity.md): does a certificate
// chain name this relay, match its key, and chain to a CA of the bundle.
// Node's X509Certificate (OpenSSL) does the cryptography.
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { relayUri } from "@hopway/core/identity";

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]*?-----END CERTIFICATE-----/g;

/** Every PEM certificate block in `text`, each normalised to end with a newline. */
export function splitPemCertificates(text: string): string[] {
  return [...text.matchAll(CERT_BLOCK)].map((m) => `${m[0].trim()}\n`);
}

export class IdentityMaterialError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "IdentityMaterialError";
  }
}

export interface CheckedChain {
  leaf: X509Certificate;
  notBefore: number;
  notAfter: number;
}

/** URI SANs of a certificate as Node lists them (`URI:a, DNS:b`). */
export function uriSans(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? "")
    .split(/,\s*/)
    .filter((s) => s.startsWith("URI:"))
    .map((s) => s.slice(4));
}

/**
 * Validates `chainPem` (leaf first) for relay `name` of `realm`: the key is the
 * leaf's, the leaf names exactly spiffe://<realm>/relay/<name>, and the chain
 * leads to a CA certificate in `trustBundle`. Throws IdentityMaterialError.
 */
/** Extended key usages a relay certificate needs when it lists any (RFC 5280 §4.2.1.12). */
const SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";

export function checkChain(
  realm: string,
  name: string,
  keyPem: string,
  chainPem: string,
  trustBundle: readonly string[],
): CheckedChain {
  const certs = splitPemCertificates(chainPem).map((pem) => new X509Certificate(pem));
  const leaf = certs[0];
  if (leaf === undefined) throw new IdentityMaterialError("no certificate in the chain");
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw new IdentityMaterialError(`the private key is unreadable: ${err instanceof Error ? err.message : err}`);
  }
  if (!leaf.checkPrivateKey(key)) throw new IdentityMaterialError("the private key does not match the certificate");
  const expected = relayUri(realm, name);
  const uris = uriSans(leaf);
  if (uris.length !== 1 || uris[0] !== expected) {
    throw new IdentityMaterialError(`the certificate names ${uris.join(", ") || "no URI"}, expected ${expected}`);
  }
  // A relay is both ends of its links (docs/contract/relay-protocol.md §3.2): a certificate whose
  // extended key usage leaves one out would load here and fail at every neighbour instead.
  const eku = leaf.keyUsage;
  if (eku !== undefined) {
    const missing = [
      [SERVER_AUTH, "serverAuth"],
      [CLIENT_AUTH, "clientAuth"],
    ].flatMap(([oid, label]) => (eku.includes(oid as string) ? [] : [label as string]));
    if (missing.length > 0) {
      throw new IdentityMaterialError(`the certificate's extended key usage lacks ${missing.join(" and ")}`);
    }
  }
  const anchors = trustBundle.flatMap(splitPemCertificates).map((pem) => new X509Certificate(pem));
  if (anchors.length === 0) throw new IdentityMaterialError("the trust bundle holds no CA certificate");
  let current = leaf;
  for (let depth = 0; depth < 8; depth++) {
    const anchor = anchors.find((ca) => current.checkIssued(ca) && current.verify(ca.publicKey));
    if (anchor !== undefined) {
      return { leaf, notBefore: Date.parse(leaf.validFrom), notAfter: Date.parse(leaf.validTo) };
    }
    const next = certs.find((c) => c !== current && current.checkIssued(c) && current.verify(c.publicKey));
    if (next === undefined) break;
    current = next;
  }
  throw new IdentityMaterialError("the certificate does not chain to a CA of the trust bundle");
}
