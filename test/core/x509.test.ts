// The core's certificates checked by an independent implementation: Node's
// X509Certificate (OpenSSL) parses and verifies them, and a real TLS 1.3
// handshake on loopback accepts leaves of one CA and refuses another CA's.
import { createPrivateKey, generateKeyPairSync, X509Certificate } from "node:crypto";
import type { AddressInfo } from "node:net";
import { connect, createServer, type TLSSocket } from "node:tls";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodeLength, encodeLength, parseDer, tlv, toPem } from "../../src/core/der.ts";
import {
  createCaCertificate,
  generateP256KeyPair,
  issueLeaf,
  parseCertificate,
  parseP256Spki,
  verifySignature,
  X509Error,
} from "../../src/core/x509.ts";

const NOW = Date.UTC(2026, 10, 30, 6, 0, 0);
const DAY = 86_400_000;

async function makeCa(realm = "acme", generation = 1) {
  const keys = await generateP256KeyPair();
  const ca = await createCaCertificate({ realm, generation, keys, now: NOW, lifetimeMs: 3650 * DAY });
  return { keys, ...ca };
}

function relayKey() {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return {
    publicPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
    privatePem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
  };
}

async function leafFor(ca: Awaited<ReturnType<typeof makeCa>>, name: string, now = NOW, lifetimeMs = DAY) {
  const key = relayKey();
  const leaf = await issueLeaf({
    caCertificate: ca.pem,
    caPrivateKey: ca.keys.privateKey,
    publicKey: key.publicPem,
    realm: "acme",
    name,
    now,
    lifetimeMs,
  });
  return { ...leaf, key };
}

describe("DER lengths", () => {
  it("round-trip every length and are minimal", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 40 }), (n) => {
        const enc = encodeLength(n);
        const { length, next } = decodeLength(enc, 0);
        expect(length).toBe(n);
        expect(next).toBe(enc.length);
        // Short form below 128; long form otherwise with no leading zero octet.
        if (n < 128) expect(enc.length).toBe(1);
        else expect(enc[1]).not.toBe(0);
      }),
    );
  });

  it("refuse indefinite and non-minimal forms", () => {
    expect(() => decodeLength(Uint8Array.of(0x80), 0)).toThrow(/indefinite/);
    expect(() => decodeLength(Uint8Array.of(0x81, 0x05), 0)).toThrow(/non-minimal/);
    expect(() => decodeLength(Uint8Array.of(0x82, 0x00, 0x90), 0)).toThrow(/non-minimal/);
  });

  it("frame contents of any size", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 70_000 }), (n) => {
        const der = tlv(0x04, new Uint8Array(n).fill(7));
        const node = parseDer(der);
        expect(node.content.length).toBe(n);
        expect(der.length).toBe(1 + encodeLength(n).length + n);
        expect(() => parseDer(der.subarray(0, der.length - 1))).toThrow(/truncated/);
      }),
      { numRuns: 50 },
    );
  });
});

describe("CA certificate", () => {
  it("is a self-signed CA OpenSSL accepts", async () => {
    const ca = await makeCa("acme", 3);
    const x = new X509Certificate(ca.pem);
    expect(x.ca).toBe(true);
    expect(x.subject).toContain("CN=hopway acme relay CA 3");
    expect(x.issuer).toBe(x.subject);
    expect(x.verify(x.publicKey)).toBe(true);
    expect(x.checkIssued(x)).toBe(true);
    expect(new Date(x.validFrom).getTime()).toBe(NOW - 5 * 60_000);
    const parsed = parseCertificate(ca.pem);
    expect(parsed.isCa).toBe(true);
    expect(parsed.subjectKeyId).toMatch(/^[0-9a-f]{40}$/);
  });
});

describe("leaf certificate", () => {
  it("chains to its CA with the relay's URI SAN, CN, validity and usages", async () => {
    const ca = await makeCa();
    const leaf = await leafFor(ca, "relay-0.edge");
    const x = new X509Certificate(leaf.pem);
    const caX = new X509Certificate(ca.pem);
    expect(x.verify(caX.publicKey)).toBe(true);
    expect(x.checkIssued(caX)).toBe(true);
    expect(x.ca).toBe(false);
    expect(x.subjectAltName).toBe("URI:spiffe://acme/relay/relay-0.edge");
    expect(x.subject).toBe("CN=relay-0.edge");
    expect(x.issuer).toBe(caX.subject);
    expect(x.keyUsage).toEqual(expect.arrayContaining(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]));
    expect(x.keyUsage).toHaveLength(2);
    expect(new Date(x.validFrom).getTime()).toBe(NOW - 5 * 60_000);
    expect(new Date(x.validTo).getTime()).toBe(NOW + DAY);
    expect(leaf.notAfter).toBe(NOW + DAY);
    expect(x.serialNumber.toLowerCase()).toBe(leaf.serialHex);
    const legacy = x.toLegacyObject() as unknown as Record<string, string>;
    expect(legacy.subjectaltname).toBe("URI:spiffe://acme/relay/relay-0.edge");
    expect(x.checkPrivateKey(createPrivateKey(leaf.key.privatePem))).toBe(true);
    // The key identifiers link leaf to CA.
    const p = parseCertificate(leaf.pem);
    expect(p.authorityKeyId).toBe(parseCertificate(ca.pem).subjectKeyId);
    expect(p.uris).toEqual(["spiffe://acme/relay/relay-0.edge"]);
    expect(p.subjectCommonName).toBe("relay-0.edge");
    expect(await verifySignature(p, parseCertificate(ca.pem).spki)).toBe(true);
  });

  it("does not verify against another CA", async () => {
    const ca = await makeCa();
    const other = await makeCa();
    const leaf = await leafFor(ca, "r1");
    expect(new X509Certificate(leaf.pem).verify(new X509Certificate(other.pem).publicKey)).toBe(false);
    expect(await verifySignature(parseCertificate(leaf.pem), parseCertificate(other.pem).spki)).toBe(false);
  });

  it("never outlives its CA", async () => {
    const keys = await generateP256KeyPair();
    const ca = await createCaCertificate({ realm: "acme", generation: 1, keys, now: NOW, lifetimeMs: DAY });
    const leaf = await leafFor({ keys, ...ca }, "r1", NOW, 30 * DAY);
    expect(leaf.notAfter).toBe(NOW + DAY);
    expect(new Date(new X509Certificate(leaf.pem).validTo).getTime()).toBe(NOW + DAY);
  });

  it("writes GeneralizedTime from 2050 on", async () => {
    const later = Date.UTC(2049, 11, 31);
    const keys = await generateP256KeyPair();
    const ca = await createCaCertificate({ realm: "acme", generation: 1, keys, now: later, lifetimeMs: 10 * DAY });
    const x = new X509Certificate(ca.pem);
    expect(new Date(x.validTo).getTime()).toBe(later + 10 * DAY);
    expect(parseCertificate(ca.pem).notAfter).toBe(later + 10 * DAY);
  });
});

describe("parseP256Spki", () => {
  it("accepts a P-256 public key in PEM and DER", async () => {
    const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const der = new Uint8Array(publicKey.export({ type: "spki", format: "der" }));
    expect(await parseP256Spki(der)).toEqual(der);
    expect(await parseP256Spki(toPem("PUBLIC KEY", der))).toEqual(der);
  });

  it.each([
    ["RSA", () => generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey, /not an EC key/],
    ["Ed25519", () => generateKeyPairSync("ed25519").publicKey, /not an EC key/],
    ["P-384", () => generateKeyPairSync("ec", { namedCurve: "P-384" }).publicKey, /not on P-256/],
  ])("refuses %s keys", async (_label, make, message) => {
    const pem = make().export({ type: "spki", format: "pem" }).toString();
    await expect(parseP256Spki(pem)).rejects.toThrow(message);
    await expect(parseP256Spki(pem)).rejects.toBeInstanceOf(X509Error);
  });

  it("refuses garbage, private keys and points off the curve", async () => {
    await expect(parseP256Spki("hello")).rejects.toThrow(/PUBLIC KEY/);
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    await expect(parseP256Spki(privateKey.export({ type: "pkcs8", format: "pem" }).toString())).rejects.toThrow(
      /private key/,
    );
    const der = new Uint8Array(publicKey.export({ type: "spki", format: "der" }));
    der[der.length - 1]! ^= 0x01; // y no longer matches x
    await expect(parseP256Spki(der)).rejects.toThrow(/not a valid point/);
  });
});

describe("TLS 1.3 with mutual authentication", () => {
  async function handshake(
    serverLeaf: Awaited<ReturnType<typeof leafFor>>,
    clientLeaf: typeof serverLeaf,
    trust: string[],
  ) {
    const server = createServer({
      key: serverLeaf.key.privatePem,
      cert: serverLeaf.pem,
      ca: trust,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: "TLSv1.3",
    });
    const accepted: { peer: string | undefined }[] = [];
    server.on("secureConnection", (s: TLSSocket) => {
      accepted.push({ peer: s.getPeerCertificate().subjectaltname });
      s.end("ok");
    });
    server.on("tlsClientError", () => {});
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    try {
      return await new Promise<{
        ok: boolean;
        error?: string;
        serverPeer?: string | undefined;
        protocol?: string | null;
      }>((resolve) => {
        const socket = connect({
          host: "127.0.0.1",
          port,
          key: clientLeaf.key.privatePem,
          cert: clientLeaf.pem,
          ca: trust,
          rejectUnauthorized: true,
          minVersion: "TLSv1.3",
          // The relay checks the URI SAN itself; the hostname is not the identity.
          checkServerIdentity: () => undefined,
        });
        socket.setTimeout(5_000, () => socket.destroy(new Error("timeout")));
        socket.on("data", () => {
          resolve({ ok: true, serverPeer: socket.getPeerCertificate().subjectaltname, protocol: socket.getProtocol() });
          socket.destroy();
        });
        socket.on("error", (err) => resolve({ ok: false, error: err.message }));
        socket.on("close", () => resolve({ ok: false, error: "closed" }));
      }).then((r) => ({ ...r, accepted }));
    } finally {
      await new Promise((r) => server.close(r));
    }
  }

  it("succeeds between two leaves of one CA", async () => {
    const ca = await makeCa();
    const a = await leafFor(ca, "relay-a", Date.now());
    const b = await leafFor(ca, "relay-b", Date.now());
    const r = await handshake(a, b, [ca.pem]);
    expect(r.error).toBeUndefined();
    expect(r.ok).toBe(true);
    expect(r.protocol).toBe("TLSv1.3");
    expect(r.serverPeer).toBe("URI:spiffe://acme/relay/relay-a");
    expect(r.accepted).toEqual([{ peer: "URI:spiffe://acme/relay/relay-b" }]);
  });

  it("fails for a client leaf of another CA", async () => {
    const ca = await makeCa();
    const other = await makeCa();
    const a = await leafFor(ca, "relay-a", Date.now());
    const stranger = await leafFor(other, "relay-b", Date.now());
    const r = await handshake(a, stranger, [ca.pem]);
    expect(r.ok).toBe(false);
    expect(r.accepted).toEqual([]);
  });

  it("succeeds across a rotation when both CAs are trusted", async () => {
    const oldCa = await makeCa("acme", 1);
    const newCa = await makeCa("acme", 2);
    const a = await leafFor(oldCa, "relay-a", Date.now());
    const b = await leafFor(newCa, "relay-b", Date.now());
    expect((await handshake(a, b, [oldCa.pem, newCa.pem])).ok).toBe(true);
    expect((await handshake(a, b, [oldCa.pem])).ok).toBe(false);
  });
});
