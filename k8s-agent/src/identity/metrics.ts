// The relay identity's Prometheus metrics, in the style of ../metrics.ts: a
// gauge read at scrape time and a counter whose label values are a closed set.
import { Counter, Gauge, type Registry } from "prom-client";
import { RENEWAL_RESULTS, type RenewalResult } from "./edge-issued.ts";

export interface IdentityMetrics {
  renewal(result: RenewalResult): void;
}

export function createIdentityMetrics(
  registry: Registry,
  src: {
    notAfter: () => number | undefined;
    notBefore: () => number | undefined;
    source: "edge" | "files";
    now?: () => number;
  },
): IdentityMetrics {
  const now = src.now ?? Date.now;
  new Gauge({
    name: "hopway_relay_certificate_expiry_seconds",
    help: "Seconds until the relay's link certificate expires (negative once expired; absent before the first one).",
    registers: [registry],
    collect() {
      this.reset();
      const at = src.notAfter();
      if (at !== undefined) this.set((at - now()) / 1000);
    },
  });
  // The expiry alone cannot say whether renewal is late: renewal starts at 60-70 % of the
  // lifetime, which is configurable (edge) or the issuer's (files). With both, an alert can.
  new Gauge({
    name: "hopway_relay_certificate_lifetime_seconds",
    help: "Lifetime of the relay's link certificate (not after minus not before; absent before the first one).",
    registers: [registry],
    collect() {
      this.reset();
      const from = src.notBefore();
      const to = src.notAfter();
      if (from !== undefined && to !== undefined) this.set((to - from) / 1000);
    },
  });
  const renewals = new Counter({
    name: "hopway_relay_certificate_renewals_total",
    help: "Certificate requests to the edge (source edge) or reloads of the certificate files (source files), by result.",
    labelNames: ["source", "result"] as const,
    registers: [registry],
  });
  for (const result of RENEWAL_RESULTS) renewals.inc({ source: src.source, result }, 0);
  return { renewal: (result) => renewals.inc({ source: src.source, result }) };
}
