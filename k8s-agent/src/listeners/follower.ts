// Follows the realm's listener declarations (docs/listeners.md) by long-poll
// with ETag, keeps the last good list in data_dir so a restarted agent opens
// its listeners before the edge is back, and hands every change to the agent.
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ListenersAnswerSchema, type NamedListenerDeclaration } from "@hopway/core/listener";
import { HttpStatusError, readJson, statusError } from "../edge/body.ts";
import { backoffDelay } from "../edge/client.ts";
import type { Logger } from "../log.ts";

export interface ListenerFollowerOptions {
  url: string;
  realm: string;
  token: string;
  dataDir?: string | undefined;
  /** Long-poll length (the edge caps it at 60). */
  waitSeconds?: number;
  onChange: (declarations: NamedListenerDeclaration[]) => void | Promise<void>;
  log?: Logger;
  fetch?: typeof fetch;
  random?: () => number;
  backoffBaseMs?: number;
  backoffCapMs?: number;
}

const FILE = "listeners.json";

export class ListenerFollower {
  private etag: string | undefined;
  private stopped = false;
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private readonly fetchFn: typeof fetch;

  constructor(private readonly o: ListenerFollowerOptions) {
    this.fetchFn = o.fetch ?? fetch;
  }

  /** Applies the persisted list (if any), then follows the edge in the background. */
  async start(): Promise<void> {
    const dir = this.o.dataDir;
    if (dir !== undefined) {
      try {
        const saved = ListenersAnswerSchema.parse(JSON.parse(await readFile(join(dir, FILE), "utf8")));
        await this.o.onChange(saved.listeners);
        this.o.log?.info("listener declarations loaded from disk", { listeners: saved.listeners.length });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
          this.o.log?.warn("persisted listener declarations unreadable; ignoring them", { error: String(err) });
        }
      }
    }
    this.loop = this.follow();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    this.wake?.();
    await this.loop;
  }

  private async follow(): Promise<void> {
    let attempt = 0;
    // A refused token is said once (the edge client says what to do about it), not as an outage.
    let refusedSaid = false;
    while (!this.stopped) {
      try {
        await this.pollOnce();
        attempt = 0;
        refusedSaid = false;
      } catch (err) {
        if (this.stopped) return;
        const refused = err instanceof HttpStatusError && (err.status === 401 || err.status === 403);
        // A 429 is the token's budget at the edge, which the edge client says; the pacer already waited.
        const throttled = err instanceof HttpStatusError && err.status === 429;
        if (!refused && !throttled) this.o.log?.warn("listener declarations: edge unreachable", { error: String(err) });
        else if (!refusedSaid) {
          this.o.log?.warn("listener declarations: the edge refuses this agent's token; the last ones stay", {
            status: err.status,
          });
          refusedSaid = true;
        }
        await this.sleep(
          backoffDelay(
            attempt++,
            this.o.backoffBaseMs ?? 500,
            this.o.backoffCapMs ?? 30_000,
            this.o.random ?? Math.random,
          ),
        );
      }
    }
  }

  private async pollOnce(): Promise<void> {
    const wait = this.etag === undefined ? 0 : (this.o.waitSeconds ?? 30);
    const base = `${this.o.url.replace(/\/+$/, "")}/v1/realms/${encodeURIComponent(this.o.realm)}`;
    const res = await this.fetchFn(`${base}/listeners${wait > 0 ? `?wait=${wait}` : ""}`, {
      headers: {
        authorization: `Bearer ${this.o.token}`,
        ...(this.etag !== undefined ? { "if-none-match": this.etag } : {}),
      },
      signal: AbortSignal.any([this.abort.signal, AbortSignal.timeout((wait + 15) * 1000)]),
    });
    if (res.status === 304) {
      await res.body?.cancel();
      return;
    }
    if (!res.ok) throw await statusError(res);
    const answer = ListenersAnswerSchema.parse(await readJson(res));
    this.etag = res.headers.get("etag") ?? undefined;
    await this.o.onChange(answer.listeners);
    await this.persist(answer);
  }

  private async persist(answer: unknown): Promise<void> {
    const dir = this.o.dataDir;
    if (dir === undefined) return;
    try {
      await mkdir(dir, { recursive: true });
      const file = join(dir, FILE);
      const tmp = `${file}.${process.pid}.tmp`;
      await writeFile(tmp, JSON.stringify(answer), { mode: 0o600 });
      await rename(tmp, file);
    } catch (err) {
      this.o.log?.warn("could not persist listener declarations", { error: String(err) });
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      timer.unref();
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }
}
