// Test PKI: real CAs and leaves from the core's X.509 code, relay keys from node:crypto.
import { generateKeyPairSync } from "node:crypto";
import { createCaCertificate, generateP256KeyPair, issueLeaf } from "@hopway/core/x509";

export interface TestCa {
  pem: string;
  keys: CryptoKeyPair;
  issue(publicKeyPem: string, name: string, now: number, lifetimeMs: number, realm?: string): Promise<string>;
}

export async function testCa(realm = "r", generation = 1): Promise<TestCa> {
  const keys = await generateP256KeyPair();
  const ca = await createCaCertificate({ realm, generation, keys, now: Date.now(), lifetimeMs: 365 * 86_400_000 });
  return {
    pem: ca.pem,
    keys,
    issue: async (publicKeyPem, name, now, lifetimeMs, leafRealm = realm) =>
      (
        await issueLeaf({
          caCertificate: ca.pem,
          caPrivateKey: keys.privateKey,
          publicKey: publicKeyPem,
          realm: leafRealm,
          name,
          now,
          lifetimeMs,
        })
      ).pem,
  };
}

export function relayKeyPair(): { publicPem: string; privatePem: string } {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return {
    publicPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
    privatePem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
  };
}
