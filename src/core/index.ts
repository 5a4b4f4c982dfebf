// The public API of the pure core: what the edge, the agent and the CLI import.
// Nothing here touches `cloudflare:*`, `hono` or `node:*`.
export * from "./address-policy.ts";
export { chooseGateway, type DialChoice, gatewayAddresses, pickGateway } from "./dial.ts";
export * from "./errors.ts";
export { countsAsMember, recordNamespace } from "./group.ts";
export { combineWeight, nameHash, relayHalf, rendezvousWeight } from "./hash.ts";
export * from "./limits.ts";
export * from "./listener.ts";
export * from "./ownership.ts";
export { MAX_RECORDS, type ParseResult, parseRecords, parseTopologyText } from "./parse.ts";
export * from "./rate.ts";
export {
  advertisedRelays,
  attachmentRelay,
  buildRealm,
  canDial,
  dialChoice,
  egressRelays,
  ingressRelays,
  RELAY_WORK_PER_NAMESPACE,
  type Realm,
  type RealmBounds,
  realmResolver,
  resolveRoute,
  resolveRoutes,
  routeTable,
  TABLE_BYTES_PER_NAMESPACE,
} from "./realm.ts";
export { compareRelayKeys, noRoute, type RouteResolver, referenceResolver } from "./reference.ts";
export { type LinkPeers, linkPeers, type RelayMark, type TenantPeers, tableRelays } from "./relays.ts";
export * from "./schema.ts";
export { matchesSelector, type SharedNamespaces, sameHost, selectorList, selectorReaches } from "./selector.ts";
export * from "./wire.ts";
