// Bearer authentication (docs/contract/edge-api.md §1.2), decided in the Worker
// before any Durable Object is touched. The admin token is a Worker secret compared in constant time. Any
// other token is self-authenticating: it carries an HMAC-SHA256, under the
// Worker secret HOPWAY_TOKEN_KEY, over the realm it was minted for and its own
// id and secret part. A garbage token, or a token of another realm, fails that
// check here, so it can neither wake nor create a realm's object (see
// docs/security/edge.md). A token that passes is then looked up by its
// SHA-256 in the realm, which never stores the plaintext and is where
// revocation lives.
import { EdgeError } from "./http.ts";
import type { Caller } from "./types.ts";

const encoder = new TextEncoder();

/** `hwt2_<id: 16 hex>_<secret: 48 hex>_<mac: 32 hex>`: the id names the token in listings and logs. */
const TOKEN = /^hwt2_([0-9a-f]{16})_([0-9a-f]{48})_([0-9a-f]{32})$/;
/** Tokens minted before realm-bound signatures (no MAC): refused with a hint to mint new ones. */
const LEGACY_TOKEN = /^hwt_[0-9a-f]{16}_[0-9a-f]{48}$/;

export interface TokenKeys {
  /** Signs new tokens and verifies. */
  current: string | undefined;
  /** Still verifies during a rotation (HOPWAY_TOKEN_KEY_PREVIOUS); never signs. */
  previous: string | undefined;
}

export function tokenKeys(env: { HOPWAY_TOKEN_KEY?: string; HOPWAY_TOKEN_KEY_PREVIOUS?: string }): TokenKeys {
  const nonEmpty = (v: string | undefined) => (v !== undefined && v.length > 0 ? v : undefined);
  return { current: nonEmpty(env.HOPWAY_TOKEN_KEY), previous: nonEmpty(env.HOPWAY_TOKEN_KEY_PREVIOUS) };
}

async function sha256(text: string): Promise<ArrayBuffer> {
  return crypto.subtle.digest("SHA-256", encoder.encode(text));
}

function hex(buf: ArrayBuffer | Uint8Array): string {
  return [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function randomHex(bytes: number): string {
  return hex(crypto.getRandomValues(new Uint8Array(bytes)));
}

const hmacKeys = new Map<string, Promise<CryptoKey>>();
function hmacKey(secret: string): Promise<CryptoKey> {
  let key = hmacKeys.get(secret);
  if (key === undefined) {
    key = crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    if (hmacKeys.size > 4) hmacKeys.clear();
    hmacKeys.set(secret, key);
  }
  return key;
}

/** The MAC binds the token to one realm: the realm name is part of what is signed. */
async function mac(secret: string, realm: string, id: string, body: string): Promise<Uint8Array> {
  const sig = await crypto.subtle.sign(
    "HMAC",
    await hmacKey(secret),
    encoder.encode(`hopway-token-v2\n${realm}\n${id}\n${body}`),
  );
  return new Uint8Array(sig).slice(0, 16);
}

async function macMatches(secret: string, realm: string, id: string, body: string, given: string): Promise<boolean> {
  const want = await mac(secret, realm, id, body);
  const got = new Uint8Array(given.match(/../g)!.map((h) => Number.parseInt(h, 16)));
  return crypto.subtle.timingSafeEqual(want, got);
}

/** A new token for `realm`: the plaintext (shown once) and the SHA-256 the realm stores. */
export async function mintToken(keys: TokenKeys, realm: string): Promise<{ id: string; token: string; hash: string }> {
  if (keys.current === undefined) {
    throw new EdgeError(
      503,
      "not_configured",
      "the Worker secret HOPWAY_TOKEN_KEY is not set: no tokens can be minted",
    );
  }
  const id = randomHex(8);
  const body = randomHex(24);
  const token = `hwt2_${id}_${body}_${hex(await mac(keys.current, realm, id, body))}`;
  return { id, token, hash: hex(await sha256(token)) };
}

export async function callerFrom(
  header: string | undefined | null,
  adminToken: string | undefined,
  keys: TokenKeys,
  realm: string | null,
): Promise<Caller> {
  if (header === undefined || header === null || header === "") {
    throw new EdgeError(401, "unauthorized", "missing Authorization: Bearer <token>");
  }
  const m = /^Bearer[ \t]+([\x21-\x7e]{1,512})[ \t]*$/i.exec(header);
  if (!m) throw new EdgeError(401, "unauthorized", "Authorization must be 'Bearer <token>'");
  const token = m[1]!;
  const digest = await sha256(token);
  if (adminToken !== undefined && adminToken.length > 0) {
    // Comparing digests keeps the comparison constant-time even when lengths differ.
    const admin = await sha256(adminToken);
    if (crypto.subtle.timingSafeEqual(digest, admin)) return { kind: "admin" };
  }
  const parts = TOKEN.exec(token);
  if (parts === null || realm === null) {
    if (LEGACY_TOKEN.test(token)) {
      throw new EdgeError(
        401,
        "unauthorized",
        "this token was minted before tokens were bound to their realm and is no longer accepted: mint a new one (POST /v1/realms/{realm}/tokens)",
      );
    }
    throw new EdgeError(401, "unauthorized", "unknown token");
  }
  const [, id, body, given] = parts as unknown as [string, string, string, string];
  for (const secret of [keys.current, keys.previous]) {
    if (secret !== undefined && (await macMatches(secret, realm, id, body, given))) {
      return { kind: "token", hash: hex(digest) };
    }
  }
  throw new EdgeError(401, "unauthorized", "unknown token for this realm");
}
