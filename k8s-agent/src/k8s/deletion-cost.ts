// Sets `controller.kubernetes.io/pod-deletion-cost` on the agent's own pod so
// that a ReplicaSet scaling in removes the pods with the least state first.
//
// Scope: the annotation is honoured by the ReplicaSet controller only
// (Deployments; beta and on by default since Kubernetes 1.22). The
// StatefulSet controller ignores it and always removes the highest ordinal —
// for StatefulSets the state-floor metric and the pre-delete hook do that job.
//
// Every write to a pod triggers watches across the cluster (kubelet,
// controllers, every informer on pods), so writes are rare by construction:
// only when the coarse bucket changes, never more often than
// `minIntervalMs` (failed attempts included), and spaced further apart with
// jittered exponential backoff after failures, honouring Retry-After.
import { Counter, Gauge, type Registry } from "prom-client";
import { KubeApiError, type PodApi } from "./api.ts";

export const DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost";

/**
 * The API calls this module makes — and therefore exactly what the Role in
 * deploy/ grants (the manifests test compares the two).
 */
export const DELETION_COST_RBAC = { apiGroups: [""], resources: ["pods"], verbs: ["get", "patch"] } as const;

export interface Timers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

export interface DeletionCostLog {
  warn(message: string, fields?: Record<string, unknown>): void;
  info?(message: string, fields?: Record<string, unknown>): void;
}

export interface DeletionCostPatcherOptions {
  api: PodApi;
  namespace: string;
  podName: string;
  minIntervalMs?: number;
  maxBackoffMs?: number;
  timers?: Timers;
  /** [0, 1): jitter source, injectable for tests. */
  random?: () => number;
  registry?: Registry;
  log?: DeletionCostLog;
}

const RETRYABLE = new Set([408, 409, 429, 500, 502, 503, 504]);

export class DeletionCostPatcher {
  private readonly api: PodApi;
  private readonly namespace: string;
  private readonly podName: string;
  private readonly minInterval: number;
  private readonly maxBackoff: number;
  private readonly timers: Timers;
  private readonly random: () => number;
  private readonly log: DeletionCostLog | undefined;
  private desired: number | undefined;
  private applied: number | undefined;
  private lastAttemptAt = Number.NEGATIVE_INFINITY;
  private spacing: number;
  private failures = 0;
  private timer: unknown;
  private inFlight: Promise<void> | undefined;
  private closed = false;
  private readonly attempts: Counter<"result"> | undefined;
  private readonly costGauge: Gauge | undefined;

  constructor(opts: DeletionCostPatcherOptions) {
    this.api = opts.api;
    this.namespace = opts.namespace;
    this.podName = opts.podName;
    this.minInterval = opts.minIntervalMs ?? 30_000;
    this.maxBackoff = Math.max(this.minInterval, opts.maxBackoffMs ?? 300_000);
    this.spacing = this.minInterval;
    this.timers = opts.timers ?? realTimers;
    this.random = opts.random ?? Math.random;
    this.log = opts.log;
    if (opts.registry) {
      this.attempts = new Counter({
        name: "hopway_pod_deletion_cost_patches_total",
        help: "Writes of the pod-deletion-cost annotation, by result (ok, error).",
        labelNames: ["result"] as const,
        registers: [opts.registry],
      });
      this.attempts.inc({ result: "ok" }, 0);
      this.attempts.inc({ result: "error" }, 0);
      this.costGauge = new Gauge({
        name: "hopway_pod_deletion_cost",
        help: "pod-deletion-cost last written to this pod's annotation (-1 until known).",
        registers: [opts.registry],
      });
      this.costGauge.set(-1);
    }
  }

  /**
   * Reads the annotation already on the pod, so a restarted agent does not
   * rewrite an unchanged value. A failure here is not fatal: the first
   * change is then written unconditionally.
   */
  async start(): Promise<void> {
    try {
      const annotations = await this.api.readPodAnnotations(this.namespace, this.podName);
      const raw = annotations[DELETION_COST_ANNOTATION];
      if (raw !== undefined && /^-?\d+$/.test(raw)) {
        this.applied = Number(raw);
        this.costGauge?.set(this.applied);
      }
    } catch (err) {
      this.log?.warn("pod-deletion-cost: could not read own pod", { error: describe(err) });
    }
    this.schedule();
  }

  /** The cost the pod should carry now; cheap to call on every report. */
  set(cost: number): void {
    if (!Number.isInteger(cost) || cost < -2_147_483_648 || cost > 2_147_483_647) {
      throw new RangeError("pod-deletion-cost must be an int32");
    }
    this.desired = cost;
    this.schedule();
  }

  /** The value last written successfully (or found on the pod). */
  current(): number | undefined {
    return this.applied;
  }

  /** Resolves when no write is in flight. */
  async idle(): Promise<void> {
    while (this.inFlight) await this.inFlight;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) this.timers.clearTimeout(this.timer);
    this.timer = undefined;
    await this.idle();
  }

  private schedule(): void {
    if (this.closed || this.inFlight || this.timer !== undefined) return;
    if (this.desired === undefined || this.desired === this.applied) return;
    const delay = Math.max(0, this.lastAttemptAt + this.spacing - this.timers.now());
    this.timer = this.timers.setTimeout(() => {
      this.timer = undefined;
      this.inFlight = this.write().finally(() => {
        this.inFlight = undefined;
        this.schedule();
      });
    }, delay);
  }

  private async write(): Promise<void> {
    const value = this.desired;
    if (this.closed || value === undefined || value === this.applied) return;
    this.lastAttemptAt = this.timers.now();
    try {
      // JSON merge patch: touches this one annotation and nothing else on the pod.
      await this.api.patchPodAnnotations(
        this.namespace,
        this.podName,
        { [DELETION_COST_ANNOTATION]: String(value) },
        "hopway-agent",
      );
      this.applied = value;
      this.failures = 0;
      this.spacing = this.minInterval;
      this.attempts?.inc({ result: "ok" });
      this.costGauge?.set(value);
    } catch (err) {
      this.failures++;
      this.attempts?.inc({ result: "error" });
      const status = err instanceof KubeApiError ? err.status : undefined;
      // Exponential from the minimum interval, with ±25 % jitter so that a
      // StatefulSet's pods do not retry in lockstep after an API outage.
      let spacing = Math.min(this.maxBackoff, this.minInterval * 2 ** (this.failures - 1));
      if (status !== undefined && !RETRYABLE.has(status)) spacing = this.maxBackoff; // 403/404/422: needs a human
      spacing *= 0.75 + this.random() * 0.5;
      const retryAfter = retryAfterMs(err);
      if (retryAfter !== undefined) spacing = Math.max(spacing, Math.min(retryAfter, this.maxBackoff * 2));
      this.spacing = Math.max(this.minInterval, spacing);
      this.log?.warn("pod-deletion-cost: patch failed", {
        status,
        error: describe(err),
        retry_in_ms: Math.round(this.spacing),
      });
    }
  }
}

function retryAfterMs(err: unknown): number | undefined {
  if (!(err instanceof KubeApiError) || err.retryAfterSeconds === undefined) return undefined;
  return err.retryAfterSeconds * 1000;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
