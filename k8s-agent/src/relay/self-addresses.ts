// The relay's own listeners (relay, admin/metrics, unix sockets) as dial
// targets: a relay never dials them, whatever its route table says. A node
// registered with a gateway on one of this relay's ports would otherwise turn
// the relay's clients into loopback callers of its own listeners (the admin
// API trusts loopback for reads; the relay admits loopback as local clients).
//
// Connections the relay itself opened are tracked too (local address and port,
// until they close): one that comes back to a listener of this process by a
// path the address check cannot see (NAT hairpin through a Service address, a
// port forward) is never trusted as a local client or a loopback caller.
//
// A DNS name is resolved here once; the check is made on the answer and the
// relay dials that same answer, so a DNS reply that changes between the check
// and the dial cannot point the relay back at itself.
import { lookup as dnsLookup } from "node:dns/promises";
import { isIP, isIPv4, type Socket } from "node:net";
import { networkInterfaces } from "node:os";
import { resolve as resolvePath } from "node:path";
import { refusedAddressClass } from "@hopway/core/address-policy";
import type { Dialable } from "./table.ts";

export type AddressLookup = (host: string) => Promise<string[]>;

/** `self`: one of this process's listeners; `forbidden`: a name that resolves to a refused class of address. */
export type SelfCheck =
  | { ok: true; dial: Dialable }
  | { ok: false; self: boolean; forbidden?: boolean; detail: string };

const defaultLookup: AddressLookup = async (host) => (await dnsLookup(host, { all: true })).map((a) => a.address);

/**
 * One text per address, so equal addresses compare equal: IPv4-mapped IPv6 in any spelling
 * (`::ffff:1.2.3.4`, `::ffff:102:304`, `0:0:0:0:0:ffff:102:304`) → `1.2.3.4`; other IPv6 in its
 * RFC 5952 form (lower case, zeros compressed). A route table's address is written by whoever
 * registered the record, so the check that a dial does not land on this relay's own listeners must
 * not depend on how it was spelled.
 */
export function normalizeIp(ip: string): string {
  // A dotted quad is already in its one form (asked for every connection the relay opens).
  if (!ip.includes(":")) return ip;
  // How a dual-stack listener reports every IPv4 peer (asked per accepted connection): no URL parse.
  const dotted = /^::ffff:(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/i.exec(ip);
  if (dotted !== null) return dotted[1] as string;
  let canonical: string;
  try {
    // WHATWG URL serialises an IPv6 host in RFC 5952 form; a zone (`%eth0`) is not a host it takes.
    canonical = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  } catch {
    return ip.toLowerCase();
  }
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
  if (mapped === null) return canonical;
  const hi = Number.parseInt(mapped[1] as string, 16);
  const lo = Number.parseInt(mapped[2] as string, 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

/** The hosts that bind every address of their port. */
export const WILDCARDS: ReadonlySet<string> = new Set(["0.0.0.0", "::"]);

interface Outbound {
  /** Local `ip:port` it leaves from, and the `ip:port` it went to. */
  from: string;
  to: string;
  /** Whether `to` is an address of this host. */
  toHere: boolean;
}
const OUTBOUND = Symbol("hopway.outbound");
/** Its entry once known; before that, the IPv4 address and port it was dialled to, if given. */
type Tracked = { [OUTBOUND]?: Outbound | Dialled | undefined };
type TrackedSocket = Socket & Tracked;
type Dialled = { host: string; port: number };

/** Addresses that reach this host: loopback, the unspecified addresses (a dial to them lands here) and every interface. */
function isLocalHostAddress(ip: string, interfaces: ReadonlySet<string>): boolean {
  return ip.startsWith("127.") || ip === "::1" || WILDCARDS.has(ip) || interfaces.has(ip);
}

export class SelfAddresses {
  private readonly tcp: Array<{ host: string; port: number }> = [];
  private readonly paths = new Set<string>();
  /**
   * Every connection this process opened and has not closed yet: its local `ip:port`, with
   * where it was going (`ip:port`) and whether that destination is an address of this host.
   */
  private readonly outbound = new Map<string, Outbound>();
  /**
   * Connections opened and not yet entered in `outbound`: their local address is read (a
   * system call) only when an accepted connection is checked, so a relay whose traffic never
   * asks (listeners, links) never pays it per connection.
   */
  private readonly pending = new Set<Socket>();
  private readonly untrack: (this: Socket) => void;
  private interfaces: Set<string> | undefined;
  private interfacesAt = 0;

  constructor(
    private readonly lookup: AddressLookup = defaultLookup,
    /**
     * Whether a DNS name may resolve to a loopback address (`relay.dial_names_to_loopback`):
     * off, a name some namespace published cannot take the relay to a service that listens on
     * the pod's loopback only.
     */
    private readonly namesToLoopback = false,
  ) {
    const outbound = this.outbound;
    const pending = this.pending;
    this.untrack = function (this: Socket) {
      if (pending.delete(this)) return;
      const entry = (this as TrackedSocket)[OUTBOUND];
      // A later connection from the same local address and port may have replaced it already.
      if (entry !== undefined && "from" in entry && outbound.get(entry.from) === entry) outbound.delete(entry.from);
    };
  }

  /**
   * Records a listener: what `server.address()` returns (an AddressInfo, or the path of a
   * unix socket), or a `{host, port}` pair.
   */
  add(addr: { address?: string; host?: string; port: number } | string | null): void {
    if (addr === null) return;
    if (typeof addr === "string") {
      this.paths.add(resolvePath(addr));
      return;
    }
    const host = addr.address ?? addr.host;
    if (host === undefined) return;
    this.tcp.push({ host: normalizeIp(host), port: addr.port });
  }

  /** Forgets a listener `add` recorded (one entry), once it closed. */
  remove(addr: { host: string; port: number }): void {
    const host = normalizeIp(addr.host);
    const i = this.tcp.findIndex((l) => l.host === host && l.port === addr.port);
    if (i >= 0) this.tcp.splice(i, 1);
  }

  /** Whether a dial to ip:port would reach one of this process's listeners. */
  isSelf(ip: string, port: number): boolean {
    const addr = normalizeIp(ip);
    for (const l of this.tcp) {
      if (l.port !== port) continue;
      if (l.host === addr) return true;
      // A wildcard listener answers on every local address, loopback included.
      if (WILDCARDS.has(l.host) && isLocalHostAddress(addr, this.localInterfaces())) return true;
      // A dial to the unspecified address reaches a listener on loopback too.
      if (WILDCARDS.has(addr) && isLocalHostAddress(l.host, this.localInterfaces())) return true;
    }
    return false;
  }

  /**
   * What to dial for a route-table address: refused when it is one of this relay's own
   * listeners; a DNS name comes back as the resolved address to dial.
   */
  async check(d: Dialable): Promise<SelfCheck> {
    const now = this.checkNow(d);
    if (now !== undefined) return now;
    let ips: string[];
    try {
      ips = await this.lookup(d.host);
    } catch (err) {
      return {
        ok: false,
        self: false,
        detail: `${d.address}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      };
    }
    if (ips.length === 0) return { ok: false, self: false, detail: `${d.address}: no address` };
    return this.checkIps(d, ips);
  }

  /**
   * `check` without waiting, for a unix path or an IP literal (every connection to such a
   * target asks this, and nothing there needs DNS); undefined for a name that must be resolved.
   */
  checkNow(d: Dialable): SelfCheck | undefined {
    if (d.path) {
      if (this.paths.has(resolvePath(d.path))) {
        return { ok: false, self: true, detail: `${d.address} is one of this relay's own listeners` };
      }
      return { ok: true, dial: d };
    }
    if (isIP(d.host) === 0) return undefined;
    if (this.isSelf(d.host, d.port)) {
      return { ok: false, self: true, detail: `${d.address} is one of this relay's own listeners` };
    }
    return { ok: true, dial: d };
  }

  private checkIps(d: Dialable, ips: string[]): SelfCheck {
    // Any answer pointing here refuses the whole name: a table entry that can land on this
    // relay is hostile or broken either way.
    for (const ip of ips) {
      // The edge checked the name's text, not where it leads: a name that resolves to a cloud
      // metadata service (link-local), the pod's loopback or an address never dialled is refused.
      const refused = refusedAddressClass(ip);
      if (refused !== undefined && !(refused === "loopback" && this.namesToLoopback)) {
        const what =
          refused === "link_local" ? "a link-local" : refused === "loopback" ? "a loopback" : "an undialable";
        return {
          ok: false,
          self: false,
          forbidden: true,
          detail: `${d.address} resolves to ${ip}, ${what} address; a relay dials names only to other addresses`,
        };
      }
      if (this.isSelf(ip, d.port)) {
        return {
          ok: false,
          self: true,
          detail: `${d.address} (resolves to ${ip}) is one of this relay's own listeners`,
        };
      }
    }
    return { ok: true, dial: { ...d, host: ips[0] as string } };
  }

  /**
   * Records a connection this process opened (connected), until it closes. `dialled`, the
   * IPv4 address and port it was opened to, spares asking the kernel for the peer's address.
   */
  trackOutbound(socket: Socket, dialled?: Dialled): void {
    (socket as TrackedSocket)[OUTBOUND] = dialled;
    this.pending.add(socket);
    // One listener function for every tracked socket instead of a closure each.
    socket.on("close", this.untrack);
  }

  /**
   * `trackOutbound` for a native listener's target connection (relay/native-splice.ts), which
   * has no socket: entered at once, from the local address it connected from, until
   * `untrackNative`.
   */
  trackNative(conn: { localAddress?: string | undefined; localPort?: number | undefined }, dialled: Dialled): void {
    const from = ipPort(conn.localAddress, conn.localPort);
    const to = ipPort(dialled.host, dialled.port);
    if (from === undefined || to === undefined) return;
    const entry: Outbound = { from, to, toHere: isLocalHostAddress(normalizeIp(dialled.host), this.localInterfaces()) };
    this.outbound.set(from, entry);
    (conn as Tracked)[OUTBOUND] = entry;
  }

  untrackNative(conn: object): void {
    const entry = (conn as Tracked)[OUTBOUND];
    if (entry !== undefined && "from" in entry && this.outbound.get(entry.from) === entry)
      this.outbound.delete(entry.from);
  }

  /** Enters every connection opened since the last check in `outbound`, by its local address. */
  private settle(): void {
    for (const socket of this.pending) {
      const t = socket as TrackedSocket;
      const dialled = t[OUTBOUND] as Dialled | undefined;
      const from = ipPort(socket.localAddress, socket.localPort);
      const remote = dialled !== undefined && isIPv4(dialled.host) ? dialled.host : socket.remoteAddress;
      const to = ipPort(remote, dialled !== undefined && remote === dialled.host ? dialled.port : socket.remotePort);
      // Already closed (no address left): it cannot come back.
      if (from === undefined || to === undefined || remote === undefined) continue;
      const entry: Outbound = { from, to, toHere: isLocalHostAddress(normalizeIp(remote), this.localInterfaces()) };
      this.outbound.set(from, entry);
      t[OUTBOUND] = entry;
    }
    this.pending.clear();
  }

  /**
   * Whether an accepted connection is one this process opened, come back: it arrives from the
   * address and port one of ours leaves from, and either went straight to this listener, or to
   * an address that is not this host's (a Service IP, a NAT) that brought it back here. Linux
   * reuses a local port towards different destinations, so another process's client on this
   * host may share the address and port of one of ours that went elsewhere on this host: that
   * one is a stranger, not a way back.
   */
  isOwnConnection(accepted: {
    readonly remoteAddress?: string | undefined;
    readonly remotePort?: number | undefined;
    /** Unknown (a native listener on a wildcard address): only a way back through another address counts. */
    readonly localAddress?: string | undefined;
    readonly localPort?: number | undefined;
  }): boolean {
    if (this.pending.size > 0) this.settle();
    if (this.outbound.size === 0) return false;
    const from = ipPort(accepted.remoteAddress, accepted.remotePort);
    const ours = from === undefined ? undefined : this.outbound.get(from);
    if (ours === undefined) return false;
    return ours.to === ipPort(accepted.localAddress, accepted.localPort) || !ours.toHere;
  }

  private localInterfaces(): Set<string> {
    // Interfaces change rarely (a pod has one address); re-read at most every 10 s.
    const now = performance.now();
    if (this.interfaces === undefined || now - this.interfacesAt > 10_000) {
      const out = new Set<string>();
      for (const list of Object.values(networkInterfaces())) {
        for (const i of list ?? []) out.add(normalizeIp(i.address));
      }
      this.interfaces = out;
      this.interfacesAt = now;
    }
    return this.interfaces;
  }
}

/** `ip:port`, the address normalised; undefined when either part is unknown. */
function ipPort(address: string | undefined, port: number | undefined): string | undefined {
  return address === undefined || port === undefined ? undefined : `${normalizeIp(address)}:${port}`;
}
