// A deterministic generator of realistic realms, shared by the core's property
// tests, the resolver benchmark and the edge's benchmark. Pure (no node:*), so
// it runs in workerd too. The addresses it produces are private-range and are
// for route computation only: nothing may dial them.
import type { HopwayRecord, Selector } from "../schema.ts";

/** mulberry32: a tiny seeded PRNG, enough for reproducible test data (not for secrets). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface GenerateOptions {
  /** Approximate number of records (the result is within a few of it). */
  records: number;
  seed?: number;
  /** Regions, each with its own regional relay service; default: 2..6 by size. */
  regions?: number;
  /** Pods per relay service (namespace, regional and global relays). Default 3. */
  relayPods?: number;
  /** Records per namespace, including its relay pods. Default 60 (about 5% relays). */
  namespaceSize?: number;
  /** Fraction of records that are clients. Default 0.02. */
  clientFraction?: number;
  /** Number of groups. Default max(1, records / 1000). */
  groups?: number;
}

const REGION_NAMES = ["cn", "us", "eu", "ap", "sa", "af", "me", "oc"];

/**
 * Realm layout, modelled on the cross-region reference topology:
 * - every namespace has apps, a few clients and one relay service of
 *   `relayPods` pods with identical selectors; apps accept their namespace,
 *   namespace relays also accept relays of their region;
 * - each region has a regional relay service that accepts its region's relays
 *   (priority 2) and the global relays (priority 3); namespace relays advertise it;
 * - one global relay service (region "any") accepts every relay; regional relays advertise it;
 * - some apps share a host with a sidecar and offer it a unix:// gateway;
 *   some gateways list fallback addresses;
 * - groups list random apps.
 */
export function generateTopology(options: GenerateOptions): HopwayRecord[] {
  const rnd = prng(options.seed ?? 1);
  const total = Math.max(20, options.records);
  const pods = options.relayPods ?? 3;
  const nsSize = options.namespaceSize ?? 60;
  const regions = Math.min(
    REGION_NAMES.length,
    options.regions ?? Math.max(2, Math.min(6, Math.round(Math.log10(total) * 1.5))),
  );
  const groups = options.groups ?? Math.max(1, Math.floor(total / 1000));
  const clientFraction = options.clientFraction ?? 0.02;
  const out: HopwayRecord[] = [];
  const ip = (a: number, i: number) =>
    `ipv4://${a}.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:${1024 + (i % 50000)}`;
  let serial = 1;

  const relay = (
    name: string,
    ns: string,
    region: string,
    tier: string,
    gateway: Array<{ priority: number; match?: Selector; address: string | string[] }>,
    advertise?: Selector,
  ): HopwayRecord => ({
    name,
    type: "node",
    version: 1,
    host: { hostname: name },
    metadata: {
      namespace_name: ns,
      kind: "relay",
      labels: { "area.region": region, tier, "statefulset.kubernetes.io/pod-name": name },
    },
    gateway,
    ...(advertise !== undefined ? { advertise_relay: advertise } : {}),
  });

  for (let p = 0; p < pods; p++) {
    const name = `global-relay-${p}`;
    out.push(
      relay(name, "relay-global", "any", "global", [
        { priority: 2, match: { metadata: { kind: "relay" } }, address: ip(192, serial++) },
      ]),
    );
  }
  const regionNames = REGION_NAMES.slice(0, regions);
  for (const region of regionNames) {
    for (let p = 0; p < pods; p++) {
      const name = `${region}-relay-${p}`;
      out.push(
        relay(
          name,
          `relay-${region}`,
          region,
          "regional",
          [
            {
              priority: 2,
              match: { metadata: { kind: "relay", labels: { "area.region": region } } },
              address: ip(172, serial++),
            },
            {
              priority: 3,
              match: { metadata: { kind: "relay", labels: { "area.region": "any" } } },
              address: ip(192, serial++),
            },
          ],
          { metadata: { kind: "relay", labels: { "area.region": "any" } } },
        ),
      );
    }
  }
  const apps: string[] = [];
  let nsIndex = 0;
  while (out.length < total) {
    const region = regionNames[nsIndex % regions]!;
    const ns = `${region}-ns-${nsIndex}`;
    nsIndex++;
    const nsRelays = { metadata: { namespace_name: ns, kind: "relay" } };
    for (let p = 0; p < pods; p++) {
      const name = `${ns}-relay-${p}`;
      out.push(
        relay(
          name,
          ns,
          region,
          "namespace",
          [
            { priority: 1, match: { metadata: { namespace_name: ns } }, address: ip(10, serial++) },
            {
              priority: 2,
              match: { metadata: { kind: "relay", labels: { "area.region": region } } },
              address: [ip(172, serial++), ip(172, serial++)],
            },
          ],
          { metadata: { kind: "relay", labels: { "area.region": region, tier: "regional" } } },
        ),
      );
    }
    const members = Math.min(nsSize - pods, total - out.length);
    let sharedHost: string | undefined;
    for (let k = 0; k < members; k++) {
      const service = `svc${Math.floor(k / 4)}`;
      const name = `${ns}-${service}-${k % 4}`;
      if (rnd() < clientFraction) {
        out.push({
          name: `${ns}-client-${k}`,
          type: "client",
          metadata: { namespace_name: ns, kind: "client", labels: { "area.region": region } },
          advertise_relay: nsRelays,
        });
        continue;
      }
      // About one app in ten runs next to the previous one and reaches it over a unix socket.
      const colocated = sharedHost !== undefined && rnd() < 0.1;
      const hostname = colocated ? sharedHost! : `${name}-host`;
      sharedHost = hostname;
      const gateway: Array<{ priority: number; match?: Selector; address: string | string[] }> = [
        {
          priority: 1,
          match: { metadata: { namespace_name: ns } },
          address: rnd() < 0.2 ? [ip(10, serial++), ip(10, serial++)] : ip(10, serial++),
        },
      ];
      if (colocated) gateway.unshift({ priority: 0, address: `unix:///run/hopway/${name}.sock` });
      out.push({
        name,
        type: "node",
        version: 1,
        host: { hostname, pid: 100 + k },
        metadata: {
          namespace_name: ns,
          kind: "app",
          labels: { app: service, "area.region": region, "statefulset.kubernetes.io/pod-name": name },
        },
        gateway,
        advertise_relay: nsRelays,
      });
      apps.push(name);
    }
  }
  for (let g = 0; g < groups && apps.length > 0; g++) {
    const size = 2 + Math.floor(rnd() * 4);
    const names = new Set<string>();
    for (let k = 0; k < size; k++) names.add(apps[Math.floor(rnd() * apps.length)]!);
    out.push({
      name: `group-${g}`,
      type: "group",
      version: 1,
      // Members are drawn from every namespace, so the group says it spans them (docs/stateful.md).
      any_namespace: true,
      node_list: [...names].map((node_name) => ({ node_name })),
    });
  }
  return out;
}
