// X.509 certificates for relay identities (docs/contract/relay-protocol.md §3.2;
// docs/identity.md): a realm CA and
// the leaves it issues to relays, ECDSA P-256 with SHA-256 only. Built with
// WebCrypto (`crypto.subtle`), which workerd and Node 22+ both have as a
// global, and the DER writer beside this file, so the edge signs without any
// Node or Worker import. The profile follows RFC 5280 and the SPIFFE X.509-SVID
// document: one URI SAN naming the relay, serverAuth+clientAuth, no CA bit.
import {
  type Bytes,
  bitString,
  bool,
  children,
  concat,
  type DerNode,
  expectTag,
  explicit,
  hex,
  implicitPrimitive,
  octets,
  oid,
  oidToString,
  parseDer,
  parseTime,
  pemBlocks,
  seq,
  set,
  smallInt,
  TAG,
  time,
  toPem,
  unsignedInt,
  utf8,
} from "./der.ts";
import { relayUri } from "./identity.ts";

export class X509Error extends Error {
  constructor(message: string) {
    super(message);
    this.name = "X509Error";
  }
}

const OID = {
  ecPublicKey: "1.2.840.10045.2.1",
  prime256v1: "1.2.840.10045.3.1.7",
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
  commonName: "2.5.4.3",
  organization: "2.5.4.10",
  subjectKeyIdentifier: "2.5.29.14",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  authorityKeyIdentifier: "2.5.29.35",
  extKeyUsage: "2.5.29.37",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
} as const;

const ECDSA_P256 = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGN = { name: "ECDSA", hash: "SHA-256" } as const;
/** Leaves are back-dated this much so a peer whose clock runs a little behind still accepts them. */
export const BACKDATE_MS = 5 * 60 * 1000;

const sigAlg = () => seq(oid(OID.ecdsaWithSha256));

function name(attrs: ReadonlyArray<[string, string]>): Bytes {
  return seq(...attrs.map(([type, value]) => set(seq(oid(type), utf8(value)))));
}

function extension(id: string, critical: boolean, value: Uint8Array): Bytes {
  return critical ? seq(oid(id), bool(true), octets(value)) : seq(oid(id), octets(value));
}

/** RFC 7093 method 1: the leftmost 160 bits of the SHA-256 of the subjectPublicKey bits. */
async function keyIdentifier(spkiDer: Bytes): Promise<Bytes> {
  const spki = children(parseDer(spkiDer));
  const bits = expectTag(spki[1], TAG.BIT_STRING, "subjectPublicKey").content.subarray(1);
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bits)).slice(0, 20);
}

/** WebCrypto signs as r‖s (IEEE P1363); X.509 carries ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }. */
function rawToDerSignature(raw: Uint8Array): Bytes {
  const half = raw.length / 2;
  return seq(unsignedInt(raw.subarray(0, half)), unsignedInt(raw.subarray(half)));
}

function derToRawSignature(der: Bytes): Bytes {
  const [r, s] = children(parseDer(der)).map((n) => expectTag(n, TAG.INTEGER, "signature integer").content);
  if (r === undefined || s === undefined) throw new X509Error("malformed ECDSA signature");
  const fix = (v: Uint8Array) => {
    const trimmed = v[0] === 0 ? v.subarray(1) : v;
    if (trimmed.length > 32) throw new X509Error("ECDSA signature integer longer than P-256 allows");
    const out = new Uint8Array(32);
    out.set(trimmed, 32 - trimmed.length);
    return out;
  };
  return concat([fix(r), fix(s)]);
}

async function sign(tbs: Bytes, privateKey: CryptoKey): Promise<Bytes> {
  const raw = new Uint8Array(await crypto.subtle.sign(SIGN, privateKey, tbs));
  return seq(tbs, sigAlg(), bitString(rawToDerSignature(raw)));
}

function randomSerial(): Bytes {
  const b = crypto.getRandomValues(new Uint8Array(16));
  // Positive and non-zero, at most 20 octets once encoded (RFC 5280 4.1.2.2).
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b;
}

// ---- keys -----------------------------------------------------------------------

export function generateP256KeyPair(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey(ECDSA_P256, true, ["sign", "verify"]) as Promise<CryptoKeyPair>;
}

export async function exportSpki(key: CryptoKey): Promise<Bytes> {
  return new Uint8Array((await crypto.subtle.exportKey("spki", key)) as ArrayBuffer);
}

/**
 * A public key from a PEM `PUBLIC KEY` block or SPKI DER, checked to be an
 * uncompressed point on P-256 (WebCrypto's import validates the point).
 * Anything else (RSA, Ed25519, another curve, garbage) is an X509Error whose
 * message says what was wrong.
 */
export async function parseP256Spki(input: string | Uint8Array): Promise<Bytes> {
  let der: Bytes;
  if (typeof input === "string") {
    if (/-----BEGIN (RSA |EC )?PRIVATE KEY-----/.test(input)) {
      throw new X509Error("this is a private key: send the public key (PEM 'PUBLIC KEY'), never the private one");
    }
    const blocks = pemBlocks(input, "PUBLIC KEY");
    if (blocks.length !== 1) throw new X509Error("expected exactly one PEM 'PUBLIC KEY' block (SubjectPublicKeyInfo)");
    der = blocks[0]!;
  } else {
    der = new Uint8Array(input);
  }
  let algorithm: string[];
  let point: Uint8Array;
  try {
    const [alg, bits] = children(parseDer(der));
    algorithm = children(expectTag(alg, TAG.SEQUENCE, "algorithm")).map((n) =>
      n.tag === TAG.OID ? oidToString(n.content) : `tag 0x${n.tag.toString(16)}`,
    );
    point = expectTag(bits, TAG.BIT_STRING, "subjectPublicKey").content.subarray(1);
  } catch (err) {
    throw new X509Error(`not a SubjectPublicKeyInfo: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (algorithm[0] !== OID.ecPublicKey) {
    throw new X509Error(`the key is not an EC key (algorithm ${algorithm[0] ?? "missing"}); relays use ECDSA P-256`);
  }
  if (algorithm[1] !== OID.prime256v1) {
    throw new X509Error(`the EC key is not on P-256 (curve ${algorithm[1] ?? "missing"})`);
  }
  if (point.length !== 65 || point[0] !== 0x04) throw new X509Error("the P-256 point must be uncompressed (65 bytes)");
  try {
    await crypto.subtle.importKey("spki", der, ECDSA_P256, true, ["verify"]);
  } catch {
    throw new X509Error("the P-256 public key is not a valid point on the curve");
  }
  return der;
}

// ---- reading certificates ---------------------------------------------------------

export interface ParsedCertificate {
  der: Bytes;
  tbs: Bytes;
  signature: Bytes;
  serialHex: string;
  issuer: Bytes;
  subject: Bytes;
  subjectCommonName: string | undefined;
  notBefore: number;
  notAfter: number;
  spki: Bytes;
  uris: string[];
  isCa: boolean;
  subjectKeyId: string | undefined;
  authorityKeyId: string | undefined;
}

function commonName(nameDer: DerNode): string | undefined {
  for (const rdn of children(nameDer)) {
    for (const atv of children(rdn)) {
      const [type, value] = children(atv);
      if (type !== undefined && value !== undefined && oidToString(type.content) === OID.commonName) {
        return new TextDecoder().decode(value.content);
      }
    }
  }
  return undefined;
}

/** Reads one certificate (PEM `CERTIFICATE` or DER); throws X509Error when it is not one this profile can read. */
export function parseCertificate(input: string | Uint8Array): ParsedCertificate {
  let der: Bytes;
  if (typeof input === "string") {
    const blocks = pemBlocks(input, "CERTIFICATE");
    if (blocks.length === 0) throw new X509Error("no PEM CERTIFICATE block");
    der = blocks[0]!;
  } else {
    der = new Uint8Array(input);
  }
  try {
    const [tbsNode, algNode, sigNode] = children(parseDer(der));
    const tbs = expectTag(tbsNode, TAG.SEQUENCE, "tbsCertificate");
    expectTag(algNode, TAG.SEQUENCE, "signatureAlgorithm");
    const sig = expectTag(sigNode, TAG.BIT_STRING, "signature");
    const f = children(tbs);
    const hasVersion = f[0]?.tag === 0xa0;
    const [serial, , issuer, validity, subject, spki, ...rest] = hasVersion ? f.slice(1) : f;
    const [nb, na] = children(expectTag(validity, TAG.SEQUENCE, "validity"));
    const out: ParsedCertificate = {
      der,
      tbs: tbs.raw,
      signature: sig.content.subarray(1),
      serialHex: hex(expectTag(serial, TAG.INTEGER, "serialNumber").content),
      issuer: expectTag(issuer, TAG.SEQUENCE, "issuer").raw,
      subject: expectTag(subject, TAG.SEQUENCE, "subject").raw,
      subjectCommonName: commonName(subject!),
      notBefore: parseTime(nb!),
      notAfter: parseTime(na!),
      spki: expectTag(spki, TAG.SEQUENCE, "subjectPublicKeyInfo").raw,
      uris: [],
      isCa: false,
      subjectKeyId: undefined,
      authorityKeyId: undefined,
    };
    const exts = rest.find((n) => n.tag === 0xa3);
    for (const ext of exts === undefined ? [] : children(children(exts)[0]!)) {
      const parts = children(ext);
      const id = oidToString(parts[0]!.content);
      const value = parseDer(parts[parts.length - 1]!.content);
      if (id === OID.subjectAltName) {
        for (const gn of children(value)) if (gn.tag === 0x86) out.uris.push(new TextDecoder().decode(gn.content));
      } else if (id === OID.basicConstraints) {
        const first = children(value)[0];
        out.isCa = first?.tag === TAG.BOOLEAN && first.content[0] !== 0;
      } else if (id === OID.subjectKeyIdentifier) {
        out.subjectKeyId = hex(value.content);
      } else if (id === OID.authorityKeyIdentifier) {
        const kid = children(value).find((n) => n.tag === 0x80);
        if (kid !== undefined) out.authorityKeyId = hex(kid.content);
      }
    }
    return out;
  } catch (err) {
    if (err instanceof X509Error) throw err;
    throw new X509Error(`not a readable certificate: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Whether `cert` carries a valid ECDSA-SHA256 signature by the key in `issuerSpki`. */
export async function verifySignature(cert: ParsedCertificate, issuerSpki: Uint8Array): Promise<boolean> {
  try {
    const key = await crypto.subtle.importKey("spki", new Uint8Array(issuerSpki), ECDSA_P256, false, ["verify"]);
    return await crypto.subtle.verify(SIGN, key, derToRawSignature(cert.signature), cert.tbs);
  } catch {
    return false;
  }
}

// ---- issuing ------------------------------------------------------------------------

export interface CaOptions {
  realm: string;
  /** 1 for the realm's first CA, +1 per rotation: names the CA in its subject. */
  generation: number;
  keys: CryptoKeyPair;
  now: number;
  lifetimeMs: number;
}

/** A self-signed CA certificate: CA:true pathLen 0, keyCertSign|cRLSign, subject naming the realm and generation. */
export async function createCaCertificate(o: CaOptions): Promise<{ pem: string; der: Bytes }> {
  const spki = await exportSpki(o.keys.publicKey);
  const kid = await keyIdentifier(spki);
  const subject = name([
    [OID.organization, `hopway realm ${o.realm}`],
    [OID.commonName, `hopway ${o.realm} relay CA ${o.generation}`],
  ]);
  const tbs = seq(
    explicit(0, smallInt(2)),
    unsignedInt(randomSerial()),
    sigAlg(),
    subject,
    seq(time(o.now - BACKDATE_MS), time(o.now + o.lifetimeMs)),
    subject,
    spki,
    explicit(
      3,
      seq(
        extension(OID.basicConstraints, true, seq(bool(true), smallInt(0))),
        // keyCertSign (bit 5) and cRLSign (bit 6): 0b0000_0110, one unused bit.
        extension(OID.keyUsage, true, bitString(Uint8Array.of(0x06), 1)),
        extension(OID.subjectKeyIdentifier, false, octets(kid)),
      ),
    ),
  );
  const der = await sign(tbs, o.keys.privateKey);
  return { pem: toPem("CERTIFICATE", der), der };
}

export interface LeafOptions {
  /** The issuing CA's certificate (PEM or DER) and its private key. */
  caCertificate: string | Uint8Array;
  caPrivateKey: CryptoKey;
  /** The relay's public key, SPKI DER or PEM; validated as P-256. */
  publicKey: string | Uint8Array;
  realm: string;
  name: string;
  now: number;
  lifetimeMs: number;
}

export interface IssuedLeaf {
  pem: string;
  der: Bytes;
  serialHex: string;
  notBefore: number;
  /** Never after the CA's own notAfter. */
  notAfter: number;
  uri: string;
}

/** A relay's leaf: URI SAN spiffe://<realm>/relay/<name>, CN = name, digitalSignature, serverAuth+clientAuth. */
export async function issueLeaf(o: LeafOptions): Promise<IssuedLeaf> {
  const spki = await parseP256Spki(o.publicKey);
  const ca = parseCertificate(o.caCertificate);
  const uri = relayUri(o.realm, o.name);
  const serial = randomSerial();
  const notBefore = Math.floor((o.now - BACKDATE_MS) / 1000) * 1000;
  const notAfter = Math.floor(Math.min(o.now + o.lifetimeMs, ca.notAfter) / 1000) * 1000;
  const authorityKid = ca.subjectKeyId !== undefined ? hexBytes(ca.subjectKeyId) : await keyIdentifier(ca.spki);
  const tbs = seq(
    explicit(0, smallInt(2)),
    unsignedInt(serial),
    sigAlg(),
    ca.subject,
    seq(time(notBefore), time(notAfter)),
    name([[OID.commonName, o.name]]),
    spki,
    explicit(
      3,
      seq(
        extension(OID.basicConstraints, true, seq()),
        // digitalSignature (bit 0): 0b1000_0000, seven unused bits.
        extension(OID.keyUsage, true, bitString(Uint8Array.of(0x80), 7)),
        extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth), oid(OID.clientAuth))),
        // The subject is not empty (CN), so the SAN need not be critical (RFC 5280 4.2.1.6).
        extension(OID.subjectAltName, false, seq(implicitPrimitive(6, ia5Bytes(uri)))),
        extension(OID.subjectKeyIdentifier, false, octets(await keyIdentifier(spki))),
        extension(OID.authorityKeyIdentifier, false, seq(implicitPrimitive(0, authorityKid))),
      ),
    ),
  );
  const der = await sign(tbs, o.caPrivateKey);
  return { pem: toPem("CERTIFICATE", der), der, serialHex: hex(serial), notBefore, notAfter, uri };
}

function ia5Bytes(s: string): Bytes {
  if (!/^[\x21-\x7e]*$/.test(s)) throw new X509Error("a URI SAN takes printable ASCII only");
  return new Uint8Array(new TextEncoder().encode(s));
}

function hexBytes(h: string): Bytes {
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}
