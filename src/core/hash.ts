// Rendezvous (highest random weight) hashing for choosing between equal relays
// (docs/contract/routing.md §4).
// Pure integer arithmetic on UTF-16 code units with Math.imul, so workerd and
// Node.js (and any future port) compute bit-identical weights.

/** murmur3's 32-bit finaliser: full avalanche, so nearby inputs give unrelated outputs. */
function fmix32(x: number): number {
  let h = x | 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Two independent 32-bit hashes of a string (FNV-1a and a murmur-style multiply-xorshift). */
export function nameHash(text: string): [number, number] {
  let a = 0x811c9dc5;
  let b = 0x9747b28c;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  return [fmix32(a ^ text.length), fmix32(b)];
}

/**
 * The per-relay half of the weight, precomputable once per record. Kept
 * separate from the chooser half so that hash(a, b) != hash(b, a).
 */
export function relayHalf(relay: readonly [number, number]): [number, number] {
  return [fmix32(relay[0] + 0x9e3779b9), fmix32(relay[1] + 0x7f4a7c15)];
}

/** Weight from precomputed halves: a 53-bit non-negative integer (exact in a double). */
export function combineWeight(chooser: readonly [number, number], relay: readonly [number, number]): number {
  const lo = fmix32(chooser[0] ^ relay[0]);
  const hi = fmix32(chooser[1] ^ relay[1] ^ lo);
  return (hi >>> 11) * 4294967296 + lo;
}

/**
 * The rendezvous weight of `relay` for `chooser` (the source name for an egress
 * relay, the target name for an ingress relay). Higher wins. Deterministic,
 * platform-independent, 53 bits.
 */
export function rendezvousWeight(chooser: string, relay: string): number {
  return combineWeight(nameHash(chooser), relayHalf(nameHash(relay)));
}
