// TLS for relay links: contexts from the relay's identity, the peer's relay
// name from its certificate, and why a handshake failed (a LinkFailure). The
// rules: docs/contract/relay-protocol.md §3.1 (TLS 1.3, ALPN) and §3.2 (identities).
import type { DetailedPeerCertificate, PeerCertificate } from "node:tls";
import { relayNameFromUri } from "@hopway/core/identity";
import { ALPN_MUX } from "./mux/frame.ts";
import type { LinkFailure } from "./options.ts";
import type { LinkProtocol } from "./session.ts";

export const ALPN_H2 = "h2";
/** The accepting side takes either framing, preferring hopway-mux/1 (relays of earlier releases offer only h2). */
export const ACCEPT_ALPN = [ALPN_MUX, ALPN_H2];

/**
 * TLS 1.3 suites for links, most preferred first. AES-128-GCM first: with AES-NI it costs about
 * a fifth less CPU per byte than AES-256-GCM (OpenSSL's own figures on the bench machine, in
 * docs/benchmarks/links.md, "Where the bulk CPU goes"), and bulk over links is CPU-bound. Both
 * others stay, so relays of earlier releases (which prefer AES-256-GCM) still agree on one.
 */
export const LINK_CIPHERS = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

/** What a dialling relay offers: mux falls back to h2 against a relay that does not speak it. */
export function dialAlpn(protocol: LinkProtocol): string[] {
  return protocol === "mux" ? [ALPN_MUX, ALPN_H2] : [ALPN_H2];
}

/**
 * URI SANs of a certificate. Node renders them as `URI:value` joined by ", ", quoting a
 * value (JSON string) when it holds a comma or quote; a quoted relay URI never parses as a
 * relay name, so quoting only ever makes a certificate name nothing.
 */
function uriSans(cert: PeerCertificate): string[] {
  const alt = cert.subjectaltname;
  if (typeof alt !== "string") return [];
  return alt
    .split(", ")
    .filter((e) => e.startsWith("URI:"))
    .map((e) => e.slice(4));
}

/** The relay a certificate names in `realm`: exactly one relay URI SAN, or undefined. */
export function certifiedRelay(realm: string, cert: PeerCertificate | DetailedPeerCertificate): string | undefined {
  const names = uriSans(cert)
    .map((u) => relayNameFromUri(realm, u))
    .filter((n): n is string => n !== undefined);
  return names.length === 1 ? names[0] : undefined;
}

const EXPIRED = new Set(["CERT_HAS_EXPIRED", "CERT_NOT_YET_VALID"]);
const UNTRUSTED = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "INVALID_CA",
]);
const CONNECT = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "ENOENT", "EADDRNOTAVAIL", "EPIPE"]);

/** The marker a failed identity check carries (see `identityError`). */
export const PEER_IDENTITY = "HOPWAY_PEER_IDENTITY";

export function identityError(message: string): Error {
  return Object.assign(new Error(message), { code: PEER_IDENTITY });
}

/** Maps a certificate verification code (tls `authorizationError`) or a socket error code. */
export function failureOf(code: string | undefined): LinkFailure {
  if (code === undefined) return "tls_handshake";
  if (code === PEER_IDENTITY) return "peer_identity";
  if (EXPIRED.has(code)) return "expired";
  if (UNTRUSTED.has(code)) return "untrusted";
  if (CONNECT.has(code)) return "connect";
  if (code === "ETIMEDOUT") return "timeout";
  return "tls_handshake";
}
