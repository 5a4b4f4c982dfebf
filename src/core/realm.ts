// Interim: the realm delegates to the reference resolver until the indexed resolver lands.
import { chooseGateway, type DialChoice } from "./dial.ts";
import { HopwayError } from "./errors.ts";
import { type RouteResolver, referenceResolver } from "./reference.ts";
import type { HopwayRecord, Route } from "./schema.ts";

export interface Realm {
  readonly records: readonly HopwayRecord[];
  readonly size: number;
  get(name: string): HopwayRecord | undefined;
}

interface RealmImpl extends Realm {
  resolver: RouteResolver;
}

export function buildRealm(records: readonly HopwayRecord[]): Realm {
  const byName = new Map<string, HopwayRecord>();
  for (const r of records) {
    if (byName.has(r.name)) throw new HopwayError("invalid_input", `duplicate name '${r.name}'`);
    byName.set(r.name, r);
  }
  const realm: RealmImpl = {
    records: Object.freeze([...records]),
    size: records.length,
    get: (name) => byName.get(name),
    resolver: referenceResolver(records),
  };
  return Object.freeze(realm);
}

const impl = (realm: Realm) => realm as RealmImpl;

export function resolveRoute(realm: Realm, from: string, to: string): Route {
  return impl(realm).resolver.resolveRoute(from, to);
}
export function resolveRoutes(realm: Realm, from: string, to: string): Route[] {
  return impl(realm).resolver.resolveRoutes(from, to);
}
export function routeTable(realm: Realm, from: string): Route[] {
  return impl(realm).resolver.routeTable(from);
}
export function dialChoice(realm: Realm, from: string, to: string): DialChoice | null {
  const a = realm.get(from);
  const b = realm.get(to);
  if (a === undefined || b === undefined) {
    throw new HopwayError("unknown_node", `no record named '${a === undefined ? from : to}'`, { status: 404 });
  }
  return chooseGateway(a, b);
}
export function canDial(realm: Realm, from: string, to: string): boolean {
  return dialChoice(realm, from, to) !== null;
}
