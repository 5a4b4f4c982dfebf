// Coarse timers of one fixed duration for what the relay arms per connection (the wait for a
// CONNECT head, a dial, a path over links, a refusal's linger), with no timer object per entry.
//
// The entries form an intrusive list, each entry its own node, rather than a Map: a Map that
// takes a set and a delete per connection is rehashed every few connections, and V8 keeps each
// table it replaces linked to its successor with its entries still in it. Once one such table
// has reached the old generation, every later table and everything their entries reach survive
// young-generation collections as if live, and are promoted, until the next full collection.
// Measured on the links bench, that was most of what the middle relay promoted per tunnel
// (docs/benchmarks/links.md, "What a relay promotes per tunnel").

/** An entry of a `Deadlines`: `expire` runs once its deadline passed, unless it was deleted first. */
export abstract class Deadline {
  /** The list it is in, while it is in one. */
  listedIn: Deadlines | undefined = undefined;
  /** When it expires (the list's clock). */
  dueAt = 0;
  prevDue: Deadline | undefined = undefined;
  nextDue: Deadline | undefined = undefined;
  abstract expire(): void;
}

/** An entry that runs a function. */
export class DeadlineCall extends Deadline {
  constructor(private readonly run: () => void) {
    super();
  }
  expire(): void {
    this.run();
  }
}

/**
 * Entries in insertion order, which is expiry order (one duration for all), and one unref'd
 * interval (1/8 of the duration, at least 5 ms, at most 1 s) that expires them from the front
 * while any are listed. Adding and deleting are O(1) and allocate nothing.
 */
export class Deadlines {
  private head: Deadline | undefined = undefined;
  private tail: Deadline | undefined = undefined;
  private count = 0;
  private readonly tick: number;
  private timer: NodeJS.Timeout | undefined = undefined;

  constructor(
    readonly ms: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tick = Math.max(5, Math.min(1000, Math.ceil(ms / 8)));
  }

  get size(): number {
    return this.count;
  }

  /** Lists `e` to expire `ms` from now; one already listed (here or in another list) moves to the end. */
  add(e: Deadline): void {
    if (e.listedIn !== undefined) e.listedIn.delete(e);
    e.listedIn = this;
    e.dueAt = this.now() + this.ms;
    e.prevDue = this.tail;
    if (this.tail === undefined) this.head = e;
    else this.tail.nextDue = e;
    this.tail = e;
    this.count++;
    if (this.timer === undefined) {
      this.timer = setInterval(this.sweep, this.tick);
      this.timer.unref();
    }
  }

  /** Unlists `e`; nothing when it is not in this list. */
  delete(e: Deadline): void {
    if (e.listedIn !== this) return;
    const { prevDue: prev, nextDue: next } = e;
    if (prev === undefined) this.head = next;
    else prev.nextDue = next;
    if (next === undefined) this.tail = prev;
    else next.prevDue = prev;
    // An unlisted entry points at nothing: a neighbour that outlives it is not kept by it.
    e.prevDue = undefined;
    e.nextDue = undefined;
    e.listedIn = undefined;
    this.count--;
  }

  private readonly sweep = (): void => {
    const now = this.now();
    // `expire` may delete other entries: the front is read again each time.
    for (let e = this.head; e !== undefined && e.dueAt <= now; e = this.head) {
      this.delete(e);
      e.expire();
    }
    if (this.count === 0 && this.timer !== undefined) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  };
}
