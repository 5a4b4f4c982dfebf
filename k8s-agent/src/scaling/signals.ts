// The pod's two scaling signals (docs/contract/autoscaling.md §1) as the application
// reports them, exported as Prometheus gauges for prometheus-adapter, sent to
// the edge in heartbeats, and the edge's answer (draining) taken back.
//
// prom-client rather than OpenTelemetry's Prometheus exporter: the relay's
// metrics already live on a prom-client Registry that the admin server serves,
// the HPA path is pull-only Prometheus anyway, and prom-client writes exactly
// the metric names given (OTel's exporter rewrites names and units and adds
// target_info/otel_scope series the adapter rules would have to step around).

import { deletionCostBucket, ordinalFromPodName } from "@hopway/core/scaling";
import type { ScalingReport } from "@hopway/core/schema";
import type { WorkloadScalingAnswer } from "@hopway/core/wire";
import { Gauge, type Registry } from "prom-client";
import type { LocalReport, LocalStatus, PreDelete } from "../admin/schemas.ts";
import type { ScalingConfig } from "./config.ts";

/** A pre-delete hook unpolled this long starts its tunnels' grace over (its controller polls every 2 s). */
const HOOK_QUIET_MS = 60_000;

/** Metric names the HPA depends on through the prometheus-adapter rules; renaming them breaks autoscaling. */
export const LOAD_METRIC = "hopway_load_factor";
export const STATE_FLOOR_METRIC = "hopway_state_floor";

export interface ScalingSignalsOptions {
  config: ScalingConfig;
  /** The pod's name (POD_NAME from the downward API). */
  podName: string;
  registry: Registry;
  now?: () => number;
}

type Listener = (s: ScalingSignals) => void;

export class ScalingSignals {
  readonly workload: string;
  readonly ordinal: number | undefined;
  readonly podName: string;
  private readonly hpa: Pick<ScalingReport, "target_load" | "min_replicas" | "max_replicas">;
  private readonly now: () => number;
  private report: LocalReport = { load: 0, holds_state: false };
  private reportedAt: number | undefined;
  private edge: WorkloadScalingAnswer | undefined;
  private edgeAt: number | undefined;
  private draining = false;
  /** Since when the coordinator has stopped asking this pod to drain (undefined while it asks, or never did). */
  private undrainSince: number | undefined;
  private readonly undrainAfterMs: number;
  private readonly tunnelGraceMs: number;
  /**
   * When the hook first found open tunnels the only blocker, and when it was last polled. A hook
   * left unpolled for HOOK_QUIET_MS starts over: a call from before (someone's curl, a deletion
   * that was cancelled) must not shorten the wait of the next deletion.
   */
  private tunnelsAlone: { since: number; polled: number } | undefined;
  private readonly listeners = new Set<Listener>();
  private readonly gauges: {
    load: Gauge;
    floor: Gauge;
    items: Gauge;
    draining: Gauge;
    desired: Gauge;
    reported: Gauge;
  };

  constructor(opts: ScalingSignalsOptions) {
    this.workload = opts.config.workload;
    this.podName = opts.podName;
    this.ordinal = opts.config.ordinal ?? ordinalFromPodName(opts.podName);
    this.now = opts.now ?? Date.now;
    this.undrainAfterMs = opts.config.undrain_after_seconds * 1000;
    this.tunnelGraceMs = opts.config.pre_delete_tunnel_grace_seconds * 1000;
    this.hpa = { target_load: opts.config.target_load };
    if (opts.config.min_replicas !== undefined) this.hpa.min_replicas = opts.config.min_replicas;
    if (opts.config.max_replicas !== undefined) this.hpa.max_replicas = opts.config.max_replicas;
    const registers = [opts.registry];
    this.gauges = {
      load: new Gauge({
        name: LOAD_METRIC,
        help: "Load factor the application reported (1 = at capacity). The HPA's Pods metric.",
        registers,
      }),
      floor: new Gauge({
        name: STATE_FLOOR_METRIC,
        help: "StatefulSet ordinal + 1 while this pod holds state, else 0. Its max over the StatefulSet is the HPA's Object metric.",
        registers,
      }),
      items: new Gauge({
        name: "hopway_state_items",
        help: "Items of state (keys, sessions) the application reported holding.",
        registers,
      }),
      draining: new Gauge({
        name: "hopway_draining",
        help: "1 while the coordinator asks this pod to move its state away (its ordinal is at or above what load needs).",
        registers,
      }),
      desired: new Gauge({
        name: "hopway_desired_replicas",
        help: "Replicas the workload converges to as the edge computes it (max of load and state floor); 0 until known.",
        registers,
      }),
      reported: new Gauge({
        name: "hopway_scaling_report_timestamp_seconds",
        help: "Unix time of the application's last load/state report; 0 before the first.",
        registers,
      }),
    };
  }

  /** The application's report (already validated). */
  setReport(report: LocalReport): void {
    this.report = { ...report };
    // State came back: open tunnels get a whole grace again once it is gone, even if no hook call saw it.
    if (report.holds_state || (report.state_items ?? 0) > 0) this.tunnelsAlone = undefined;
    this.reportedAt = this.now();
    this.gauges.load.set(report.load);
    this.gauges.floor.set(this.stateFloor());
    this.gauges.items.set(report.state_items ?? 0);
    this.gauges.reported.set(this.reportedAt / 1000);
    this.emit();
  }

  /** ordinal + 1 while holding state, else 0. A pod without an ordinal cannot express a floor. */
  stateFloor(): number {
    return this.report.holds_state && this.ordinal !== undefined ? this.ordinal + 1 : 0;
  }

  /** What the heartbeat carries; undefined when scaling is not configured for this pod. */
  heartbeatReport(): ScalingReport | undefined {
    if (this.workload === "" || this.ordinal === undefined) return undefined;
    const r: ScalingReport = {
      workload: this.workload,
      ordinal: this.ordinal,
      load: this.report.load,
      holds_state: this.report.holds_state,
    };
    if (this.report.state_items !== undefined) r.state_items = this.report.state_items;
    return { ...r, ...this.hpa };
  }

  /**
   * The `scaling` field of the edge's heartbeat answer. An answer without it
   * (or for another workload) changes nothing: a pod told to drain keeps
   * draining until the coordinator says otherwise, because moving state away
   * needlessly is cheap and losing it is not.
   */
  applyEdgeScaling(scaling: WorkloadScalingAnswer | undefined): void {
    if (!scaling || scaling.workload !== this.workload || this.ordinal === undefined) return;
    this.edge = scaling;
    const now = this.now();
    this.edgeAt = now;
    if (scaling.draining.includes(this.ordinal)) {
      this.draining = true;
      this.undrainSince = undefined;
    } else if (this.draining) {
      // Hold-down: the HPA may be acting on metrics from before this answer.
      this.undrainSince ??= now;
      if (now - this.undrainSince >= this.undrainAfterMs) {
        this.draining = false;
        this.undrainSince = undefined;
      }
    }
    this.gauges.draining.set(this.draining ? 1 : 0);
    this.gauges.desired.set(scaling.desired_replicas ?? Math.max(scaling.desired_by_load, scaling.state_floor));
    this.emit();
  }

  isDraining(): boolean {
    return this.draining;
  }

  /** The pod-deletion-cost value for the current report. */
  deletionCost(): number {
    return deletionCostBucket(this.report.holds_state, this.report.state_items);
  }

  /**
   * The pre-delete hook's answer (docs/contract/autoscaling.md §4.1). Only a call of the hook itself
   * (`hook`) starts or advances the tunnels' grace; the local status reads the same rule without.
   */
  preDelete(openTunnels: number, hook = false): PreDelete {
    const blockers: PreDelete["blockers"] = [];
    if (this.report.holds_state) blockers.push("holds_state");
    if ((this.report.state_items ?? 0) > 0) blockers.push("state_items");
    const alone = blockers.length === 0 && openTunnels > 0;
    if (hook) this.trackGrace(alone);
    const graceEnds = alone ? this.graceEnd() : undefined;
    if (openTunnels > 0 && this.tunnelGraceMs > 0 && (graceEnds === undefined || this.now() < graceEnds)) {
      blockers.push("open_tunnels");
    }
    return {
      may_delete: blockers.length === 0 ? 1 : 0,
      blockers,
      holds_state: this.report.holds_state,
      state_items: this.report.state_items ?? null,
      open_tunnels: openTunnels,
      draining: this.draining,
      tunnel_grace_ends_at: graceEnds === undefined ? null : new Date(graceEnds).toISOString(),
    };
  }

  /** A hook call: starts the grace when open tunnels are all that holds the pod, ends it otherwise. */
  private trackGrace(tunnelsAlone: boolean): void {
    const now = this.now();
    if (!tunnelsAlone || this.graceEnd() === undefined) this.tunnelsAlone = undefined;
    if (!tunnelsAlone) return;
    this.tunnelsAlone ??= { since: now, polled: now };
    this.tunnelsAlone.polled = now;
  }

  /** The running grace's end; undefined when none runs, or its hook has gone quiet (it is over then). */
  private graceEnd(): number | undefined {
    const g = this.tunnelsAlone;
    if (g === undefined || this.now() - g.polled > HOOK_QUIET_MS) return undefined;
    return g.since + this.tunnelGraceMs;
  }

  status(openTunnels: number, ready: boolean): LocalStatus {
    const iso = (t: number | undefined) => (t === undefined ? null : new Date(t).toISOString());
    return {
      pod: this.podName,
      workload: this.workload,
      ordinal: this.ordinal ?? null,
      load: this.report.load,
      holds_state: this.report.holds_state,
      state_items: this.report.state_items ?? null,
      state_floor: this.stateFloor(),
      draining: this.draining,
      desired_replicas: this.edge
        ? (this.edge.desired_replicas ?? Math.max(this.edge.desired_by_load, this.edge.state_floor))
        : null,
      desired_by_load: this.edge?.desired_by_load ?? null,
      workload_state_floor: this.edge?.state_floor ?? null,
      reported_at: iso(this.reportedAt),
      scaling_updated_at: iso(this.edgeAt),
      open_tunnels: openTunnels,
      ready,
      may_delete: this.preDelete(openTunnels).may_delete === 1,
    };
  }

  /** Called after every report and every edge answer (the deletion-cost patcher listens). */
  onChange(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(): void {
    for (const l of this.listeners) {
      try {
        l(this);
      } catch {
        // A listener's failure must not fail the application's report.
      }
    }
  }
}
