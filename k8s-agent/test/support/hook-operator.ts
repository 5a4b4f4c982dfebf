// Plays bcs-hook-operator's part for one HookRun with web-provider metrics,
// as k8s-agent/test/fixtures/crds/bk-bcs/README.md records it from the
// operator's source: each measurement is a real HTTP GET; a connection error,
// a non-2xx answer, a body that is not JSON or a JSON path that is not there
// is an Error; otherwise the success/failure conditions decide Successful,
// Failed or Inconclusive. After every measurement the metric is assessed in
// the operator's order (failureLimit, successfulLimit, inconclusiveLimit,
// consecutiveErrorLimit, consecutiveSuccessfulLimit, count) and, while it is
// still running, measured again `interval` later. Waiting is on a virtual
// clock (the requests are real), so an hour of polling takes seconds.

export type HookPhase = "Running" | "Successful" | "Failed" | "Error" | "Inconclusive";

/** One entry of a HookTemplate's spec.metrics (the fields this emulation reads). */
export interface WebMetric {
  name: string;
  interval?: string;
  count?: number;
  successCondition?: string;
  failureCondition?: string;
  failureLimit?: number;
  successfulLimit?: number;
  inconclusiveLimit?: number;
  consecutiveErrorLimit?: number;
  consecutiveSuccessfulLimit?: number;
  provider: { web: { url: string; jsonPath: string; timeoutSeconds?: number } };
}

export interface Measurement {
  /** Virtual time of the measurement, ms since the HookRun started. */
  at: number;
  phase: Exclude<HookPhase, "Running">;
  value?: string;
  message?: string;
}

export interface MetricResult {
  phase: HookPhase;
  measurements: Measurement[];
  count: number;
  successful: number;
  failed: number;
  inconclusive: number;
  error: number;
  consecutiveError: number;
  consecutiveSuccessful: number;
  /** Virtual ms from start to the completing measurement. */
  elapsedMs: number;
}

export interface RunOptions {
  /** HookRun args, substituted into `{{ args.NAME }}` in the URL. */
  args: Record<string, string>;
  /** Called before each measurement with its virtual time: the test changes the pod's state here. */
  beforeMeasurement?: (atMs: number, index: number) => void | Promise<void>;
  /** A safety bound on measurements (the emulation throws past it rather than loop forever). */
  maxMeasurements?: number;
}

// The operator's default when a metric gives no interval and a measurement errored.
const DEFAULT_ERROR_RETRY_MS = 10_000;

export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text);
  if (!m) throw new Error(`unsupported duration '${text}'`);
  const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }[m[2] as "ms" | "s" | "m" | "h"];
  return Number(m[1]) * unit;
}

/** `{{ args.Name }}` as the operator's template util resolves it; an arg without a value is an error. */
export function resolveArgs(text: string, args: Record<string, string>): string {
  return text.replace(/\{\{\s*args\.([A-Za-z0-9_-]+)\s*\}\}/g, (_, name: string) => {
    const v = args[name];
    if (v === undefined) throw new Error(`failed to resolve {{args.${name}}}`);
    return v;
  });
}

/**
 * client-go's jsonpath for the forms a web metric uses (`{$.a.b}` / `{.a.b}`):
 * the text of the value (numbers and booleans as JSON, strings raw), and an
 * error when a key is missing.
 */
export function jsonPathText(template: string, data: unknown): string {
  const m = /^\{\$?((?:\.[A-Za-z_][A-Za-z0-9_]*)+)\}$/.exec(template);
  if (!m) throw new Error(`unsupported jsonPath '${template}'`);
  let cur: unknown = data;
  for (const key of (m[1] as string).slice(1).split(".")) {
    if (typeof cur !== "object" || cur === null || Array.isArray(cur) || !(key in cur))
      throw new Error(`${key} is not found`);
    cur = (cur as Record<string, unknown>)[key];
  }
  if (typeof cur === "string") return cur;
  return JSON.stringify(cur);
}

// The conditions are expr-lang programs with `result`, asInt and asFloat;
// asInt/asFloat of a string that is not a number panics, which the operator
// turns into an Error measurement.
export function evalCondition(condition: string, result: string): boolean {
  const m = /^(asInt|asFloat)\(result\)\s*(==|!=|<=|>=|<|>)\s*(-?\d+(?:\.\d+)?)$/.exec(condition.trim());
  if (!m) throw new Error(`unsupported condition '${condition}' (this emulation knows asInt/asFloat comparisons)`);
  const value = m[1] === "asInt" ? (/^[+-]?\d+$/.test(result) ? Number(result) : Number.NaN) : Number(result);
  if (Number.isNaN(value)) throw new Error(`${m[1]}: cannot parse '${result}'`);
  const rhs = Number(m[3]);
  switch (m[2]) {
    case "==":
      return value === rhs;
    case "!=":
      return value !== rhs;
    case "<":
      return value < rhs;
    case ">":
      return value > rhs;
    case "<=":
      return value <= rhs;
    default:
      return value >= rhs;
  }
}

/** EvaluateResult: the measurement's phase from the two conditions. */
export function evaluateResult(result: string, metric: WebMetric): Exclude<HookPhase, "Running"> {
  let success = false;
  let failure = false;
  try {
    if (metric.successCondition) success = evalCondition(metric.successCondition, result);
    if (metric.failureCondition) failure = evalCondition(metric.failureCondition, result);
  } catch {
    return "Error";
  }
  if (!metric.successCondition && !metric.failureCondition) return "Successful";
  if (metric.successCondition && !metric.failureCondition) failure = !success;
  if (!metric.successCondition && metric.failureCondition) success = !failure;
  if (failure) return "Failed";
  if (!success) return "Inconclusive";
  return "Successful";
}

async function measure(metric: WebMetric, args: Record<string, string>, at: number): Promise<Measurement> {
  const web = metric.provider.web;
  const timeoutMs = (web.timeoutSeconds && web.timeoutSeconds > 0 ? web.timeoutSeconds : 10) * 1000;
  try {
    const url = resolveArgs(web.url, args);
    const res = await fetch(url, { method: "GET", signal: AbortSignal.timeout(timeoutMs) });
    const body = await res.text();
    if (res.status < 200 || res.status >= 300)
      return { at, phase: "Error", message: `received non 2xx response code: ${res.status}` };
    const value = jsonPathText(web.jsonPath, JSON.parse(body) as unknown);
    return { at, phase: evaluateResult(value, metric), value };
  } catch (err) {
    return { at, phase: "Error", message: err instanceof Error ? err.message : String(err) };
  }
}

function effectiveCount(metric: WebMetric): number | undefined {
  if (metric.count !== undefined) return metric.count;
  return metric.interval ? undefined : 1;
}

/** assessMetricStatus, in the operator's order. */
export function assess(metric: WebMetric, r: Omit<MetricResult, "phase" | "elapsedMs">): HookPhase {
  if (r.measurements.length === 0) return "Running";
  if ((metric.failureLimit ?? 0) > 0 && r.failed > (metric.failureLimit ?? 0)) return "Failed";
  if ((metric.successfulLimit ?? 0) > 0 && r.successful >= (metric.successfulLimit ?? 0)) return "Successful";
  if (r.inconclusive > (metric.inconclusiveLimit ?? 0)) return "Inconclusive";
  if (metric.consecutiveErrorLimit !== undefined && r.consecutiveError > metric.consecutiveErrorLimit) return "Error";
  if (metric.consecutiveSuccessfulLimit !== undefined && r.consecutiveSuccessful >= metric.consecutiveSuccessfulLimit)
    return "Successful";
  const count = effectiveCount(metric);
  if (count !== undefined && r.count >= count) return "Successful";
  return "Running";
}

/** Runs one metric of a HookRun to completion on a virtual clock. */
export async function runWebMetric(metric: WebMetric, opts: RunOptions): Promise<MetricResult> {
  const r: Omit<MetricResult, "phase" | "elapsedMs"> = {
    measurements: [],
    count: 0,
    successful: 0,
    failed: 0,
    inconclusive: 0,
    error: 0,
    consecutiveError: 0,
    consecutiveSuccessful: 0,
  };
  const interval = metric.interval ? parseDuration(metric.interval) : DEFAULT_ERROR_RETRY_MS;
  const max = opts.maxMeasurements ?? 10_000;
  let now = 0;
  for (;;) {
    if (r.measurements.length >= max) throw new Error(`metric ${metric.name} still running after ${max} measurements`);
    await opts.beforeMeasurement?.(now, r.measurements.length);
    const m = await measure(metric, opts.args, now);
    r.measurements.push(m);
    r.count++;
    if (m.phase === "Successful") {
      r.successful++;
      r.consecutiveError = 0;
      r.consecutiveSuccessful++;
    } else if (m.phase === "Error") {
      r.error++;
      r.consecutiveError++;
      r.consecutiveSuccessful = 0;
    } else {
      if (m.phase === "Failed") r.failed++;
      else r.inconclusive++;
      r.consecutiveError = 0;
      r.consecutiveSuccessful = 0;
    }
    const phase = assess(metric, r);
    if (phase !== "Running") return { ...r, phase, elapsedMs: now };
    now += interval;
  }
}

/** What the GameStatefulSet / GameDeployment controller does with the HookRun: delete only on Successful. */
export const workloadDeletesPod = (phase: HookPhase): boolean => phase === "Successful";
