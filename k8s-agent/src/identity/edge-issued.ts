// The relay's identity issued by the realm's edge (docs/identity.md): a P-256
// key made here and kept in data_dir (0600, never sent anywhere), a leaf the
// edge signs for this relay's node record, renewed at about two thirds of its
// life, and the trust bundle the edge publishes with route tables and record
// changes. While the edge is unreachable the current certificate stays in use
// and the request is retried with capped, jittered backoff.
import { createPublicKey, generateKeyPairSync, X509Certificate } from "node:crypto";
import { link, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { IdentitySource, TlsMaterial } from "@hopway/core/identity";
import { CertificateAnswerSchema, TrustBundleSchema } from "@hopway/core/wire";
import { z } from "zod";
import { readJson, statusError } from "../edge/body.ts";
import { backoffDelay, type Clock, realClock } from "../edge/client.ts";
import type { Logger } from "../log.ts";
import { checkChain, IdentityMaterialError } from "./pem.ts";

/** Closed set of renewal outcomes (metric label values). */
export const RENEWAL_RESULTS = ["success", "refused", "unreachable", "invalid"] as const;
export type RenewalResult = (typeof RENEWAL_RESULTS)[number];

/** A certificate answer is a few KiB; anything near this is not one. */
const MAX_ANSWER_BYTES = 256 * 1024;
/** The longest delay a Node timer takes as given. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** More CA certificates than this in a bundle is not a rotation, it is garbage. */
const MAX_BUNDLE = 16;

/** What this agent keeps of an issued certificate in data_dir (its own file, not an edge answer). */
const PersistedSchema = z.object({
  chain: z.string(),
  trust_bundle: TrustBundleSchema,
});

export interface EdgeIssuedOptions {
  url: string;
  realm: string;
  token: string;
  /** The relay's node record name: the certificate names spiffe://<realm>/relay/<node>. */
  node: string;
  /** Holds identity/relay.key (0600) and identity/certificate.json. */
  dataDir: string;
  fetch?: typeof fetch;
  clock?: Clock;
  random?: () => number;
  log?: Logger;
  /** First retry delay and cap of the backoff (defaults 1 s and 5 min). */
  backoffBaseMs?: number;
  backoffCapMs?: number;
  onRenewal?: (result: RenewalResult) => void;
}

interface Current {
  chain: string;
  trustBundle: string[];
  notBefore: number;
  notAfter: number;
}

export class EdgeIssuedIdentity implements IdentitySource {
  private readonly o: EdgeIssuedOptions;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly fetchFn: typeof fetch;
  private readonly listeners = new Set<() => void>();
  private readonly dir: string;
  private key: string | undefined;
  private publicSpki: Buffer | undefined;
  private current: Current | undefined;
  private timer: unknown;
  private expiryTimer: unknown;
  private attempt = 0;
  private stopped = false;
  private inFlight: Promise<boolean> | undefined;
  private persistChain: Promise<void> = Promise.resolve();
  private readonly abort = new AbortController();

  constructor(opts: EdgeIssuedOptions) {
    this.o = opts;
    this.clock = opts.clock ?? realClock;
    this.random = opts.random ?? Math.random;
    this.fetchFn = opts.fetch ?? fetch;
    this.dir = join(opts.dataDir, "identity");
  }

  /**
   * Loads (or makes) the key and any persisted certificate, then schedules the
   * first request: now when there is no usable certificate, else at its renewal
   * time. Does not wait for the edge.
   */
  async start(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    this.key = await this.loadOrCreateKey();
    this.publicSpki = createPublicKey(this.key).export({ type: "spki", format: "der" });
    await this.loadPersisted();
    this.schedule(this.current === undefined ? 0 : this.renewDelay(this.current));
    this.armExpiry();
  }

  stop(): void {
    this.stopped = true;
    this.abort.abort();
    this.clock.clearTimeout(this.timer);
    this.clock.clearTimeout(this.expiryTimer);
  }

  /** Waits for pending disk writes (tests, shutdown). */
  async flush(): Promise<void> {
    await this.persistChain;
  }

  /**
   * The key and chain while the leaf is valid. After notAfter this is undefined:
   * no new link can be made or accepted with an expired certificate, but links
   * already established are not torn down (TLS checks validity at the handshake).
   */
  material(): TlsMaterial | undefined {
    const c = this.current;
    if (c === undefined || this.key === undefined || this.clock.now() >= c.notAfter) return undefined;
    return { key: this.key, certChain: c.chain, trustBundle: c.trustBundle, notAfter: c.notAfter };
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get notAfter(): number | undefined {
    return this.current?.notAfter;
  }

  get notBefore(): number | undefined {
    return this.current?.notBefore;
  }

  /**
   * The trust bundle the edge sent with a route table or a records sync answer.
   * An empty bundle is ignored: it only means the realm had no CA yet when the
   * answer was made, and this relay holds a certificate of one.
   */
  updateTrustBundle(bundle: readonly string[]): void {
    const c = this.current;
    if (c === undefined || bundle.length === 0 || bundle.length > MAX_BUNDLE) return;
    if (bundle.length === c.trustBundle.length && bundle.every((pem, i) => pem === c.trustBundle[i])) return;
    const next = [...bundle];
    try {
      checkChain(this.o.realm, this.o.node, this.key!, c.chain, next);
    } catch (err) {
      // A bundle without our CA means our CA was retired: renew now rather than be refused by peers.
      this.o.log?.warn("trust bundle no longer covers this relay's certificate; renewing", { error: String(err) });
      this.current = { ...c, trustBundle: next };
      this.persist();
      this.emit();
      this.schedule(0);
      return;
    }
    this.current = { ...c, trustBundle: next };
    this.persist();
    this.emit();
  }

  /** The certificate request under way (from a timer or renewNow), if any. */
  get inFlightRequest(): Promise<boolean> | undefined {
    return this.inFlight;
  }

  /** Requests a certificate now (shared with one already under way); true on success. */
  renewNow(): Promise<boolean> {
    this.inFlight ??= this.request().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  // ---- internals -------------------------------------------------------------

  private emit(): void {
    for (const l of [...this.listeners]) {
      try {
        l();
      } catch (err) {
        this.o.log?.error("identity change listener failed", { error: String(err) });
      }
    }
  }

  private renewDelay(c: Current): number {
    // About two thirds of the life (0.6 … 0.7), so a fleet issued together does not renew in lockstep.
    const at = c.notBefore + (c.notAfter - c.notBefore) * (0.6 + 0.1 * this.random());
    return Math.max(0, at - this.clock.now());
  }

  /**
   * Node fires a timer of more than 2^31-1 ms (24.8 days) at once, and a
   * 30-day certificate has deadlines that far out: wait in steps instead.
   */
  private later(at: number, fn: () => void, set: (handle: unknown) => void): void {
    const ms = Math.max(0, at - this.clock.now());
    if (ms <= MAX_TIMER_MS) {
      set(this.clock.setTimeout(fn, ms));
      return;
    }
    set(this.clock.setTimeout(() => this.later(at, fn, set), MAX_TIMER_MS));
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.clock.clearTimeout(this.timer);
    this.later(
      this.clock.now() + ms,
      () => void this.renewNow(),
      (h) => {
        this.timer = h;
      },
    );
  }

  private armExpiry(): void {
    this.clock.clearTimeout(this.expiryTimer);
    const c = this.current;
    if (c === undefined || this.stopped) return;
    const ms = c.notAfter - this.clock.now();
    if (ms <= 0) return;
    // Listeners learn that material() went away when the leaf expires unrenewed.
    this.later(
      c.notAfter,
      () => {
        this.o.log?.error("relay certificate expired; no new links until the edge issues one");
        this.emit();
      },
      (h) => {
        this.expiryTimer = h;
      },
    );
  }

  private async request(): Promise<boolean> {
    if (this.stopped || this.key === undefined || this.publicSpki === undefined) return false;
    const base = `${this.o.url.replace(/\/+$/, "")}/v1/realms/${encodeURIComponent(this.o.realm)}`;
    let result: RenewalResult;
    let detail = "";
    // The edge has no record of this node yet: at start the first lease write may still be on its way.
    let unregistered = false;
    try {
      const res = await this.fetchFn(`${base}/relays/${encodeURIComponent(this.o.node)}/certificate`, {
        method: "POST",
        signal: AbortSignal.any([this.abort.signal, AbortSignal.timeout(15_000)]),
        headers: { authorization: `Bearer ${this.o.token}`, "content-type": "application/json" },
        body: JSON.stringify({
          public_key: createPublicKey(this.key).export({ type: "spki", format: "pem" }).toString(),
        }),
      });
      if (!res.ok) {
        result = "refused";
        const err = await statusError(res);
        detail = err.message;
        unregistered = err.status === 404 && err.edgeCode === "unknown_node";
      } else {
        const answer = CertificateAnswerSchema.parse(await readJson(res, MAX_ANSWER_BYTES));
        const chain = answer.chain.join("");
        const checked = checkChain(this.o.realm, this.o.node, this.key, chain, answer.trust_bundle);
        if (
          !new X509Certificate(answer.certificate).publicKey
            .export({ type: "spki", format: "der" })
            .equals(this.publicSpki)
        ) {
          throw new IdentityMaterialError("the certificate is not for this relay's key");
        }
        this.current = {
          chain,
          trustBundle: answer.trust_bundle,
          notBefore: checked.notBefore,
          notAfter: checked.notAfter,
        };
        result = "success";
      }
    } catch (err) {
      if (this.stopped) return false;
      result =
        err instanceof IdentityMaterialError || err instanceof z.ZodError || err instanceof SyntaxError
          ? "invalid"
          : "unreachable";
      detail = err instanceof Error ? err.message : String(err);
    }
    if (this.stopped) return false;
    this.o.onRenewal?.(result);
    if (result === "success") {
      this.attempt = 0;
      const c = this.current!;
      this.o.log?.info("relay certificate issued", {
        not_after: new Date(c.notAfter).toISOString(),
        bundle: c.trustBundle.length,
      });
      this.persist();
      this.armExpiry();
      this.schedule(this.renewDelay(c));
      this.emit();
      return true;
    }
    const delay = backoffDelay(
      this.attempt++,
      this.o.backoffBaseMs ?? 1_000,
      this.o.backoffCapMs ?? 300_000,
      this.random,
    );
    const fields = {
      result,
      error: detail,
      retry_ms: delay,
      current_not_after: this.current === undefined ? null : new Date(this.current.notAfter).toISOString(),
    };
    // Expected while the node's record registers, so no warning; the lease loop says if it is refused.
    if (unregistered && this.current === undefined) {
      this.o.log?.info("relay certificate not issued yet: this node's record is not registered", fields);
    } else if (this.current === undefined) {
      this.o.log?.warn("relay certificate request failed; no certificate yet", fields);
    } else this.o.log?.warn("relay certificate request failed; keeping the current certificate", fields);
    this.schedule(delay);
    return false;
  }

  /**
   * The relay key, made once: written to a temporary file with mode 0600 and
   * hard-linked into place, which fails if another start won the race, so the
   * key on disk is never half-written or replaced.
   */
  private async loadOrCreateKey(): Promise<string> {
    const file = join(this.dir, "relay.key");
    try {
      return await readFile(file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    const tmp = `${file}.${process.pid}.${Math.floor(this.random() * 1e9)}.tmp`;
    await writeFile(tmp, pem, { mode: 0o600, flag: "wx" });
    try {
      await link(tmp, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    } finally {
      await rm(tmp, { force: true });
    }
    return await readFile(file, "utf8");
  }

  private async loadPersisted(): Promise<void> {
    let text: string;
    try {
      text = await readFile(join(this.dir, "certificate.json"), "utf8");
    } catch {
      return;
    }
    try {
      const p = PersistedSchema.parse(JSON.parse(text));
      const checked = checkChain(this.o.realm, this.o.node, this.key!, p.chain, p.trust_bundle);
      if (checked.notAfter <= this.clock.now()) return;
      this.current = {
        chain: p.chain,
        trustBundle: p.trust_bundle,
        notBefore: checked.notBefore,
        notAfter: checked.notAfter,
      };
      this.o.log?.info("relay certificate loaded from disk", { not_after: new Date(checked.notAfter).toISOString() });
      // Whoever already follows this source (the relay's link server, made before start) takes it now.
      this.emit();
    } catch (err) {
      this.o.log?.warn("persisted relay certificate unusable; asking the edge", { error: String(err) });
    }
  }

  private persist(): void {
    const c = this.current;
    if (c === undefined) return;
    const body = JSON.stringify({ chain: c.chain, trust_bundle: c.trustBundle });
    const file = join(this.dir, "certificate.json");
    // Serialised and temp+rename: a crash leaves the previous good file, never a torn one.
    this.persistChain = this.persistChain.then(async () => {
      try {
        const tmp = `${file}.${process.pid}.${Math.floor(this.random() * 1e9)}.tmp`;
        await writeFile(tmp, body, { mode: 0o600 });
        await rename(tmp, file);
      } catch (err) {
        this.o.log?.warn("could not persist the relay certificate", { error: String(err) });
      }
    });
  }
}
