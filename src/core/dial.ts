// Who can dial whom (docs/contract/routing.md §1), for one pair of records.
import type { HopwayRecord } from "./schema.ts";
import { matchesSelector, type SharedNamespaces, sameHost, selectorReaches } from "./selector.ts";

export interface DialChoice {
  /** Index of the gateway used in the target's `gateway` list. */
  gateway: number;
  priority: number;
  /** The primary address. */
  address: string;
  /** The gateway's further usable addresses, in order. */
  alternatives: string[];
}

/** Addresses of one gateway as a list. */
export function gatewayAddresses(address: string | readonly string[]): readonly string[] {
  return typeof address === "string" ? [address] : address;
}

/**
 * The gateway `dialer` uses to reach `target`, or null when it cannot. Only
 * nodes dial and are dialed. Of the gateways whose `match` selects the
 * dialer, the smallest priority wins, ties to the first declared. unix://
 * addresses are dropped unless both are on the same host; a gateway left with
 * no usable address is skipped as if it did not match (it cannot be used).
 * A `match` that names no namespace selects only within the reach of
 * `shared` (docs/contract/records.md §2.3).
 */
export function chooseGateway(
  dialer: HopwayRecord,
  target: HopwayRecord,
  shared: SharedNamespaces = null,
): DialChoice | null {
  if (dialer.type !== "node" || target.type !== "node" || dialer.name === target.name) return null;
  return pickGateway(dialer, target, undefined, shared);
}

/**
 * chooseGateway without the identity and type checks: the indexed resolver
 * evaluates a gateway list against a class representative, which may be the
 * target record itself.
 */
export function pickGateway(
  dialer: HopwayRecord,
  target: HopwayRecord,
  local?: boolean,
  shared: SharedNamespaces = null,
): DialChoice | null {
  if (target.type !== "node") return null;
  const owner = target.metadata?.namespace_name;
  const gateways = target.gateway ?? [];
  let best: DialChoice | null = null;
  for (let i = 0; i < gateways.length; i++) {
    const gw = gateways[i]!;
    if (best !== null && gw.priority >= best.priority) continue;
    if (gw.match !== undefined && !matchesSelector(gw.match, dialer)) continue;
    if (!selectorReaches("dial", gw.match, owner, dialer, shared)) continue;
    let usable = gatewayAddresses(gw.address);
    if (usable.some((a) => a.startsWith("unix://"))) {
      local ??= sameHost(dialer, target);
      if (!local) usable = usable.filter((a) => !a.startsWith("unix://"));
    }
    if (usable.length === 0) continue;
    best = { gateway: i, priority: gw.priority, address: usable[0]!, alternatives: usable.slice(1) };
  }
  return best;
}
