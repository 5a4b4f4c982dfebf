// Bring-your-own PKI (docs/identity.md): the relay's identity from files an
// external issuer such as cert-manager writes into a Secret volume: tls.crt
// (leaf first, then intermediates), tls.key and ca.crt (the trust bundle).
// Kubernetes updates a Secret volume by swapping a symlink, so the directory is
// polled by content rather than watched per file; a reload that fails
// validation keeps the previous material and logs an error.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { IdentitySource, TlsMaterial } from "@hopway/core/identity";
import type { Clock } from "../edge/client.ts";
import { realClock } from "../edge/client.ts";
import type { Logger } from "../log.ts";
import type { RenewalResult } from "./edge-issued.ts";
import { checkChain, splitPemCertificates } from "./pem.ts";

export const FILE_NAMES = { chain: "tls.crt", key: "tls.key", ca: "ca.crt" } as const;
/** Each file is a few KiB; a larger one is not a certificate Secret. */
const MAX_FILE_BYTES = 1024 * 1024;

export interface FilesIdentityOptions {
  dir: string;
  realm: string;
  node: string;
  /** How often the directory is read for changes (default 5 s). */
  pollMs?: number;
  clock?: Clock;
  log?: Logger;
  /** Each reload's outcome: success, or invalid (kept the previous material). */
  onReload?: (result: RenewalResult) => void;
}

export class FilesIdentity implements IdentitySource {
  private readonly o: FilesIdentityOptions;
  private readonly clock: Clock;
  private readonly listeners = new Set<() => void>();
  private current: TlsMaterial | undefined;
  private currentNotBefore: number | undefined;
  private digest: string | undefined;
  private timer: unknown;
  private stopped = false;
  private reloading: Promise<boolean> | undefined;
  /** The last reload's error, undefined after a good one. */
  lastError: string | undefined;

  constructor(opts: FilesIdentityOptions) {
    this.o = opts;
    this.clock = opts.clock ?? realClock;
  }

  /** Reads the directory once (logging, not throwing, when it is not usable yet) and starts polling. */
  async start(): Promise<void> {
    await this.reload();
    this.arm();
  }

  stop(): void {
    this.stopped = true;
    this.clock.clearTimeout(this.timer);
  }

  /** The material while the leaf is valid; undefined before a valid set was read or after it expired. */
  material(): TlsMaterial | undefined {
    const c = this.current;
    return c === undefined || this.clock.now() >= c.notAfter ? undefined : c;
  }

  /** The loaded leaf's expiry, also after it passed (for the expiry metric). */
  get notAfter(): number | undefined {
    return this.current?.notAfter;
  }

  get notBefore(): number | undefined {
    return this.currentNotBefore;
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private arm(): void {
    if (this.stopped) return;
    this.timer = this.clock.setTimeout(() => {
      void this.reload().finally(() => this.arm());
    }, this.o.pollMs ?? 5_000);
  }

  private async read(name: string): Promise<string> {
    const text = await readFile(join(this.o.dir, name), "utf8");
    if (text.length > MAX_FILE_BYTES) throw new Error(`${name} is larger than ${MAX_FILE_BYTES} bytes`);
    return text;
  }

  /**
   * Reads the three files; applies them when they changed and are valid. True
   * when new material was applied. Concurrent calls share one read.
   */
  reload(): Promise<boolean> {
    this.reloading ??= this.readAndApply().finally(() => {
      this.reloading = undefined;
    });
    return this.reloading;
  }

  private async readAndApply(): Promise<boolean> {
    let chain: string;
    let key: string;
    let ca: string;
    try {
      [chain, key, ca] = await Promise.all([
        this.read(FILE_NAMES.chain),
        this.read(FILE_NAMES.key),
        this.read(FILE_NAMES.ca),
      ]);
    } catch (err) {
      return this.fail(`cannot read ${this.o.dir}: ${err instanceof Error ? err.message : String(err)}`, undefined);
    }
    const digest = createHash("sha256").update(chain).update("\0").update(key).update("\0").update(ca).digest("hex");
    if (digest === this.digest) return false;
    try {
      const trustBundle = splitPemCertificates(ca);
      const checked = checkChain(this.o.realm, this.o.node, key, chain, trustBundle);
      if (checked.notAfter <= this.clock.now())
        throw new Error(`the certificate expired at ${new Date(checked.notAfter).toISOString()}`);
      this.current = { key, certChain: chain, trustBundle, notAfter: checked.notAfter };
      this.currentNotBefore = checked.notBefore;
      this.digest = digest;
      this.lastError = undefined;
      this.o.log?.info("relay certificate loaded from files", {
        dir: this.o.dir,
        not_after: new Date(checked.notAfter).toISOString(),
        bundle: trustBundle.length,
      });
      this.o.onReload?.("success");
      for (const l of [...this.listeners]) l();
      return true;
    } catch (err) {
      return this.fail(err instanceof Error ? err.message : String(err), digest);
    }
  }

  private fail(message: string, digest: string | undefined): false {
    // One log line per bad content, not one per poll: the digest marks it as seen.
    const repeated = digest !== undefined && digest === this.digest;
    if (digest !== undefined) this.digest = digest;
    if (!repeated && message !== this.lastError) {
      this.o.log?.error("relay certificate files rejected; keeping the previous ones", {
        dir: this.o.dir,
        error: message,
        kept: this.current !== undefined,
      });
      this.o.onReload?.("invalid");
    }
    this.lastError = message;
    return false;
  }
}
