// The shipped alert rules (deploy/components/alerts, as kustomize renders them) in a real
// Prometheus that scrapes real agents registered with a real edge (workerd), all on loopback:
// every rule evaluates without error on what the agents export, every metric a rule names is
// scraped, a refused token and a stopped agent put their alerts on that pod only, and a healthy
// agent raises none. Prometheus evaluates every second, so an alert with a `for` is seen pending;
// when each fires is tested by k8s-agent/test/unit/deploy/alerts.test.ts with promtool.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adminApi, createRealm, type LocalEdge, startLocalEdge } from "../../../test/support/local-edge.ts";
import type { RunningAgent } from "../../src/main.ts";
import { type RunningPrometheus, startPrometheus } from "../support/prometheus.ts";
import { launchRelayAgent, until } from "../support/relay-agents.ts";
import { renderWithComponents } from "../unit/deploy/kustomize.ts";

const REALM = "alerts";
const NS = "namespace_1";
const workDir = mkdtempSync(join(tmpdir(), "hopway-alerts-"));
type Groups = { groups: Array<{ rules: Array<{ alert: string; expr: string }> }> };
const rules = (renderWithComponents(["alerts"]).find((o) => o.kind === "PrometheusRule") as unknown as { spec: Groups })
  .spec;

let edge: LocalEdge;
let prom: RunningPrometheus;
const agents = new Map<string, RunningAgent>();

async function launch(name: string, token: string): Promise<RunningAgent> {
  const { agent } = await launchRelayAgent({
    edgeUrl: edge.url,
    realm: REALM,
    namespace: NS,
    name,
    token,
    dataDir: join(workDir, name),
    logLevel: "error",
  });
  agents.set(name, agent);
  return agent;
}

interface Alert {
  labels: Record<string, string>;
  state: "pending" | "firing";
}
async function alerts(): Promise<Alert[]> {
  const body = (await (await fetch(`${prom.url}/api/v1/alerts`)).json()) as { data: { alerts: Alert[] } };
  return body.data.alerts;
}

beforeAll(async () => {
  edge = await startLocalEdge();
  await createRealm(edge, REALM, { allowLoopback: true });
  const token = String((await adminApi(edge, REALM, "POST", "/tokens", { role: "agent", namespaces: [NS] })).token);
  const good = await launch("relay-good", token);
  // Healthy before the first scrape, so that any alert on it is a false one.
  await until("relay-good ready", async () =>
    (await fetch(`${good.admin?.url}/readyz`)).status === 200 ? true : undefined,
  );
  await until("relay-good's certificate", async () =>
    /^hopway_relay_certificate_lifetime_seconds \d+/m.test(await (await fetch(`${good.admin?.url}/metrics`)).text())
      ? true
      : undefined,
  );
  await launch("relay-badtoken", "hwt_not-a-token-of-this-realm");
  prom = await startPrometheus({
    job: "hopway-agent-headless",
    metricsPath: "/metrics",
    targets: [...agents].map(([name, a]) => ({
      port: a.admin?.address.port as number,
      labels: { __meta_kubernetes_namespace: "hopway", __meta_kubernetes_pod_name: name },
    })),
    relabelings: [],
    rules,
  });
}, 120_000);

afterAll(async () => {
  await prom?.stop();
  for (const a of agents.values()) await a.shutdown("test");
  await edge?.stop();
  rmSync(workDir, { recursive: true, force: true });
});

describe("shipped alert rules on real agents", () => {
  it("every rule evaluates without error, and every metric a rule names is scraped from an agent", async () => {
    const names = rules.groups.flatMap((g) => g.rules.map((r) => r.alert));
    const evaluated = await until("every rule evaluated", async () => {
      const body = (await (await fetch(`${prom.url}/api/v1/rules`)).json()) as {
        data: { groups: Array<{ rules: Array<{ name: string; health: string; lastError?: string }> }> };
      };
      const seen = body.data.groups.flatMap((g) => g.rules);
      return seen.length === names.length && seen.every((r) => r.health !== "unknown") ? seen : undefined;
    });
    for (const r of evaluated) expect(r.health, `${r.name}: ${r.lastError}`).toBe("ok");

    const metrics = new Set(rules.groups.flatMap((g) => g.rules.flatMap((r) => r.expr.match(/\bhopway_\w+/g) ?? [])));
    expect(metrics.size).toBeGreaterThanOrEqual(10);
    for (const m of metrics) {
      const found = await until(`${m} scraped`, async () => {
        const rows = await prom.query(`count(${m}{pod="relay-good"})`);
        return rows.length > 0 ? rows : undefined;
      });
      expect(found[0]?.value, m).toBeGreaterThan(0);
    }
  });

  it("a refused token puts HopwayEdgeTokenRefused on that pod, and the healthy agent raises nothing", async () => {
    const refused = await until("HopwayEdgeTokenRefused", async () =>
      (await alerts()).find((a) => a.labels.alertname === "HopwayEdgeTokenRefused"),
    );
    expect(refused).toMatchObject({
      state: "pending",
      labels: { pod: "relay-badtoken", namespace: "hopway", severity: "critical" },
    });
    // Over several evaluations: nothing about the healthy agent, and the refused one is not also
    // reported as not ready (its own alert says it).
    for (let i = 0; i < 5; i++) {
      const now = await alerts();
      expect(now.filter((a) => a.labels.pod === "relay-good")).toEqual([]);
      expect(now.filter((a) => a.labels.alertname === "HopwayAgentNotReady")).toEqual([]);
      await new Promise((r) => setTimeout(r, 1_000));
    }
  });

  it("an agent that stops answering is HopwayAgentDown", async () => {
    await agents.get("relay-good")?.shutdown("test");
    const down = await until("HopwayAgentDown", async () =>
      (await alerts()).find((a) => a.labels.alertname === "HopwayAgentDown"),
    );
    expect(down).toMatchObject({ state: "pending", labels: { pod: "relay-good", severity: "critical" } });
  });
});
