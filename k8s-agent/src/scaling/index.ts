// Wires the scaling pieces for the agent's main: the pod-deletion-cost patcher,
// when enabled and running in a cluster, fed from every application report
// that reaches the signals (gauges, heartbeat report, draining).
import type { Registry } from "prom-client";
import { inClusterKubeApi, type PodApi } from "../k8s/api.ts";
import { type DeletionCostLog, DeletionCostPatcher } from "../k8s/deletion-cost.ts";
import type { ScalingConfig } from "./config.ts";
import type { ScalingSignals } from "./signals.ts";

export { ScalingConfigSchema } from "./config.ts";
export { LOAD_METRIC, ScalingSignals, STATE_FLOOR_METRIC } from "./signals.ts";

export interface StartScalingOptions {
  config: ScalingConfig;
  /** POD_NAME (downward API); also where the ordinal comes from. */
  podName: string;
  /** POD_NAMESPACE (downward API); needed for the deletion cost. */
  podNamespace?: string | undefined;
  registry: Registry;
  /** Defaults to the in-cluster service account when KUBERNETES_SERVICE_HOST is set. */
  kubeApi?: PodApi;
  env?: Record<string, string | undefined>;
  log?: DeletionCostLog;
}

/**
 * Starts the pod-deletion-cost patcher for existing signals when the config
 * enables it and the agent runs in a cluster; undefined otherwise.
 */
export async function startDeletionCost(
  opts: StartScalingOptions & { signals: ScalingSignals },
): Promise<DeletionCostPatcher | undefined> {
  const dc = opts.config.deletion_cost;
  if (!dc.enabled) return undefined;
  const env = opts.env ?? process.env;
  let api = opts.kubeApi;
  if (api === undefined && env.KUBERNETES_SERVICE_HOST) {
    try {
      api = inClusterKubeApi(env);
    } catch (err) {
      opts.log?.warn("pod-deletion-cost: enabled, but the service account credentials are unreadable; disabled", {
        error: String(err),
      });
      return undefined;
    }
  }
  if (!api || !opts.podNamespace) {
    opts.log?.warn("pod-deletion-cost: enabled but not running in a cluster (no API or POD_NAMESPACE); disabled");
    return undefined;
  }
  const patcher = new DeletionCostPatcher({
    api,
    namespace: opts.podNamespace,
    podName: opts.podName,
    minIntervalMs: dc.min_interval_seconds * 1000,
    maxBackoffMs: dc.max_backoff_seconds * 1000,
    registry: opts.registry,
    ...(opts.log ? { log: opts.log } : {}),
  });
  await patcher.start();
  patcher.set(opts.signals.deletionCost());
  opts.signals.onChange((s) => patcher.set(s.deletionCost()));
  return patcher;
}
