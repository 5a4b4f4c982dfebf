// The agent's copy of group memberships, for key-ownership look-ups that work
// while the edge is down. Draining and holds_state change with heartbeats,
// which do not move the realm version (so the route table's long-poll does not
// see them): each group someone asked about is polled with If-None-Match,
// every `pollMs`, and the last good membership of each is kept on disk next to
// the route table, so a restarted agent answers before the edge is back.
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type Membership, MembershipSchema, OwnershipIndex } from "@hopway/core/ownership";
import { z } from "zod";
import type { Logger } from "../log.ts";
import { DEFAULT_EDGE_LIMITS, type EdgeLimiterOptions, ExpiringCache, TokenBucket } from "./edge-limiter.ts";

export interface MembershipFollowerOptions {
  url: string;
  realm: string;
  token: string;
  dataDir?: string | undefined;
  /** How often a followed group is re-read (default 2 s, env HOPWAY_OWNERSHIP_POLL_MS). */
  pollMs?: number;
  /** Longest wait for a group not seen before (a CONNECT or look-up waits for it once). */
  firstFetchTimeoutMs?: number;
  /** Groups followed at most (each costs one small request per poll). */
  maxGroups?: number;
  /** Bounds on first fetches towards the edge (edge-limiter.ts); defaults DEFAULT_EDGE_LIMITS. */
  edgeLimits?: Partial<EdgeLimiterOptions>;
  fetch?: typeof fetch;
  log?: Logger;
}

export interface GroupView {
  membership: Membership;
  index: OwnershipIndex;
  /** When the edge last confirmed it (ms since epoch); 0 when loaded from disk and not confirmed since. */
  confirmedAt: number;
  source: "edge" | "disk";
}

export type GroupLookup =
  | { ok: true; view: GroupView }
  | {
      ok: false;
      status: 400 | 404 | 503;
      code: "invalid_input" | "unknown_node" | "internal" | "over_capacity";
      message: string;
    };

const PersistedSchema = z.object({ groups: z.array(MembershipSchema) });

export class MembershipFollower {
  private readonly o: MembershipFollowerOptions;
  private readonly fetchFn: typeof fetch;
  private readonly views = new Map<string, GroupView>();
  private readonly etags = new Map<string, string>();
  private readonly pending = new Map<string, Promise<GroupLookup>>();
  /**
   * Groups followed, least recently asked about first (a look-up moves its group to the end): past
   * maxGroups the first one makes room. Otherwise whoever asks about maxGroups groups first (any
   * pod can, with key-affine CONNECTs) would keep every later group unheld for good, each look-up
   * of it costing an edge request and the shared rate.
   */
  private readonly followed = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  private stopped = false;
  private readonly abort = new AbortController();
  private persistChain: Promise<void> = Promise.resolve();
  private readonly limits: EdgeLimiterOptions;
  private readonly bucket: TokenBucket;
  /** Groups the edge just said are missing (or failed on): answered from here until they expire. */
  private readonly negative: ExpiringCache<GroupLookup>;

  constructor(opts: MembershipFollowerOptions) {
    this.o = opts;
    this.fetchFn = opts.fetch ?? fetch;
    this.limits = { ...DEFAULT_EDGE_LIMITS, ...opts.edgeLimits };
    const now = this.limits.now ?? (() => performance.now());
    this.bucket = new TokenBucket(this.limits.ratePerSecond, this.limits.burst, now);
    this.negative = new ExpiringCache(this.limits.maxNegative ?? 10_000, now);
  }

  private get pollMs(): number {
    return this.o.pollMs ?? (Number(process.env.HOPWAY_OWNERSHIP_POLL_MS) || 2_000);
  }

  private url(group: string): string {
    const base = `${this.o.url.replace(/\/+$/, "")}/v1/realms/${encodeURIComponent(this.o.realm)}`;
    return `${base}/groups/${encodeURIComponent(group)}/membership`;
  }

  /** Loads the persisted memberships and starts polling. */
  async start(): Promise<void> {
    const dir = this.o.dataDir;
    if (dir) {
      try {
        const raw = PersistedSchema.parse(JSON.parse(await readFile(join(dir, "ownership.json"), "utf8")));
        for (const m of raw.groups) {
          this.views.set(m.group, {
            membership: m,
            index: new OwnershipIndex(m.members),
            confirmedAt: 0,
            source: "disk",
          });
          this.followed.add(m.group);
        }
        if (raw.groups.length > 0)
          this.o.log?.info("group memberships loaded from disk", { groups: raw.groups.length });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
          this.o.log?.warn("persisted group memberships unreadable; ignoring them", { error: String(err) });
        }
      }
    }
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    if (this.timer) clearTimeout(this.timer);
    await this.persistChain;
  }

  /** Groups currently held. */
  get groups(): string[] {
    return [...this.views.keys()].sort();
  }

  /**
   * The membership of a group: from memory when held (the poll keeps it
   * current), otherwise fetched once from the edge and followed from then on.
   */
  async lookup(group: string): Promise<GroupLookup> {
    const held = this.views.get(group);
    if (held !== undefined) {
      this.followed.delete(group);
      this.followed.add(group);
      return { ok: true, view: held };
    }
    const missing = this.negative.get(group);
    if (missing !== undefined) return missing;
    const inflight = this.pending.get(group);
    if (inflight !== undefined) return inflight;
    if (!this.bucket.take()) {
      return {
        ok: false,
        status: 503,
        code: "over_capacity",
        message: `group '${group}' not held here and this agent's look-ups towards the edge are over their rate`,
      };
    }
    const p = this.fetchGroup(group, this.o.firstFetchTimeoutMs ?? 3_000, true)
      .then((r) => {
        if (!r.ok) this.negative.set(group, r, r.status === 503 ? this.limits.errorTtlMs : this.limits.negativeTtlMs);
        return r;
      })
      .finally(() => this.pending.delete(group));
    this.pending.set(group, p);
    return p;
  }

  /** Never rejects: a failure answers from the copy held (or says why there is none). */
  /** `follow`: a look-up's first fetch, which starts following the group; a poll only refreshes. */
  private async fetchGroup(group: string, timeoutMs: number, follow = false): Promise<GroupLookup> {
    try {
      return await this.fetchGroupOnce(group, timeoutMs, follow);
    } catch (err) {
      // The body can fail after the head arrived (timeout, reset): same as an unreachable edge.
      const held = this.views.get(group);
      if (held) return { ok: true, view: held };
      return { ok: false, status: 503, code: "internal", message: `group '${group}': ${String(err)}` };
    }
  }

  private async fetchGroupOnce(group: string, timeoutMs: number, follow: boolean): Promise<GroupLookup> {
    let res: Response;
    try {
      const etag = this.etags.get(group);
      res = await this.fetchFn(this.url(group), {
        headers: {
          authorization: `Bearer ${this.o.token}`,
          ...(etag !== undefined && this.views.has(group) ? { "if-none-match": etag } : {}),
        },
        signal: AbortSignal.any([this.abort.signal, AbortSignal.timeout(timeoutMs)]),
      });
    } catch (err) {
      const held = this.views.get(group);
      if (held) return { ok: true, view: held };
      return {
        ok: false,
        status: 503,
        code: "internal",
        message: `group '${group}' not known here and the edge is unreachable (${String(err)})`,
      };
    }
    const held = this.views.get(group);
    if (res.status === 304 && held !== undefined) {
      await res.body?.cancel();
      held.confirmedAt = Date.now();
      return { ok: true, view: held };
    }
    if (res.status === 404) {
      await res.body?.cancel();
      // The group was removed: forget it, so nothing is routed on a stale member list.
      if (this.views.delete(group)) this.persist();
      this.followed.delete(group);
      return { ok: false, status: 404, code: "unknown_node", message: `no group named '${group}' in this realm` };
    }
    if (res.status === 400) {
      await res.body?.cancel();
      return { ok: false, status: 400, code: "invalid_input", message: `'${group}' is not a group` };
    }
    if (!res.ok) {
      const text = await res.text();
      if (held) return { ok: true, view: held };
      return {
        ok: false,
        status: 503,
        code: "internal",
        message: `edge answered ${res.status}: ${text.slice(0, 200)}`,
      };
    }
    const parsed = MembershipSchema.safeParse(await res.json());
    if (!parsed.success) {
      if (held) return { ok: true, view: held };
      return { ok: false, status: 503, code: "internal", message: "malformed membership from the edge" };
    }
    const m = parsed.data;
    const view: GroupView = {
      membership: m,
      index: new OwnershipIndex(m.members),
      confirmedAt: Date.now(),
      source: "edge",
    };
    const changed = held?.membership.epoch !== m.epoch;
    // A poll that was under way when its group made room for another must not follow it again.
    if (!this.followed.has(group) && !follow) return { ok: true, view };
    if (!this.followed.has(group) && this.followed.size >= (this.o.maxGroups ?? 64)) {
      // Full: the group asked about least recently makes room (the next look-up of it fetches it again).
      const [oldest] = this.followed;
      if (oldest !== undefined) {
        this.followed.delete(oldest);
        this.views.delete(oldest);
        this.etags.delete(oldest);
        this.o.log?.info("group no longer followed (least recently asked of maxGroups)", { group: oldest });
      }
    }
    this.followed.add(group);
    this.views.set(group, view);
    const etag = res.headers.get("etag");
    if (etag) this.etags.set(group, etag);
    if (changed) {
      this.o.log?.info("group membership applied", {
        group,
        epoch: m.epoch,
        members: m.members.length,
        draining: m.members.filter((x) => x.draining).map((x) => x.name),
      });
      this.persist();
    }
    return { ok: true, view };
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.pollAll(), this.pollMs);
    this.timer.unref();
  }

  private async pollAll(): Promise<void> {
    if (this.polling || this.stopped) return;
    this.polling = true;
    try {
      await Promise.all([...this.followed].map((g) => this.fetchGroup(g, Math.max(2_000, this.pollMs * 2))));
    } finally {
      this.polling = false;
      this.schedule();
    }
  }

  private persist(): void {
    const dir = this.o.dataDir;
    if (!dir) return;
    const groups = [...this.views.values()].map((v) => v.membership);
    this.persistChain = this.persistChain.then(async () => {
      try {
        await mkdir(dir, { recursive: true });
        const file = join(dir, "ownership.json");
        const tmp = `${file}.${process.pid}.tmp`;
        await writeFile(tmp, JSON.stringify({ groups }), { mode: 0o600 });
        await rename(tmp, file);
      } catch (err) {
        this.o.log?.warn("could not persist group memberships", { error: String(err) });
      }
    });
  }
}
