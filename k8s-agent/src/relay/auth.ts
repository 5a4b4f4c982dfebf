// Who may use this relay over plain CONNECT: a local application, by source
// address (configured CIDRs, default loopback) or by a client token (Bearer, or
// Basic with the token as password so `curl -U :TOKEN` and `ncat --proxy-auth`
// work). Other relays never use plain CONNECT: they reach this relay over mTLS
// links (links/, docs/links.md).
import { timingSafeEqual } from "node:crypto";
import { BlockList, isIPv4, isIPv6 } from "node:net";

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
