// Collections for what the relay adds and removes once per connection or link stream.
//
// A JavaScript Map or Set is a poor fit there. Its hash table keeps deleted entries until the
// table fills, and then V8 replaces the table. The replaced table stays linked to its
// successor, with its entries still in it, for any iterator still walking it. Under the relay's
// churn that happens every few connections. Once one replaced table is in the old generation,
// it is dead but not yet collected. Through the link, it still reaches every later table and
// every entry they held. Young-generation collections take that as live, so tunnels that ended
// long ago are promoted with everything they reach, until the next full collection. On the links
// bench that was most of what the middle relay promoted (docs/benchmarks/links.md, "What a relay
// promotes per tunnel").
//
// The two collections here never link an old store to a newer one. A store they replace is
// plain garbage.

/**
 * A Map<K, V> on a null-prototype object's own properties (numeric keys its elements), which V8
 * keeps in a dictionary under churn. `undefined` is not a value it holds.
 */
export class KeyMap<K extends string | number, V> {
  private byKey: Record<K, V> = Object.create(null) as Record<K, V>;
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(k: K): V | undefined {
    return this.byKey[k];
  }

  set(k: K, v: V): this {
    if (this.byKey[k] === undefined) this.count++;
    this.byKey[k] = v;
    return this;
  }

  delete(k: K): boolean {
    if (this.byKey[k] === undefined) return false;
    delete this.byKey[k];
    this.count--;
    // Empty again: a fresh store, so one that grew large under a burst is not kept.
    if (this.count === 0) this.byKey = Object.create(null) as Record<K, V>;
    return true;
  }

  /** The members now, as an array the caller may change the map under. */
  values(): V[] {
    return Object.values(this.byKey);
  }
}

/**
 * A set of objects, each holding its own place in a dense array (under a symbol of this set):
 * add, delete and has are O(1), and a delete moves the last member into the gap, so the order is
 * not insertion order. Iteration walks a copy, so the loop may add and delete.
 */
export class IndexedSet<T extends object> implements Iterable<T> {
  private readonly members: T[] = [];
  private readonly slot = Symbol("IndexedSet.slot");

  get size(): number {
    return this.members.length;
  }

  private at(x: T): number {
    const i = (x as Record<symbol, number | undefined>)[this.slot];
    return i !== undefined && i >= 0 && this.members[i] === x ? i : -1;
  }

  has(x: T): boolean {
    return this.at(x) >= 0;
  }

  add(x: T): this {
    if (this.at(x) >= 0) return this;
    (x as Record<symbol, number>)[this.slot] = this.members.length;
    this.members.push(x);
    return this;
  }

  delete(x: T): boolean {
    const i = this.at(x);
    if (i < 0) return false;
    const last = this.members.pop() as T;
    if (last !== x) {
      this.members[i] = last;
      (last as Record<symbol, number>)[this.slot] = i;
    }
    // -1 rather than `delete`: removing a property would turn the object into a slow dictionary.
    (x as Record<symbol, number>)[this.slot] = -1;
    return true;
  }

  clear(): void {
    for (const x of this.members) (x as Record<symbol, number>)[this.slot] = -1;
    this.members.length = 0;
  }

  [Symbol.iterator](): Iterator<T> {
    const copy = this.members.slice();
    let i = 0;
    return {
      next: (): IteratorResult<T> => {
        // A member deleted while the loop runs is skipped, as a Set's iterator does.
        while (i < copy.length) {
          const x = copy[i++] as T;
          if (this.has(x)) return { value: x, done: false };
        }
        return { value: undefined, done: true };
      },
    };
  }
}
