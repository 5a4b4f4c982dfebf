// The alerts component: kustomize renders its PrometheusRule onto the base; promtool accepts the
// rules and passes their unit tests (alerts.promtool.yaml: each alert fires where it must and not
// where it must not); a changed rule fails those tests; and every metric and label value the
// expressions name is one the agent exports, so a renamed metric or reason cannot leave an alert
// that never fires. k8s-agent/test/e2e/alerts.test.ts runs the same rules against real agents.
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Registry } from "prom-client";
import { afterAll, describe, expect, it } from "vitest";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { NOT_READY_REASONS, registerReadinessMetric } from "../../../src/admin/readiness.ts";
import { createIdentityMetrics } from "../../../src/identity/metrics.ts";
import { createListenerMetrics, createRelayMetrics, LINK_SIDES, LISTENER_RESULTS } from "../../../src/metrics.ts";
import { LINK_FAILURES } from "../../../src/relay/links/options.ts";
import { FAILURE_REASONS } from "../../../src/relay/protocol.ts";
import { type Obj, renderWithComponents } from "./kustomize.ts";

const HERE = dirname(fileURLToPath(import.meta.url));
const PROMTOOL_TESTS = join(HERE, "alerts.promtool.yaml");

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}
type Groups = { groups: Array<{ name: string; rules: Rule[] }> };

const objects = renderWithComponents(["alerts"]);
const ruleObject = objects.find((o) => o.kind === "PrometheusRule") as Obj & { spec: Groups };
const rules = ruleObject.spec.groups.flatMap((g) => g.rules);

const work = mkdtempSync(join(tmpdir(), "hopway-alerts-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** `promtool test rules` on the shipped unit tests against these groups. */
function promtoolTest(groups: Groups): { status: number | null; out: string } {
  const dir = mkdtempSync(join(work, "run-"));
  writeFileSync(join(dir, "rules.yaml"), stringifyYaml(groups));
  copyFileSync(PROMTOOL_TESTS, join(dir, "tests.yaml"));
  // promtool is part of the CI machine (.ci/system-deps.sh): a missing one fails here, never skips.
  const r = spawnSync("promtool", ["test", "rules", join(dir, "tests.yaml")], { encoding: "utf8", timeout: 60_000 });
  if (r.error) throw r.error;
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** `metric{label op "value", …}` selectors of a PromQL expression, with their matchers. */
function selectors(
  expr: string,
): Array<{ metric: string; matchers: Array<{ label: string; op: string; value: string }> }> {
  return [...expr.matchAll(/\b([a-z_][a-z0-9_]*)\s*(?:\{([^}]*)\})?/g)]
    .filter((m) => m[1]?.startsWith("hopway_") || m[1] === "up")
    .map((m) => ({
      metric: m[1] as string,
      matchers: [...(m[2] ?? "").matchAll(/(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"/g)].map((x) => ({
        label: x[1] as string,
        op: x[2] as string,
        value: x[3] as string,
      })),
    }));
}

describe("alerts component", () => {
  it("renders one PrometheusRule in the agent's namespace, every alert named, with severity and text", () => {
    expect(ruleObject).toMatchObject({
      apiVersion: "monitoring.coreos.com/v1",
      metadata: { name: "hopway-agent", namespace: "hopway" },
    });
    expect(rules.length).toBeGreaterThanOrEqual(10);
    const names = rules.map((r) => r.alert);
    expect(new Set(names).size).toBe(names.length);
    for (const r of rules) {
      expect(r.alert).toMatch(/^Hopway[A-Z][A-Za-z]+$/);
      expect(r.expr.trim().length, r.alert).toBeGreaterThan(0);
      expect(["critical", "warning"], r.alert).toContain(r.labels.severity);
      expect(Object.keys(r.annotations).sort(), r.alert).toEqual(["description", "summary"]);
      if (r.for !== undefined) expect(r.for, r.alert).toMatch(/^\d+[smh]$/);
    }
  });

  it("promtool accepts the rules", () => {
    const file = join(work, "check.yaml");
    writeFileSync(file, stringifyYaml(ruleObject.spec));
    const r = spawnSync("promtool", ["check", "rules", file], { encoding: "utf8", timeout: 60_000 });
    expect(r.status, `${r.stdout}${r.stderr}`).toBe(0);
    expect(r.stdout).toContain(`SUCCESS: ${rules.length} rules found`);
  });

  it("passes its promtool unit tests, which make every alert fire and hold it back somewhere", () => {
    const r = promtoolTest(ruleObject.spec);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toContain("SUCCESS");
    const tests = parseYaml(readFileSync(PROMTOOL_TESTS, "utf8")) as {
      tests: Array<{ alert_rule_test?: Array<{ alertname: string; exp_alerts: unknown[] }> }>;
    };
    const cases = tests.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const { alert } of rules) {
      expect(
        cases.some((c) => c.alertname === alert && c.exp_alerts.length > 0),
        `${alert} fires in a test`,
      ).toBe(true);
      expect(
        cases.some((c) => c.alertname === alert && c.exp_alerts.length === 0),
        `${alert} is held back in a test`,
      ).toBe(true);
    }
  });

  it("the unit tests fail when a rule changes (so the test above can fail)", () => {
    const slower = structuredClone(ruleObject.spec);
    const refused = slower.groups[0]?.rules.find((r) => r.alert === "HopwayEdgeTokenRefused") as Rule;
    refused.for = "10m";
    expect(promtoolTest(slower).status).not.toBe(0);
    const wider = structuredClone(ruleObject.spec);
    const notReady = wider.groups[0]?.rules.find((r) => r.alert === "HopwayAgentNotReady") as Rule;
    notReady.expr = notReady.expr.replace('reason!~"starting|edge_unauthorized"', 'reason!~"edge_unauthorized"');
    expect(promtoolTest(wider).status).not.toBe(0);
  });

  it("names only metrics the agent exports and label values of their closed sets", () => {
    const registry = new Registry();
    createRelayMetrics(registry, {
      counters: () => ({ up: { client: 0, relay: 0 }, down: { client: 0, relay: 0 } }),
      activeTunnels: () => 0,
      openConnections: () => 0,
      routeTableVersion: () => undefined,
      routeTableFetchedAt: () => undefined,
      edgeReachable: () => true,
      handshakesLimit: 256,
      namespaceShareMax: () => 0,
      namespaceShareLimit: () => 2_500,
    });
    createListenerMetrics(registry, () => 0);
    createIdentityMetrics(registry, { source: "edge", notAfter: () => undefined, notBefore: () => undefined });
    registerReadinessMetric(registry, () => undefined);
    const exported = new Set(registry.getMetricsAsArray().map((m) => m.name));
    const closed: Record<string, Record<string, readonly string[]>> = {
      hopway_relay_link_failures_total: { reason: LINK_FAILURES, side: LINK_SIDES },
      hopway_relay_tunnels_failed_total: { reason: FAILURE_REASONS },
      hopway_not_ready: { reason: NOT_READY_REASONS },
      hopway_listener_connections_total: { result: LISTENER_RESULTS },
    };
    const used = new Set<string>();
    for (const r of rules) {
      for (const s of selectors(r.expr)) {
        used.add(s.metric);
        if (s.metric === "up") continue;
        expect(exported.has(s.metric), `${r.alert}: ${s.metric} is not exported by the agent`).toBe(true);
        for (const m of s.matchers) {
          const values = closed[s.metric]?.[m.label];
          expect(values, `${r.alert}: ${s.metric}{${m.label}} is not a closed label`).toBeDefined();
          for (const v of m.op.endsWith("~") ? m.value.split("|") : [m.value]) {
            expect(values, `${r.alert}: ${s.metric}{${m.label}="${v}"}`).toContain(v);
          }
        }
      }
    }
    // The parse above found the metrics (so the check can fail).
    expect(used).toContain("hopway_relay_link_failures_total");
    expect(used).toContain("hopway_relay_certificate_lifetime_seconds");
  });

  it("watches `up` of the job the operator names after the Service the ServiceMonitor scrapes", () => {
    const sm = objects.find((o) => o.kind === "ServiceMonitor") as Obj & {
      spec: { selector: { matchLabels: Record<string, string> } };
    };
    const scraped = objects.filter(
      (o) =>
        o.kind === "Service" &&
        Object.entries(sm.spec.selector.matchLabels).every(
          ([k, v]) => (o.metadata as { labels?: Record<string, string> }).labels?.[k] === v,
        ),
    );
    expect(scraped.map((s) => s.metadata.name)).toEqual(["hopway-agent-headless"]);
    const down = rules.find((r) => r.alert === "HopwayAgentDown") as Rule;
    expect(down.expr).toContain(`up{job="${scraped[0]?.metadata.name}"}`);
  });
});
