// The TLS material a relay presents on its links and the trust it checks peers
// against. Two sources provide it: certificates issued by the realm's edge
// (identity/edge-issued.ts) and files written by an external PKI such as
// cert-manager (identity/files.ts). The link layer only reads this interface.

/** PEM texts. `certChain` is the leaf first, then any intermediates. */
export interface TlsMaterial {
  key: string;
  certChain: string;
  /** Every CA certificate currently trusted for peers (two during a CA rotation). */
  trustBundle: string[];
  /** Milliseconds since the epoch when the leaf stops being valid. */
  notAfter: number;
}

export interface IdentitySource {
  /** The current material, or undefined before the first certificate is available. */
  material(): TlsMaterial | undefined;
  /** Called after the material changed (renewal, rotation, file reload); returns an unsubscribe function. */
  onChange(listener: () => void): () => void;
}

/**
 * The URI SAN that names a relay: `spiffe://<realm>/relay/<name>`. The realm is the trust domain;
 * `name` is the relay's node record name.
 */
export function relayUri(realm: string, name: string): string {
  return `spiffe://${realm}/relay/${name}`;
}

/** The relay name a URI SAN gives for `realm`, or undefined when it names something else. */
export function relayNameFromUri(realm: string, uri: string): string | undefined {
  const prefix = `spiffe://${realm}/relay/`;
  if (!uri.startsWith(prefix)) return undefined;
  const name = uri.slice(prefix.length);
  return /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(name) && name.length <= 253
    ? name
    : undefined;
}
