// Why an agent is not ready, as one closed set of codes: /readyz answers with the code and a
// message, and the hopway_not_ready gauge has one series per code, so an alert can name the cause
// (docs/operations.md) and the label values stay a predeclared set.
import { Gauge, type Registry } from "prom-client";

export const NOT_READY_REASONS = [
  /** Starting, or shutting down (draining). */
  "starting",
  /** The edge refuses the agent's token. */
  "edge_unauthorized",
  /** The token is good, but the edge refuses one of the agent's records. */
  "record_refused",
  /** A record of the agent's name exists that it did not register. */
  "record_conflict",
  /** No usable route table yet: every tunnel is refused with 503. */
  "no_route_table",
  /** A relay listener is not listening. */
  "listener_down",
  /** The table routes through other relays and the relay holds no valid link certificate. */
  "no_certificate",
] as const;
export type NotReadyReasonCode = (typeof NOT_READY_REASONS)[number];

export interface NotReady {
  reason: NotReadyReasonCode;
  message: string;
}

/** Why the agent is not ready, or undefined when it is: the one answer /readyz and the gauge share. */
export function notReady(ready: boolean, problem: (() => NotReady | undefined) | undefined): NotReady | undefined {
  if (!ready) return { reason: "starting", message: "starting or shutting down" };
  return problem?.();
}

/** hopway_not_ready{reason}: 1 for the reason the agent is not ready now, 0 for every other one. */
export function registerReadinessMetric(registry: Registry, now: () => NotReady | undefined): void {
  new Gauge({
    name: "hopway_not_ready",
    help: "1 for the reason /readyz answers 503 now (one of a fixed set), 0 for the others; all 0 when ready.",
    labelNames: ["reason"] as const,
    registers: [registry],
    collect() {
      const current = now()?.reason;
      for (const reason of NOT_READY_REASONS) this.set({ reason }, reason === current ? 1 : 0);
    },
  });
}
