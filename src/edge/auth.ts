// Bearer authentication. The admin token is a Worker secret compared in
// constant time; any other token is reduced to its SHA-256 here and looked up
// (by hash) in the realm, which never stores or sees the plaintext.
import { EdgeError } from "./http.ts";
import type { Caller } from "./types.ts";

const encoder = new TextEncoder();

async function sha256(text: string): Promise<ArrayBuffer> {
  return crypto.subtle.digest("SHA-256", encoder.encode(text));
}

function hex(buf: ArrayBuffer): string {
  return [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export async function callerFrom(header: string | undefined | null, adminToken: string | undefined): Promise<Caller> {
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
  return { kind: "token", hash: hex(digest) };
}
