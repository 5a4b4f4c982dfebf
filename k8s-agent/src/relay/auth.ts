// Who may use this relay:
// - another relay of the realm, proven by an HMAC over the request with the
//   realm-wide hop key (`Proxy-Authorization: Hopway-HMAC ...`), inside a
//   clock-skew window and never twice (bounded replay cache);
// - a local application, by source address (configured CIDRs, default
//   loopback) or by a client token (Bearer, or Basic with the token as password
//   so `curl -U :TOKEN` and `ncat --proxy-auth` work).
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { BlockList, isIPv4, isIPv6 } from "node:net";

export interface HmacFields {
  relay: string;
  ts: number;
  nonce: string;
  sig: string;
}

/** The bytes the signature covers: everything a hop acts on, so none of it can be altered or replayed elsewhere. */
function canonical(relay: string, ts: number, nonce: string, authority: string, hops: string): string {
  return `HOPWAY-HMAC-V1\n${relay}\n${ts}\n${nonce}\n${authority}\n${hops}`;
}

export function signHop(key: Buffer, relay: string, authority: string, hops: string, nowSeconds: number): string {
  const ts = Math.floor(nowSeconds);
  const nonce = randomBytes(16).toString("hex");
  const sig = createHmac("sha256", key)
    .update(canonical(relay, ts, nonce, authority, hops))
    .digest("hex");
  return `Hopway-HMAC relay=${relay}, ts=${ts}, nonce=${nonce}, sig=${sig}`;
}

export function parseHmac(header: string): HmacFields | undefined {
  const m = /^Hopway-HMAC\s+(.*)$/i.exec(header.trim());
  if (!m) return undefined;
  const fields = new Map<string, string>();
  for (const part of (m[1] as string).split(",")) {
    const eq = part.indexOf("=");
    if (eq < 0) return undefined;
    fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const relay = fields.get("relay");
  const ts = fields.get("ts");
  const nonce = fields.get("nonce");
  const sig = fields.get("sig");
  if (!relay || !ts || !nonce || !sig) return undefined;
  if (!/^\d{1,12}$/.test(ts) || !/^[0-9a-f]{16,64}$/.test(nonce) || !/^[0-9a-f]{64}$/.test(sig)) return undefined;
  return { relay, ts: Number(ts), nonce, sig };
}

/** Remembers nonces for the skew window; bounded so a flood cannot grow memory. */
export class ReplayCache {
  private readonly seen = new Map<string, number>();
  constructor(
    private readonly ttlSeconds: number,
    private readonly maxEntries: number,
  ) {}
  /** "ok", "replay", or "full" (every entry still live: refuse rather than forget one). */
  check(nonce: string, nowSeconds: number): "ok" | "replay" | "full" {
    // Entries expire in insertion order (same ttl), so pruning from the front is enough.
    for (const [n, expires] of this.seen) {
      if (expires > nowSeconds) break;
      this.seen.delete(n);
    }
    if (this.seen.has(nonce)) return "replay";
    if (this.seen.size >= this.maxEntries) return "full";
    this.seen.set(nonce, nowSeconds + this.ttlSeconds);
    return "ok";
  }
  get size(): number {
    return this.seen.size;
  }
}

export type HopAuthResult = { ok: true; relay: string } | { ok: false; detail: string; status: 407 | 503 };

export function verifyHop(
  key: Buffer,
  header: string,
  authority: string,
  hops: string,
  nowSeconds: number,
  skewSeconds: number,
  replay: ReplayCache,
): HopAuthResult {
  const f = parseHmac(header);
  if (!f) return { ok: false, status: 407, detail: "malformed Hopway-HMAC credentials" };
  if (Math.abs(nowSeconds - f.ts) > skewSeconds) {
    return { ok: false, status: 407, detail: "hop credentials outside the clock-skew window" };
  }
  const want = createHmac("sha256", key)
    .update(canonical(f.relay, f.ts, f.nonce, authority, hops))
    .digest();
  const got = Buffer.from(f.sig, "hex");
  if (got.length !== want.length || !timingSafeEqual(got, want)) {
    return { ok: false, status: 407, detail: "hop signature does not verify" };
  }
  // Only a verified request may occupy the replay cache, so strangers cannot fill it.
  const r = replay.check(f.nonce, nowSeconds);
  if (r === "replay") return { ok: false, status: 407, detail: "hop credentials replayed" };
  if (r === "full") return { ok: false, status: 503, detail: "replay cache full" };
  return { ok: true, relay: f.relay };
}

/** Dotted quad → unsigned 32-bit integer, or -1. Hand-rolled: it runs once per accepted connection. */
function ipv4ToInt(addr: string): number {
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < addr.length; i++) {
    const c = addr.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || part > 255) return -1;
      value = value * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      part = part * 10 + (c - 48);
      digits++;
    } else {
      return -1;
    }
  }
  if (dots !== 3 || digits === 0 || part > 255) return -1;
  return value * 256 + part;
}

/**
 * Client CIDRs. IPv4 ranges are checked with integer arithmetic (the common case, on the
 * accept path of every connection); IPv6 goes through node's BlockList.
 */
export class CidrList {
  private readonly v4: Array<[number, number]> = [];
  private readonly v6 = new BlockList();
  private hasV6 = false;

  /** Parses `10.0.0.0/8`, `::1/128`, `127.0.0.1`; throws naming the bad entry. */
  constructor(cidrs: readonly string[]) {
    for (const cidr of cidrs) {
      const [addr, bits] = cidr.split("/");
      if (addr === undefined) throw new Error(`invalid CIDR '${cidr}'`);
      const family = isIPv4(addr) ? "ipv4" : isIPv6(addr) ? "ipv6" : undefined;
      if (!family) throw new Error(`invalid CIDR '${cidr}': not an IP address`);
      const max = family === "ipv4" ? 32 : 128;
      const prefix = bits === undefined ? max : Number(bits);
      if (!Number.isInteger(prefix) || prefix < 0 || prefix > max)
        throw new Error(`invalid CIDR '${cidr}': bad prefix`);
      if (family === "ipv4") {
        const size = 2 ** (32 - prefix);
        const base = Math.floor(ipv4ToInt(addr) / size) * size;
        this.v4.push([base, base + size]);
      } else {
        this.v6.addSubnet(addr, prefix, "ipv6");
        this.hasV6 = true;
      }
    }
  }

  allows(remote: string | undefined): boolean {
    if (!remote) return false;
    // Dual-stack listeners report IPv4 peers as ::ffff:a.b.c.d.
    const v4 = ipv4ToInt(remote.startsWith("::ffff:") ? remote.slice(7) : remote);
    if (v4 >= 0) {
      for (const [lo, hi] of this.v4) if (v4 >= lo && v4 < hi) return true;
      return false;
    }
    return this.hasV6 && isIPv6(remote) && this.v6.check(remote, "ipv6");
  }
}

/** Extracts a client token from `Bearer T` or `Basic base64(user:T)`. */
export function clientToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const bearer = /^Bearer\s+(\S+)$/i.exec(header.trim());
  if (bearer) return bearer[1];
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header.trim());
  if (basic) {
    const decoded = Buffer.from(basic[1] as string, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    return colon >= 0 ? decoded.slice(colon + 1) : decoded;
  }
  return undefined;
}

export function tokenMatches(tokens: readonly Buffer[], given: string): boolean {
  const g = Buffer.from(given);
  let ok = false;
  // Compare against every token in constant time per token so timing says nothing about which matched.
  for (const t of tokens) if (t.length === g.length && timingSafeEqual(t, g)) ok = true;
  return ok;
}
