// The indexed resolver. A Realm is built once per version of a realm's records
// (the edge caches one per version; the agent one per route table) and then
// answers any number of lookups without rescanning the records.
//
// What makes it fast, and why it still gives exactly the reference answer:
// - Dial classes. Whether P can dial Q depends only on the fields of P that
//   some gateway `match` in the realm mentions, and on Q's gateway list. Nodes
//   are grouped into dialer classes (P projected on those fields) and target
//   classes (Q's gateways without their addresses); a gateway choice is
//   computed once per (dialer class, target class) pair and memoised. A unix://
//   address is usable only from the same host, so the memo holds the choice
//   for a dialer on another host, and a same-host pair is evaluated exactly.
// - Relay closures are computed at build time, once per distinct adv set
//   (a relay that advertises its own service shares its pods' closure), and
//   interned, so targets that share an ingress closure share one search.
// - Bounds (docs/contract/routing.md §3.8). A closure's search costs about the
//   square of its size, and the closures of a chain of `advertise_relay`
//   selectors grow as N², so one namespace could make every route table of
//   the realm cost minutes and gigabytes. Each namespace gets a budget of
//   relay work, spent in name order (not record order, which differs between
//   edge isolates); a record past it gets `relay_limit` instead of a closure.
//   A route table likewise carries at most TABLE_BYTES_PER_NAMESPACE of routes
//   to one namespace's records (`table_limit`), since hops of fat relays are
//   shared in memory but written out in full for every route.
// - A route table does one layered search (fewest hops, then smallest
//   priority sum, keeping every optimal predecessor) from the source over
//   egress(S) ∪ ingress(T) per distinct ingress closure, then finds each
//   target's last hop per target class, and applies rendezvous hashing only at
//   the end, in a walk over the optimal-path DAG.
//
// Tie-break (docs/contract/routing.md §3.3, also in reference.ts): among the paths with the
// fewest hops and then the smallest priority sum, the intermediates X1..Xk are
// compared in order from the source; the first position where two paths differ
// decides, by the higher rendezvous weight, then the smaller name. A relay in
// egress(S) is weighed as rendezvousWeight(S, X), any other relay (it is in
// ingress(T)) as rendezvousWeight(T, X).
import { type DialChoice, gatewayAddresses, pickGateway } from "./dial.ts";
import { EdgeError } from "./errors.ts";
import { countsAsMember, recordNamespace } from "./group.ts";
import { combineWeight, nameHash, relayHalf } from "./hash.ts";
import { utf8Length } from "./limits.ts";
import { noRoute, type RouteResolver } from "./reference.ts";
import { type Hop, type HopwayRecord, MAX_HOPS, type Route, type Selector } from "./schema.ts";
import { matchesSelector, type SharedNamespaces, selectorList, selectorReaches } from "./selector.ts";

const NODE = 0;
const CLIENT = 1;
const GROUP = 2;
const UNKNOWN = -2;
/**
 * Up to this many dialer classes a target class's memo is a dense array (one byte per class);
 * beyond, a map of the classes actually asked. Dense for every class would cost targets × dialers
 * bytes, which gateway `match` selectors naming many records can drive to 100 MB in one realm.
 */
const DENSE_MEMO_MAX = 64;
/** Shared by every hop without fallbacks: routes are read-only, and most hops have none. */
const NO_ALTERNATIVES: string[] = Object.freeze([]) as unknown as string[];

/**
 * Relay work one namespace's records may cost a realm (docs/contract/routing.md §3.8): a distinct
 * `advertise_relay` value costs the records its selectors examine, a distinct relay closure the
 * square of its size (what a search over it costs). 2^22 holds a closure of 2,048 relays, or
 * thousands of small ones, and keeps a route table at the per-namespace caps to about a second.
 */
export const RELAY_WORK_PER_NAMESPACE = 4_194_304;
/**
 * Bytes (UTF-8 JSON) of the routes to one namespace's records that one route table carries: what
 * the namespace may store by default. A table at 10,000 ordinary records is ~5 MB, and several
 * namespaces at this bound still fit the agent's 64 MiB read cap.
 */
export const TABLE_BYTES_PER_NAMESPACE = 16 * 1024 * 1024;

/** The per-namespace bounds of §3.8; tests pass small ones, everything else takes the defaults. */
export interface RealmBounds {
  relayWork?: number;
  tableBytes?: number;
}

/** An immutable, pre-indexed set of records. Build with buildRealm; query with the functions below. */
export interface Realm {
  readonly records: readonly HopwayRecord[];
  readonly size: number;
  get(name: string): HopwayRecord | undefined;
}

/** Sorted record indices only: a Set per closure cost ~40 bytes a member, and a chain makes N² members. */
interface Closure {
  id: number;
  members: Int32Array;
}

/** One namespace's relay work so far (§3.8). `paid` holds what it was charged for: each once. */
interface RelayBudget {
  used: number;
  /** Once refused, refused for every record after it: at most one aborted computation per namespace. */
  over: boolean;
  paid: Set<string | Int32Array>;
}

/**
 * The values that gateway `match` selectors in the realm compare a dialer's
 * fields with. A selector tests equality only, so a dialer whose value is not
 * among them (or who lacks the field) fails every such test alike: projecting
 * each field onto "one of these values, or none of them" keeps dialer classes
 * few even when names, hosts or some labels are unique per pod.
 */
interface Referenced {
  name: Set<string>;
  hostname: Set<string>;
  pid: Set<number>;
  ns: Set<string>;
  api: Set<string>;
  kind: Set<string>;
  group: Set<string>;
  labels: Map<string, Set<string>>;
}

/** A field's value if some selector compares with it, else a marker shared by every other value. */
function project<T>(seen: Set<T>, value: T | undefined): T | null {
  // null, not 0 or "": field values are strings and numbers (pid 0 is valid), never null.
  return value !== undefined && seen.has(value) ? value : null;
}

class RealmImpl implements Realm {
  readonly records: readonly HopwayRecord[];
  readonly size: number;
  readonly index = new Map<string, number>();
  readonly kind: Uint8Array;
  readonly chooser: Array<[number, number]>;
  readonly relayW: Array<[number, number]>;
  readonly dclass: Int32Array;
  readonly dclassRep: number[] = [];
  readonly tclass: Int32Array;
  readonly tclassRep: number[] = [];
  /** Whether a target class has unix:// addresses (same-host dialers need an exact evaluation). */
  readonly tclassUnix: boolean[] = [];
  /** Interned (namespace, hostname) per record; -1 when the hostname is not given (on no known host). */
  readonly hostKey: Int32Array;
  /**
   * Per target class, per dialer class: gateway index or -1 for none (gateways ≤ 64). Dense (UNKNOWN
   * = not yet computed) with few dialer classes, else sparse (DENSE_MEMO_MAX).
   */
  readonly dialMemo: Array<Int8Array | Map<number, number> | undefined> = [];
  readonly adv: Array<Int32Array>;
  readonly closureOf: Closure[];
  readonly attach: Int32Array;
  /** Why a record's relays are not followed (§3.8): its routes that need relays get `relay_limit`. */
  readonly limited: Array<string | undefined>;
  readonly bounds: Required<RealmBounds>;
  /** The realm's shared namespaces (docs/contract/records.md §2.3); null: every namespace. */
  readonly shared: SharedNamespaces;
  /** Records whose adv set was not computed: a closure that reaches one cannot be computed either. */
  private readonly advRefused: Uint8Array;
  /** Visit marks for reach(), by generation, so that a search allocates nothing of the realm's size. */
  private readonly stamp: Int32Array;
  private stampGen = 0;
  private readonly hopBytes = new WeakMap<Hop, number>();
  private readonly gatewayHops: Array<Hop[] | undefined> = [];
  private readonly searches = new Map<number, Search>();
  private readonly closureCount: number;
  private readonly clientHops: Array<Hop | undefined> = [];
  private readonly byNs = new Map<string, number[]>();
  private readonly byKind = new Map<string, number[]>();
  /** label key → value → nodes; only for the label keys some advertise_relay selector uses. */
  private readonly byLabel = new Map<string, Map<string, number[]>>();
  private readonly byHost = new Map<string, number[]>();
  private readonly nodeList: number[] = [];
  /** Under shared namespaces: the nodes of shared namespaces and those without one (ascending). */
  private readonly openNodes: number[] = [];
  /**
   * Under shared namespaces, the kind, host and label indexes split by reach (§2.3), keyed
   * `part \0 value`: part "" for the nodes of `openNodes`, else the node's own (unshared) namespace.
   * A selector that names no namespace is priced from its own reach only.
   */
  private readonly reachKind = new Map<string, number[]>();
  private readonly reachHost = new Map<string, number[]>();
  private readonly reachLabel = new Map<string, Map<string, number[]>>();

  constructor(input: readonly HopwayRecord[], bounds: RealmBounds, shared: SharedNamespaces) {
    const records = Object.freeze([...input]);
    this.records = records;
    this.shared = shared;
    const n = records.length;
    this.size = n;
    this.bounds = {
      relayWork: bounds.relayWork ?? RELAY_WORK_PER_NAMESPACE,
      tableBytes: bounds.tableBytes ?? TABLE_BYTES_PER_NAMESPACE,
    };
    this.limited = new Array(n).fill(undefined);
    this.advRefused = new Uint8Array(n);
    this.kind = new Uint8Array(n);
    this.chooser = new Array(n);
    this.relayW = new Array(n);
    this.dclass = new Int32Array(n).fill(-1);
    this.tclass = new Int32Array(n).fill(-1);
    this.attach = new Int32Array(n).fill(-1);
    this.hostKey = new Int32Array(n).fill(-1);
    const hostKeys = new Map<string, number>();
    const ref: Referenced = {
      name: new Set(),
      hostname: new Set(),
      pid: new Set(),
      ns: new Set(),
      api: new Set(),
      kind: new Set(),
      group: new Set(),
      labels: new Map(),
    };
    const push = (map: Map<string, number[]>, key: string, i: number) => {
      const list = map.get(key);
      if (list === undefined) map.set(key, [i]);
      else list.push(i);
    };
    // Index only what advertise_relay selectors can ask for: pod-unique labels
    // and hostnames would otherwise fill the indexes with one-entry lists.
    let advHosts = false;
    for (const r of records) {
      if (r.type === "group") continue;
      for (const sel of selectorList(r.advertise_relay)) {
        if (sel.host?.hostname !== undefined) advHosts = true;
        for (const k of Object.keys(sel.metadata?.labels ?? {})) {
          if (!this.byLabel.has(k)) this.byLabel.set(k, new Map());
          if (shared !== null && !this.reachLabel.has(k)) this.reachLabel.set(k, new Map());
        }
      }
    }
    for (let i = 0; i < n; i++) {
      const r = records[i]!;
      if (this.index.has(r.name)) throw new EdgeError(400, "invalid_input", `duplicate name '${r.name}'`);
      this.index.set(r.name, i);
      const h = nameHash(r.name);
      this.chooser[i] = h;
      this.relayW[i] = relayHalf(h);
      this.kind[i] = r.type === "node" ? NODE : r.type === "client" ? CLIENT : GROUP;
      if (r.type !== "node") continue;
      this.nodeList.push(i);
      const md = r.metadata;
      const ns = md?.namespace_name;
      const part = shared === null ? undefined : ns === undefined || shared.has(ns) ? "" : ns;
      if (part !== undefined) {
        if (part === "") this.openNodes.push(i);
        if (md?.kind !== undefined) push(this.reachKind, `${part}\u0000${md.kind}`, i);
        if (advHosts && r.host?.hostname !== undefined) push(this.reachHost, `${part}\u0000${r.host.hostname}`, i);
        const labels = md?.labels;
        if (labels !== undefined) {
          for (const [k, values] of this.reachLabel) {
            if (Object.hasOwn(labels, k)) push(values, `${part}\u0000${labels[k]!}`, i);
          }
        }
      }
      if (md?.namespace_name !== undefined) push(this.byNs, md.namespace_name, i);
      if (md?.kind !== undefined) push(this.byKind, md.kind, i);
      const labels = md?.labels;
      if (labels !== undefined && this.byLabel.size > 0) {
        for (const [k, values] of this.byLabel) if (Object.hasOwn(labels, k)) push(values, labels[k]!, i);
      }
      if (r.host?.hostname !== undefined) {
        if (advHosts) push(this.byHost, r.host.hostname, i);
        const hk = `${md?.namespace_name ?? ""}\u0000${md?.namespace_name === undefined ? 0 : 1}\u0000${r.host.hostname}`;
        let id = hostKeys.get(hk);
        if (id === undefined) {
          id = hostKeys.size;
          hostKeys.set(hk, id);
        }
        this.hostKey[i] = id;
      }
      for (const gw of r.gateway ?? []) {
        const m = gw.match;
        if (m === undefined) continue;
        if (m.name !== undefined) ref.name.add(m.name);
        if (m.host?.hostname !== undefined) ref.hostname.add(m.host.hostname);
        if (m.host?.pid !== undefined) ref.pid.add(m.host.pid);
        const mm = m.metadata;
        if (mm?.namespace_name !== undefined) ref.ns.add(mm.namespace_name);
        if (mm?.api_version !== undefined) ref.api.add(mm.api_version);
        if (mm?.kind !== undefined) ref.kind.add(mm.kind);
        if (mm?.group !== undefined) ref.group.add(mm.group);
        for (const [k, v] of Object.entries(mm?.labels ?? {})) {
          let values = ref.labels.get(k);
          if (values === undefined) {
            values = new Set();
            ref.labels.set(k, values);
          }
          values.add(v);
        }
      }
    }
    const labelKeys = [...ref.labels.keys()].sort();

    // Dialer and target classes.
    const dkeys = new Map<string, number>();
    const tkeys = new Map<string, number>();
    for (const i of this.nodeList) {
      const r = records[i] as Extract<HopwayRecord, { type: "node" }>;
      const md = r.metadata;
      const labels = md?.labels;
      const dkey = JSON.stringify([
        project(ref.name, r.name),
        project(ref.hostname, r.host?.hostname),
        project(ref.pid, r.host?.pid),
        // Under shared namespaces a dialer of an unshared namespace passes a gateway that names
        // none of an unshared namespace only in its own (§2.3): its namespace is part of its class.
        shared !== null && md?.namespace_name !== undefined && !shared.has(md.namespace_name)
          ? [md.namespace_name]
          : project(ref.ns, md?.namespace_name),
        project(ref.api, md?.api_version),
        project(ref.kind, md?.kind),
        project(ref.group, md?.group),
        labelKeys.map((k) =>
          project(ref.labels.get(k)!, labels !== undefined && Object.hasOwn(labels, k) ? labels[k] : undefined),
        ),
      ]);
      let dc = dkeys.get(dkey);
      if (dc === undefined) {
        dc = this.dclassRep.length;
        dkeys.set(dkey, dc);
        this.dclassRep.push(i);
      }
      this.dclass[i] = dc;
      const gateways = r.gateway ?? [];
      let unix = false;
      // Plain JSON, not canonical: equal JSON implies equal gateways; a different key order only costs sharing.
      // Which dialers a gateway that names no namespace admits depends on the target's own
      // namespace once namespaces are not all shared (§2.3).
      const owner = shared === null ? null : (md?.namespace_name ?? null);
      const tkey = JSON.stringify([
        owner,
        gateways.map((g) => {
          const addrs = gatewayAddresses(g.address);
          let pattern = "";
          for (const a of addrs) {
            const u = a.startsWith("unix://");
            unix ||= u;
            pattern += u ? "u" : "t";
          }
          return [g.priority, g.match ?? null, pattern];
        }),
      ]);
      let tc = tkeys.get(tkey);
      if (tc === undefined) {
        tc = this.tclassRep.length;
        tkeys.set(tkey, tc);
        this.tclassRep.push(i);
        this.tclassUnix.push(unix);
      }
      this.tclass[i] = tc;
    }

    // adv sets, one per distinct advertise_relay value, then closures, both paid for from the
    // record's namespace's relay budget in name order (§3.8).
    const byName = (a: number, b: number) => (records[a]!.name < records[b]!.name ? -1 : 1);
    const order: number[] = [];
    for (let i = 0; i < n; i++) {
      const r = records[i]!;
      if (r.type !== "group" && r.advertise_relay !== undefined) order.push(i);
    }
    order.sort(byName);
    const budgets = new Map<string | null, RelayBudget>();
    const budgetOf = (i: number): RelayBudget => {
      const ns = recordNamespace(records[i]!);
      let b = budgets.get(ns);
      if (b === undefined) {
        b = { used: 0, over: false, paid: new Set() };
        budgets.set(ns, b);
      }
      return b;
    };
    const refuse = (i: number, b: RelayBudget) => {
      b.over = true;
      const ns = recordNamespace(records[i]!);
      this.limited[i] =
        `namespace ${ns === null ? "(none)" : `'${ns}'`} is past its relay work bound (${this.bounds.relayWork}) ` +
        `at '${records[i]!.name}': its advertise_relay is not followed`;
    };
    const limit = this.bounds.relayWork;
    const empty = new Int32Array(0);
    this.adv = new Array(n).fill(empty);
    const advKeys = new Map<string, { set: Int32Array; cost: number }>();
    for (const i of order) {
      const r = records[i] as Exclude<HopwayRecord, { type: "group" }>;
      // Under shared namespaces one value selects differently per namespace (§2.3).
      const owner = r.metadata?.namespace_name;
      const key =
        shared === null ? JSON.stringify(r.advertise_relay) : JSON.stringify([owner ?? null, r.advertise_relay]);
      const b = budgetOf(i);
      let known = advKeys.get(key);
      if (!b.paid.has(key)) {
        // The cost is known before the work: the candidates each selector's smallest index gives.
        const cost =
          known?.cost ?? selectorList(r.advertise_relay).reduce((c, sel) => c + this.candidates(sel, owner).length, 0);
        if (b.over || b.used + cost > limit) {
          refuse(i, b);
          this.advRefused[i] = 1;
          continue;
        }
        b.used += cost;
        b.paid.add(key);
        if (known === undefined) {
          const found = new Set<number>();
          for (const sel of selectorList(r.advertise_relay)) for (const j of this.selectNodes(sel, owner)) found.add(j);
          known = { set: Int32Array.from([...found].sort((a, c) => a - c)), cost };
          advKeys.set(key, known);
        }
      }
      this.adv[i] = known!.set;
    }

    // Relay closures. closure(i) = R(adv(i)) (adv(i) and all it reaches, self-advertising
    // excluded), minus i itself when i advertises itself but lies on no cycle: so every record
    // with the same adv set shares one computation, and a relay service whose pods advertise the
    // service shares one closure. Interned by content, so equal closures share one search.
    const interned = new Map<string, Closure>();
    this.closureOf = new Array(n);
    const emptyClosure: Closure = { id: 0, members: empty };
    interned.set("", emptyClosure);
    this.closureOf.fill(emptyClosure);
    this.stamp = new Int32Array(order.length > 0 ? n : 0);
    const reached = new Map<Int32Array, Int32Array | number>();
    for (const i of order) {
      const set = this.adv[i]!;
      if (this.limited[i] !== undefined || set.length === 0) continue;
      const b = budgetOf(i);
      let all = reached.get(set);
      if (typeof all === "number") {
        this.limited[i] = this.blockedDetail(i, all);
        continue;
      }
      if (!b.paid.has(set)) {
        const remaining = limit - b.used;
        if (!b.over && all === undefined) {
          const got = this.reach(set, Math.floor(Math.sqrt(remaining)));
          if (typeof got === "number") {
            reached.set(set, got);
            this.limited[i] = this.blockedDetail(i, got);
            continue;
          }
          if (got !== null) {
            all = got;
            reached.set(set, all);
          }
        }
        if (b.over || all === undefined || all.length * all.length > remaining) {
          refuse(i, b);
          continue;
        }
        b.used += all.length * all.length;
        b.paid.add(set);
      }
      let members = all!;
      if (binaryHas(set, i) && !this.onCycle(i, members)) members = members.filter((j) => j !== i);
      const key = members.join(",");
      let c = interned.get(key);
      if (c === undefined) {
        c = { id: interned.size, members };
        interned.set(key, c);
      }
      this.closureOf[i] = c;
    }
    this.closureCount = interned.size;

    // Each client's attachment relay: the highest rendezvous weight among the nodes it advertises.
    for (let i = 0; i < n; i++) {
      if (this.kind[i] !== CLIENT) continue;
      let best = -1;
      let bestW = -1;
      for (const j of this.adv[i]!) {
        const w = this.weight(i, j);
        if (best < 0 || w > bestW || (w === bestW && records[j]!.name < records[best]!.name)) {
          best = j;
          bestW = w;
        }
      }
      this.attach[i] = best;
    }
  }

  get(name: string): HopwayRecord | undefined {
    const i = this.index.get(name);
    return i === undefined ? undefined : this.records[i];
  }

  /** The rendezvous weight of relay j as chosen by record i. */
  weight(i: number, j: number): number {
    return combineWeight(this.chooser[i]!, this.relayW[j]!);
  }

  /** Node indices (ascending) a selector of a record in namespace `owner` matches, via the smallest applicable index. */
  selectNodes(sel: Selector, owner: string | undefined): number[] {
    return this.candidates(sel, owner).filter(
      (i) =>
        matchesSelector(sel, this.records[i]!) && selectorReaches("relay", sel, owner, this.records[i]!, this.shared),
    );
  }

  /**
   * The smallest index list that holds every node a selector of a record in namespace `owner` can
   * match: what selecting costs. Under shared namespaces a selector that names no namespace takes
   * its lists from the reach-split indexes (§2.3): nodes another tenant adds outside that reach
   * are in none of them, so they cost the owner nothing, whichever index would be the smallest.
   */
  candidates(sel: Selector, owner: string | undefined): readonly number[] {
    const shared = this.shared;
    if (shared === null || sel.metadata?.namespace_name !== undefined) return this.indexed(sel);
    const own = owner !== undefined && !shared.has(owner) ? owner : undefined;
    let open: readonly number[] = this.openNodes;
    let mine: readonly number[] = own === undefined ? [] : (this.byNs.get(own) ?? []);
    const take = (o: readonly number[], m: readonly number[]) => {
      if (o.length + m.length < open.length + mine.length) {
        open = o;
        mine = m;
      }
    };
    const consider = (map: Map<string, number[]> | undefined, value: string) =>
      take(map?.get(`\u0000${value}`) ?? [], own === undefined ? [] : (map?.get(`${own}\u0000${value}`) ?? []));
    if (sel.name !== undefined) {
      const i = this.index.get(sel.name);
      const ns = i === undefined ? undefined : this.records[i]!.metadata?.namespace_name;
      const reached = i !== undefined && this.kind[i] === NODE && (ns === undefined || shared.has(ns) || ns === own);
      take(reached ? [i!] : [], []);
    }
    const md = sel.metadata;
    if (md?.kind !== undefined) consider(this.reachKind, md.kind);
    if (sel.host?.hostname !== undefined) consider(this.reachHost, sel.host.hostname);
    for (const [k, v] of Object.entries(md?.labels ?? {})) consider(this.reachLabel.get(k), v);
    if (mine.length === 0) return open;
    return open.length === 0 ? mine : mergeAscending(open, mine);
  }

  private indexed(sel: Selector): readonly number[] {
    let candidates: readonly number[] = this.nodeList;
    const consider = (list: readonly number[] | undefined) => {
      if ((list?.length ?? 0) < candidates.length) candidates = list ?? [];
    };
    if (sel.name !== undefined) {
      const i = this.index.get(sel.name);
      consider(i !== undefined && this.kind[i] === NODE ? [i] : []);
    }
    const md = sel.metadata;
    if (md?.namespace_name !== undefined) consider(this.byNs.get(md.namespace_name));
    if (md?.kind !== undefined) consider(this.byKind.get(md.kind));
    if (sel.host?.hostname !== undefined) consider(this.byHost.get(sel.host.hostname));
    for (const [k, v] of Object.entries(md?.labels ?? {})) consider(this.byLabel.get(k)?.get(v));
    return candidates;
  }

  /**
   * R(set): the set and every node it reaches by adv, self-advertising excluded, sorted; null when
   * it has more than `max` members (the caller's budget cannot pay its square); else the first
   * reached node, by name, whose adv set was refused. Nodes whose adv was refused are not
   * followed, so which of the three comes out does not depend on the order of the records.
   */
  private reach(set: Int32Array, max: number): Int32Array | number | null {
    const gen = ++this.stampGen;
    const stamp = this.stamp;
    const out: number[] = [];
    const add = (j: number) => {
      if (stamp[j] !== gen) {
        stamp[j] = gen;
        out.push(j);
      }
    };
    for (const j of set) add(j);
    // An adv set shared by many nodes is scanned once, for its first owner, which it skips (no
    // self-advertising); a second owner only adds that first one back. Without this, a namespace
    // whose N records all advertise the namespace costs N² here.
    const scanned = new Map<Int32Array, number>();
    let blocked = -1;
    for (let q = 0; q < out.length && out.length <= max; q++) {
      const v = out[q]!;
      if (this.advRefused[v] === 1) {
        if (blocked < 0 || this.records[v]!.name < this.records[blocked]!.name) blocked = v;
        continue;
      }
      const adv = this.adv[v]!;
      if (adv.length === 0) continue;
      const first = scanned.get(adv);
      if (first === undefined) {
        for (const j of adv) if (j !== v) add(j);
        scanned.set(adv, v);
      } else if (first >= 0) {
        if (binaryHas(adv, first)) add(first);
        scanned.set(adv, -1);
      }
    }
    if (out.length > max) return null;
    if (blocked >= 0) return blocked;
    return Int32Array.from(out.sort((a, b) => a - b));
  }

  /** Whether i, which advertises itself, is reached again from another node of its R(adv(i)). */
  private onCycle(i: number, all: Int32Array): boolean {
    for (const v of all) if (v !== i && binaryHas(this.adv[v]!, i)) return true;
    return false;
  }

  private blockedDetail(i: number, via: number): string {
    return (
      `the relays '${this.records[i]!.name}' advertises lead through '${this.records[via]!.name}', ` +
      `whose advertise_relay is not followed: ${this.limited[via]}`
    );
  }

  /** A route that needs the relays of a record over its namespace's relay work bound (§3.8), or undefined. */
  limitedRoute(s: number, t: number): Route | undefined {
    const x = this.limited[s] !== undefined ? s : this.limited[t] !== undefined ? t : -1;
    if (x < 0) return undefined;
    return noRoute(this.records[s]!.name, this.records[t]!.name, "relay_limit", this.limited[x]!);
  }

  /** UTF-8 bytes of a hop's JSON; hops are shared, so each is measured once. */
  hopSize(hop: Hop): number {
    let size = this.hopBytes.get(hop);
    if (size === undefined) {
      size = utf8Length(JSON.stringify(hop));
      this.hopBytes.set(hop, size);
    }
    return size;
  }

  /** Index of the gateway node u uses to dial node v, or -1. */
  gatewayIndex(u: number, v: number): number {
    if (u === v) return -1;
    const dc = this.dclass[u]!;
    const tc = this.tclass[v]!;
    if (dc < 0 || tc < 0) return -1;
    const hk = this.hostKey[u]!;
    if (this.tclassUnix[tc] && hk >= 0 && hk === this.hostKey[v]) {
      return pickGateway(this.records[u]!, this.records[v]!, true, this.shared)?.gateway ?? -1;
    }
    let memo = this.dialMemo[tc];
    if (memo === undefined) {
      const dialers = this.dclassRep.length;
      memo = dialers <= DENSE_MEMO_MAX ? new Int8Array(dialers).fill(UNKNOWN) : new Map<number, number>();
      this.dialMemo[tc] = memo;
    }
    if (memo instanceof Int8Array) {
      let g = memo[dc]!;
      if (g === UNKNOWN) {
        g = this.pick(dc, tc);
        memo[dc] = g;
      }
      return g;
    }
    let g = memo.get(dc);
    if (g === undefined) {
      g = this.pick(dc, tc);
      memo.set(dc, g);
    }
    return g;
  }

  private pick(dc: number, tc: number): number {
    const dialer = this.records[this.dclassRep[dc]!]!;
    return pickGateway(dialer, this.records[this.tclassRep[tc]!]!, false, this.shared)?.gateway ?? -1;
  }

  /** Priority of the gateway u uses for v (g from gatewayIndex). */
  priority(v: number, g: number): number {
    const r = this.records[v] as Extract<HopwayRecord, { type: "node" }>;
    return r.gateway![g]!.priority;
  }

  /**
   * The hop from u to v. A hop depends only on v and the gateway used (or on v
   * alone for a client hop), so hops are built once per realm and shared by
   * every route that takes them: routes are read-only. Only a same-host pair
   * (unix:// usable) gets a hop of its own.
   */
  hop(u: number, v: number): Hop {
    const target = this.records[v]!;
    if (this.kind[u] === CLIENT || this.kind[v] === CLIENT) {
      let hop = this.clientHops[v];
      if (hop === undefined) {
        hop = Object.freeze({ node: target.name, address: null, priority: 0, alternatives: NO_ALTERNATIVES });
        this.clientHops[v] = hop;
      }
      return hop;
    }
    const tc = this.tclass[v]!;
    const hk = this.hostKey[u]!;
    if (this.tclassUnix[tc] && hk >= 0 && hk === this.hostKey[v]) {
      const c = pickGateway(this.records[u]!, target, true, this.shared)!;
      return { node: target.name, address: c.address, priority: c.priority, alternatives: c.alternatives };
    }
    const g = this.gatewayIndex(u, v);
    let byGateway = this.gatewayHops[v];
    if (byGateway === undefined) {
      byGateway = [];
      this.gatewayHops[v] = byGateway;
    }
    let hop = byGateway[g];
    if (hop === undefined) {
      const gw = (target as Extract<HopwayRecord, { type: "node" }>).gateway![g]!;
      let addrs = gatewayAddresses(gw.address);
      if (this.tclassUnix[tc]) addrs = addrs.filter((a) => !a.startsWith("unix://"));
      hop = {
        node: target.name,
        address: addrs[0]!,
        priority: gw.priority,
        alternatives: addrs.length === 1 ? NO_ALTERNATIVES : (Object.freeze(addrs.slice(1)) as string[]),
      };
      Object.freeze(hop);
      byGateway[g] = hop;
    }
    return hop;
  }

  /**
   * The search from s towards t's ingress closure, from a small LRU: a serving
   * edge resolves the same few sources over and over. Searches are immutable
   * once built (their memo maps only cache what they would compute anyway).
   */
  search(s: number, t: number): Search {
    const ingress = this.closureOf[t]!;
    const key = s * this.closureCount + ingress.id;
    const hit = this.searches.get(key);
    if (hit !== undefined) {
      this.searches.delete(key);
      this.searches.set(key, hit);
      return hit;
    }
    const made = new Search(this, s, this.closureOf[s]!, ingress);
    this.searches.set(key, made);
    if (this.searches.size > SEARCH_CACHE) this.searches.delete(this.searches.keys().next().value!);
    return made;
  }

  lookup(name: string): number {
    const i = this.index.get(name);
    if (i === undefined) throw new EdgeError(404, "unknown_node", `no record named '${name}'`);
    return i;
  }
}

function binaryHas(sorted: Int32Array, x: number): boolean {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const v = sorted[mid]!;
    if (v === x) return true;
    if (v < x) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

const INF = 0x7fffffff;
/** Searches kept for single lookups (each is a few kB). */
const SEARCH_CACHE = 512;

interface LastHop {
  depth: number;
  cost: number;
  preds: number[];
  /** Whether any of the search's nodes can dial the target at all (else: no_matching_gateway). */
  dialable: boolean;
  /** Whether this answer holds for every target of the same class (memoised). */
  shared: boolean;
}

/** The optimal-path DAG from one source over egress(S) ∪ one ingress closure. */
class Search {
  /** Record index per position; position 0 is the source. */
  readonly nodes: number[];
  readonly pos = new Map<number, number>();
  readonly depth: Int32Array;
  readonly cost: Float64Array;
  readonly preds: number[][];
  readonly succ: number[][];
  /** Positions reached, in BFS order. */
  readonly reached: number[] = [];
  /** rendezvous weight by the source for egress relays; NaN for the others. */
  readonly egressWeight: Float64Array;
  /** Host keys of the search's nodes: a unix:// target on one of them needs its own last-hop evaluation. */
  private readonly hosts = new Set<number>();
  private readonly lastHop = new Map<number, LastHop>();
  private readonly ancMemo = new Map<number, Uint8Array>();

  constructor(
    readonly realm: RealmImpl,
    readonly source: number,
    egress: Closure,
    ingress: Closure,
  ) {
    const nodes = [source];
    this.pos.set(source, 0);
    for (const c of [egress.members, ingress.members]) {
      for (const j of c) {
        if (!this.pos.has(j)) {
          this.pos.set(j, nodes.length);
          nodes.push(j);
        }
      }
    }
    this.nodes = nodes;
    const m = nodes.length;
    for (const j of nodes) if (realm.hostKey[j]! >= 0) this.hosts.add(realm.hostKey[j]!);
    this.depth = new Int32Array(m).fill(INF);
    this.cost = new Float64Array(m);
    this.preds = Array.from({ length: m }, () => []);
    this.succ = Array.from({ length: m }, () => []);
    this.egressWeight = new Float64Array(m).fill(Number.NaN);
    for (let p = 1; p < m; p++) {
      if (binaryHas(egress.members, nodes[p]!)) this.egressWeight[p] = realm.weight(source, nodes[p]!);
    }
    this.depth[0] = 0;
    let frontier = [0];
    this.reached.push(0);
    const clientSource = realm.kind[source] === CLIENT;
    for (let h = 1; frontier.length > 0; h++) {
      const next: number[] = [];
      for (const pu of frontier) {
        const u = nodes[pu]!;
        for (let pv = 1; pv < m; pv++) {
          const dv = this.depth[pv]!;
          if (dv < h) continue;
          let c: number;
          if (pu === 0 && clientSource) {
            if (nodes[pv] !== realm.attach[source]) continue;
            c = 0;
          } else {
            const g = realm.gatewayIndex(u, nodes[pv]!);
            if (g < 0) continue;
            c = this.cost[pu]! + realm.priority(nodes[pv]!, g);
          }
          if (dv === INF) {
            this.depth[pv] = h;
            this.cost[pv] = c;
            this.preds[pv]!.push(pu);
            next.push(pv);
            this.reached.push(pv);
          } else if (c < this.cost[pv]!) {
            this.cost[pv] = c;
            this.preds[pv] = [pu];
          } else if (c === this.cost[pv]) this.preds[pv]!.push(pu);
        }
      }
      frontier = next;
    }
    for (const pv of this.reached) for (const pu of this.preds[pv]!) this.succ[pu]!.push(pv);
  }

  /** The best last hop into node t (not among the search's nodes): depth, cost and optimal predecessors. */
  lastHopInto(t: number): LastHop {
    const realm = this.realm;
    const tc = realm.tclass[t]!;
    const shared = tc >= 0 && !(realm.tclassUnix[tc] && this.hosts.has(realm.hostKey[t]!));
    if (shared) {
      const known = this.lastHop.get(tc);
      if (known !== undefined) return known;
    }
    let depth = INF;
    let cost = 0;
    let preds: number[] = [];
    let dialable = false;
    for (let pu = 0; pu < this.nodes.length; pu++) {
      const g = realm.gatewayIndex(this.nodes[pu]!, t);
      if (g < 0) continue;
      dialable = true;
      const du = this.depth[pu]!;
      if (du === INF) continue;
      const c = this.cost[pu]! + realm.priority(t, g);
      if (du + 1 < depth || (du + 1 === depth && c < cost)) {
        depth = du + 1;
        cost = c;
        preds = [pu];
      } else if (du + 1 === depth && c === cost) preds.push(pu);
    }
    const out = { depth, cost, preds, dialable, shared };
    if (shared) this.lastHop.set(tc, out);
    return out;
  }

  /** Flags of the positions that lie on an optimal path to one of `ends` (ends included). */
  ancestors(ends: readonly number[], memoKey: number | undefined): Uint8Array {
    if (memoKey !== undefined) {
      const known = this.ancMemo.get(memoKey);
      if (known !== undefined) return known;
    }
    const flags = new Uint8Array(this.nodes.length);
    const stack = [...ends];
    for (const e of ends) flags[e] = 1;
    while (stack.length > 0) {
      for (const pu of this.preds[stack.pop()!]!) {
        if (flags[pu] === 0) {
          flags[pu] = 1;
          stack.push(pu);
        }
      }
    }
    if (memoKey !== undefined) this.ancMemo.set(memoKey, flags);
    return flags;
  }

  hopBetween(pu: number, pv: number): Hop {
    return this.realm.hop(this.nodes[pu]!, this.nodes[pv]!);
  }

  /**
   * Appends the hops to the chosen intermediates towards `target` (at most
   * `lastDepth - 1` of them) and returns the position reached: from the source,
   * each step takes the successor on an optimal path (`anc`) with the highest
   * rendezvous weight, then the smaller name.
   */
  walk(target: number, lastDepth: number, anc: Uint8Array, hops: Hop[]): number {
    const realm = this.realm;
    let cur = 0;
    for (let h = 1; h < lastDepth; h++) {
      let best = -1;
      let bestW = -1;
      for (const pv of this.succ[cur]!) {
        if (anc[pv] === 0) continue;
        const ew = this.egressWeight[pv]!;
        const v = this.nodes[pv]!;
        const w = Number.isNaN(ew) ? realm.weight(target, v) : ew;
        if (best < 0 || w > bestW || (w === bestW && realm.records[v]!.name < realm.records[this.nodes[best]!]!.name)) {
          best = pv;
          bestW = w;
        }
      }
      hops.push(this.hopBetween(cur, best));
      cur = best;
    }
    return cur;
  }
}

/**
 * One route through a finished search. Hops between relays come from the
 * search's cache, so the routes of one table share them: routes are read-only.
 */
function routeVia(realm: RealmImpl, search: Search, s: number, t: number): Route {
  const from = realm.records[s]!.name;
  const to = realm.records[t]!.name;
  let ends: number[];
  let depth: number;
  let memoKey: number | undefined;
  /** For a client target: its attachment relay, the last relay before it. */
  let via = -1;
  if (realm.kind[t] === CLIENT) {
    const a = realm.attach[t]!;
    if (a < 0) return noRoute(from, to, "client_not_attached", `client '${to}' names no relay in advertise_relay`);
    if (a === s) return { from, to, hops: [realm.hop(s, t)] };
    const pa = search.pos.get(a)!;
    if (search.depth[pa] === INF) {
      return noRoute(from, to, "no_relay_chain", `no chain of eligible relays leads from '${from}' to '${to}'`);
    }
    ends = search.preds[pa]!;
    depth = search.depth[pa]! + 1;
    memoKey = -1 - pa;
    via = a;
  } else {
    const pt = search.pos.get(t);
    let dialable: boolean;
    if (pt !== undefined) {
      ends = search.preds[pt]!;
      depth = search.depth[pt]!;
      dialable = false;
      if (depth === INF) {
        for (let pu = 0; pu < search.nodes.length && !dialable; pu++) {
          dialable = realm.gatewayIndex(search.nodes[pu]!, t) >= 0;
        }
      }
    } else {
      const lh = search.lastHopInto(t);
      ends = lh.preds;
      depth = lh.depth;
      dialable = lh.dialable;
      memoKey = lh.shared ? realm.tclass[t]! : undefined;
    }
    if (depth === INF) {
      if (!dialable) {
        return noRoute(from, to, "no_matching_gateway", `no gateway of '${to}' accepts '${from}' or an eligible relay`);
      }
      return noRoute(from, to, "no_relay_chain", `no chain of eligible relays leads from '${from}' to '${to}'`);
    }
  }
  if (depth > MAX_HOPS) {
    return noRoute(from, to, "hop_limit", `the shortest route has ${depth} hops, more than ${MAX_HOPS}`);
  }
  // For a client target the walk ends at its attachment relay, whose own optimal predecessors are `ends`.
  const anc = search.ancestors(ends, memoKey);
  const hops: Hop[] = [];
  const cur = search.walk(t, via < 0 ? depth : depth - 1, anc, hops);
  if (!ends.includes(cur)) throw new EdgeError(500, "internal", "route walk left the optimal DAG");
  if (via >= 0) hops.push(search.hopBetween(cur, search.pos.get(via)!));
  hops.push(realm.hop(via >= 0 ? via : search.nodes[cur]!, t));
  return { from, to, hops };
}

/** Two ascending, disjoint index lists as one ascending list. */
function mergeAscending(a: readonly number[], b: readonly number[]): number[] {
  const out = new Array<number>(a.length + b.length);
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < a.length && j < b.length) out[k++] = a[i]! < b[j]! ? a[i++]! : b[j++]!;
  while (i < a.length) out[k++] = a[i++]!;
  while (j < b.length) out[k++] = b[j++]!;
  return out;
}

function impl(realm: Realm): RealmImpl {
  if (!(realm instanceof RealmImpl)) throw new TypeError("not a Realm built by buildRealm");
  return realm;
}

/**
 * Builds the immutable, indexed realm. Throws invalid_input on duplicate names. `bounds` are for
 * tests: the edge, the agent, the CLI and the topology page must all use the defaults (§3.8), or
 * they would give different routes. `shared`: the realm's shared namespaces
 * (docs/contract/records.md §2.3), null for every namespace; whoever computes a realm's routes
 * must pass the realm's setting.
 */
export function buildRealm(
  records: readonly HopwayRecord[],
  bounds: RealmBounds = {},
  shared: SharedNamespaces = null,
): Realm {
  return new RealmImpl(records, bounds, shared);
}

function preCheck(r: RealmImpl, s: number, t: number): Route | undefined {
  const from = r.records[s]!.name;
  const to = r.records[t]!.name;
  if (r.kind[s] === GROUP || r.kind[t] === GROUP) {
    return noRoute(from, to, "group_endpoint", `'${r.kind[s] === GROUP ? from : to}' is a group: resolve its members`);
  }
  if (s === t) return noRoute(from, to, "same_node", "source and target are the same record");
  // A client over the bound has no attachment computed: say why, not client_not_attached.
  if (r.kind[s] === CLIENT && r.limited[s] !== undefined) return r.limitedRoute(s, t);
  if (r.kind[s] === CLIENT && r.attach[s]! < 0) {
    return noRoute(from, to, "client_not_attached", `client '${from}' names no relay in advertise_relay`);
  }
  return undefined;
}

/**
 * The route from one record to another (docs/contract/routing.md §3).
 * Unknown names throw EdgeError `unknown_node` (404). A group as either end
 * gives `hops: null` with reason `group_endpoint`: use resolveRoutes for groups.
 */
export function resolveRoute(realm: Realm, from: string, to: string): Route {
  const r = impl(realm);
  const s = r.lookup(from);
  const t = r.lookup(to);
  const early = preCheck(r, s, t);
  if (early !== undefined) return early;
  // Rule 1: a direct dial is always the route (one hop is the fewest), no search needed.
  if (r.kind[s] === NODE && r.kind[t] === NODE && r.gatewayIndex(s, t) >= 0) {
    return { from, to, hops: [r.hop(s, t)] };
  }
  return r.limitedRoute(s, t) ?? routeVia(r, r.search(s, t), s, t);
}

/**
 * Like resolveRoute, but a group target gives one route per member that counts
 * (in node_list order): it exists, is not a group, and is in the group's
 * namespace when the group names one (countsAsMember).
 */
export function resolveRoutes(realm: Realm, from: string, to: string): Route[] {
  const r = impl(realm);
  r.lookup(from);
  const t = r.records[r.lookup(to)]!;
  if (t.type !== "group") return [resolveRoute(realm, from, to)];
  const out: Route[] = [];
  for (const m of t.node_list) {
    if (countsAsMember(t, r.get(m.node_name))) out.push(resolveRoute(realm, from, m.node_name));
  }
  return out;
}

/**
 * Every route from one node or client to every other non-group record, in
 * record order: the table an agent downloads. A group has none (invalid_input).
 * Routes to one namespace's records take at most `tableBytes` (§3.8).
 */
export function routeTable(realm: Realm, from: string): Route[] {
  const r = impl(realm);
  const s = r.lookup(from);
  if (r.kind[s] === GROUP) throw new EdgeError(400, "invalid_input", `'${from}' is a group: it has no route table`);
  const egress = r.closureOf[s]!;
  const out: Route[] = [];
  // Targets by ingress closure, so that each search is dropped as soon as its targets are done:
  // kept until the end, a table's searches held every closure at once (N² for a chain).
  const byIngress = new Map<number, number[]>();
  for (let t = 0; t < r.size; t++) {
    if (t === s || r.kind[t] === GROUP) continue;
    let early = preCheck(r, s, t);
    if (early === undefined && (r.limited[s] !== undefined || r.limited[t] !== undefined)) {
      // A direct dial needs no relays, so it stands whatever the bound says (rule 1).
      early =
        r.kind[s] === NODE && r.kind[t] === NODE && r.gatewayIndex(s, t) >= 0
          ? { from, to: r.records[t]!.name, hops: [r.hop(s, t)] }
          : r.limitedRoute(s, t);
    }
    if (early !== undefined) {
      out.push(early);
      continue;
    }
    const id = r.closureOf[t]!.id;
    let slots = byIngress.get(id);
    if (slots === undefined) {
      slots = [];
      byIngress.set(id, slots);
    }
    slots.push(out.length, t);
    out.push(NO_ROUTE_YET);
  }
  for (const slots of byIngress.values()) {
    const search = new Search(r, s, egress, r.closureOf[slots[1]!]!);
    for (let k = 0; k < slots.length; k += 2) out[slots[k]!] = routeVia(r, search, s, slots[k + 1]!);
  }
  boundTableBytes(r, out);
  return out;
}

/** A placeholder for a route computed later; never returned. */
const NO_ROUTE_YET: Route = Object.freeze({ from: "x", to: "x", hops: null });

/**
 * Replaces the routes to a namespace's records past `tableBytes` of UTF-8 JSON with `table_limit`,
 * keeping the routes to the records first by name (§3.8): the table's record order differs between
 * edge isolates, names do not. Fat relays on a long chain make one 40-byte record cost ~30 KB of
 * table, and a table an agent cannot read stops every relay that follows it.
 */
function boundTableBytes(r: RealmImpl, routes: Route[]): void {
  const limit = r.bounds.tableBytes;
  const spent = new Map<string | null, number[]>();
  const sizes = new Array<number>(routes.length).fill(0);
  let total = 0;
  for (let k = 0; k < routes.length; k++) {
    const route = routes[k]!;
    if (route.hops === null) continue;
    let size = utf8Length(JSON.stringify({ from: route.from, to: route.to, hops: [] })) + route.hops.length - 1;
    for (const hop of route.hops) size += r.hopSize(hop);
    sizes[k] = size;
    total += size;
    const ns = recordNamespace(r.get(route.to)!);
    let list = spent.get(ns);
    if (list === undefined) {
      list = [];
      spent.set(ns, list);
    }
    list.push(k);
  }
  if (total <= limit) return;
  for (const [ns, list] of spent) {
    let bytes = 0;
    for (const k of list) bytes += sizes[k]!;
    if (bytes <= limit) continue;
    list.sort((a, b) => (routes[a]!.to < routes[b]!.to ? -1 : 1));
    bytes = 0;
    let full = false;
    for (const k of list) {
      bytes += sizes[k]!;
      full ||= bytes > limit;
      if (!full) continue;
      const { from, to } = routes[k]!;
      routes[k] = noRoute(
        from,
        to,
        "table_limit",
        `routes to namespace ${ns === null ? "(none)" : `'${ns}'`} take more than ${limit} bytes of this table; ` +
          `'${to}' is named after those that fit`,
      );
    }
  }
}

/** The gateway `from` would use to dial `to`, or null (docs/contract/routing.md §1.2). Unknown names throw unknown_node. */
export function dialChoice(realm: Realm, from: string, to: string): DialChoice | null {
  const r = impl(realm);
  const u = r.lookup(from);
  const v = r.lookup(to);
  if (r.kind[u] !== NODE || r.kind[v] !== NODE || u === v) return null;
  return pickGateway(r.records[u]!, r.records[v]!, undefined, r.shared);
}

export function canDial(realm: Realm, from: string, to: string): boolean {
  const r = impl(realm);
  const u = r.lookup(from);
  const v = r.lookup(to);
  return r.kind[u] === NODE && r.kind[v] === NODE && r.gatewayIndex(u, v) >= 0;
}

/** The shared namespaces the realm was built with (null: every namespace; docs/contract/records.md §2.3). */
export function sharedNamespacesOf(realm: Realm): SharedNamespaces {
  return impl(realm).shared;
}

/** adv(X): the nodes X's advertise_relay selects (X itself excluded), in record order. */
export function advertisedRelays(realm: Realm, name: string): string[] {
  const r = impl(realm);
  const x = r.lookup(name);
  return [...r.adv[x]!].filter((j) => j !== x).map((j) => r.records[j]!.name);
}

/** egress(S): the relays S sends through (closure of advertise_relay), in record order. */
export function egressRelays(realm: Realm, name: string): string[] {
  const r = impl(realm);
  return [...r.closureOf[r.lookup(name)]!.members].map((j) => r.records[j]!.name);
}

/** ingress(T): the relays through which T can be reached. The same closure as egress, seen from the target. */
export const ingressRelays = egressRelays;

/** The relay a client is attached to (highest rendezvous weight among those it advertises), or undefined. */
export function attachmentRelay(realm: Realm, client: string): string | undefined {
  const r = impl(realm);
  const a = r.attach[r.lookup(client)]!;
  return a < 0 ? undefined : r.records[a]!.name;
}

/** Entries held by the dialer-by-target memo: in dense arrays (their full length) and in sparse maps. */
export function dialMemoEntriesForTest(realm: Realm): { dense: number; sparse: number } {
  const out = { dense: 0, sparse: 0 };
  for (const m of impl(realm).dialMemo) {
    if (m instanceof Int8Array) out.dense += m.length;
    else if (m !== undefined) out.sparse += m.size;
  }
  return out;
}

/** Closures the realm holds and their members in all: what a chain of advertise_relay selectors grows. */
export function closureStatsForTest(realm: Realm): { closures: number; members: number; limited: number } {
  const r = impl(realm);
  const seen = new Set<Closure>(r.closureOf);
  let members = 0;
  for (const c of seen) members += c.members.length;
  return { closures: seen.size, members, limited: r.limited.filter((x) => x !== undefined).length };
}

/**
 * What the realm's indexes give for an `advertise_relay` selector written in namespace `owner`: the
 * candidates it is priced by (§3.8) and the nodes it selects, as record indices. Tests only.
 */
export function relaySelectionForTest(
  realm: Realm,
  sel: Selector,
  owner: string | undefined,
): { candidates: readonly number[]; selected: number[] } {
  const r = impl(realm);
  return { candidates: r.candidates(sel, owner), selected: r.selectNodes(sel, owner) };
}

/** The RouteResolver view of a realm, for code (and the conformance suite) written against that interface. */
export function realmResolver(
  records: readonly HopwayRecord[],
  bounds: RealmBounds = {},
  shared: SharedNamespaces = null,
): RouteResolver {
  const realm = buildRealm(records, bounds, shared);
  return {
    resolveRoute: (from, to) => resolveRoute(realm, from, to),
    resolveRoutes: (from, to) => resolveRoutes(realm, from, to),
    routeTable: (from) => routeTable(realm, from),
  };
}
