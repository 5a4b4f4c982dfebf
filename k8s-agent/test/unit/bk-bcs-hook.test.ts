// The shipped pre-delete HookTemplate (deploy/overlays/bk-bcs-hook/hooktemplate.yaml)
// run by an emulation of bcs-hook-operator (test/support/hook-operator.ts)
// against the agent's real admin server, whose tunnel count comes from a real
// relay carrying a real tunnel on loopback. The clock between polls is
// virtual, the HTTP calls are not.
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { type AdminServer, startAdminServer } from "../../src/admin/server.ts";
import { ScalingConfigSchema } from "../../src/scaling/config.ts";
import { ScalingSignals } from "../../src/scaling/signals.ts";
import {
  evaluateResult,
  jsonPathText,
  resolveArgs,
  runWebMetric,
  type WebMetric,
  workloadDeletesPod,
} from "../support/hook-operator.ts";
import { listen, type Running, request, sleep, startEcho, startRelay } from "./relay/helpers.ts";

const HERE = dirname(fileURLToPath(import.meta.url));
const TEMPLATE = join(HERE, "../../deploy/overlays/bk-bcs-hook/hooktemplate.yaml");
const shipped = parseYaml(readFileSync(TEMPLATE, "utf8")) as {
  spec: { metrics: WebMetric[]; args: { name: string }[] };
};
const SHIPPED_METRIC = shipped.spec.metrics[0] as WebMetric;

let admin: AdminServer;
let signals: ScalingSignals;
let relay: Running;
let echo: { port: number; server: Server };
const cleanups: Array<() => unknown> = [];

/** The shipped metric aimed at this test's admin port (the template's 9090 is the pod's). */
function metricFor(port: number): WebMetric {
  const m = structuredClone(SHIPPED_METRIC);
  m.provider.web.url = m.provider.web.url.replace(":9090/", `:${port}/`);
  return m;
}
const podArgs = { PodIP: "127.0.0.1", PodName: "hopway-agent-3", PodNamespace: "hopway" };

beforeEach(async () => {
  const registry = new Registry();
  signals = new ScalingSignals({
    config: ScalingConfigSchema.parse({ workload: "hopway-agent" }),
    podName: "hopway-agent-3",
    registry,
  });
  echo = await startEcho();
  relay = await startRelay({
    name: "hopway-agent-3",
    routes: [
      {
        from: "hopway-agent-3",
        to: "app1",
        hops: [{ node: "app1", address: `ipv4://127.0.0.1:${echo.port}`, priority: 1, alternatives: [] }],
      },
    ],
  });
  admin = await startAdminServer({
    listen: "127.0.0.1:0",
    registry,
    scaling: signals,
    tunnels: () => relay.relay.activeTunnels,
    ready: () => true,
  });
});
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
  await admin.close();
  await relay.close();
  echo.server.close();
});

async function openTunnel(): Promise<Socket> {
  const a = await request(relay.port, `CONNECT app1:${echo.port} HTTP/1.1\r\nHost: app1\r\n\r\n`);
  expect(a.status).toBe(200);
  a.socket.resume();
  return a.socket;
}

describe("the shipped HookTemplate", () => {
  it("asks the pre-delete endpoint on the pod's IP and reads may_delete", () => {
    expect(SHIPPED_METRIC.provider.web.url).toBe("http://{{ args.PodIP }}:9090/v1/hooks/pre-delete");
    expect(shipped.spec.args.map((a) => a.name)).toEqual(["PodIP", "PodName", "PodNamespace"]);
    expect(resolveArgs(SHIPPED_METRIC.provider.web.url, podArgs)).toBe("http://127.0.0.1:9090/v1/hooks/pre-delete");
    expect(SHIPPED_METRIC).toMatchObject({
      interval: "2s",
      successCondition: "asInt(result) == 1",
      consecutiveSuccessfulLimit: 1,
      failureLimit: 1800,
      consecutiveErrorLimit: 30,
    });
    expect(SHIPPED_METRIC.count).toBeUndefined(); // poll until an outcome, not a fixed number of times
  });

  it("polls while the pod holds state or tunnels, and succeeds once it has drained", async () => {
    signals.setReport({ load: 0.4, holds_state: true, state_items: 50 });
    const tunnel = await openTunnel();
    expect(relay.relay.activeTunnels).toBe(1);
    const result = await runWebMetric(metricFor(admin.address.port), {
      args: podArgs,
      beforeMeasurement: async (at) => {
        // The application hands its state over after a minute; the last tunnel closes a minute later.
        if (at === 60_000) signals.setReport({ load: 0.1, holds_state: false, state_items: 0 });
        if (at === 120_000) {
          tunnel.end();
          await once(tunnel, "close");
          while (relay.relay.activeTunnels > 0) await sleep(5);
        }
      },
    });
    expect(result.phase).toBe("Successful");
    expect(workloadDeletesPod(result.phase)).toBe(true);
    expect(result.elapsedMs).toBe(120_000);
    // Every 2 s from 0 to 120 s: 60 answers of 0 (state, then only the tunnel), then the 1.
    expect(result.measurements).toHaveLength(61);
    expect(result.measurements.slice(0, 60).every((m) => m.phase === "Failed" && m.value === "0")).toBe(true);
    expect(result.measurements.at(-1)).toMatchObject({ phase: "Successful", value: "1", at: 120_000 });
    expect(result.failed).toBe(60);
    expect(result.error).toBe(0);
  });

  it("an open tunnel alone keeps the pod: state gone is not enough", async () => {
    signals.setReport({ load: 0, holds_state: false, state_items: 0 });
    await openTunnel();
    const result = await runWebMetric(metricFor(admin.address.port), { args: podArgs, maxMeasurements: 2000 });
    expect(result.phase).toBe("Failed");
    expect(result.measurements.every((m) => m.value === "0")).toBe(true);
  });

  it("a pod that never drains fails the hook after failureLimit (1 h): the pod is not deleted", async () => {
    signals.setReport({ load: 0.9, holds_state: true, state_items: 3 });
    const result = await runWebMetric(metricFor(admin.address.port), { args: podArgs, maxMeasurements: 2000 });
    expect(result.phase).toBe("Failed");
    expect(workloadDeletesPod(result.phase)).toBe(false);
    expect(result.failed).toBe(1801); // failed > failureLimit
    expect(result.elapsedMs).toBe(3_600_000);
  });

  it("an unreachable agent errors the hook after consecutiveErrorLimit: the pod is not deleted", async () => {
    // A loopback port with nothing listening: every call is refused.
    const closed = createServer();
    const port = await listen(closed);
    await new Promise((r) => closed.close(r));
    const result = await runWebMetric(metricFor(port), { args: podArgs, maxMeasurements: 100 });
    expect(result.phase).toBe("Error");
    expect(workloadDeletesPod(result.phase)).toBe(false);
    expect(result.consecutiveError).toBe(31); // > 30
    expect(result.elapsedMs).toBe(60_000);
    expect(result.measurements[0]?.message).toMatch(/fetch failed/);
  });

  it("errors interleaved with answers do not add up: an agent that restarts is polled on", async () => {
    signals.setReport({ load: 0.4, holds_state: true, state_items: 5 });
    const port = admin.address.port;
    const registry = new Registry();
    let restarted: AdminServer | undefined;
    cleanups.push(() => restarted?.close());
    const result = await runWebMetric(metricFor(port), {
      args: podArgs,
      beforeMeasurement: async (at) => {
        if (at === 10_000) await admin.close(); // 20 refused calls follow: under the limit of 30
        if (at === 50_000) {
          // Back on the same port, drained (a new process with no state).
          restarted = await startAdminServer({
            listen: `127.0.0.1:${port}`,
            registry,
            scaling: new ScalingSignals({
              config: ScalingConfigSchema.parse({ workload: "hopway-agent" }),
              podName: "hopway-agent-3",
              registry,
            }),
            tunnels: () => 0,
            ready: () => true,
          });
        }
      },
    });
    expect(result.phase).toBe("Successful");
    expect(result.error).toBe(20);
    expect(result.elapsedMs).toBe(50_000);
    admin = restarted as AdminServer;
    restarted = undefined;
  });

  it("an agent that accepts but never answers is an Error after timeoutSeconds, not a stuck hook", async () => {
    const held: Socket[] = [];
    const silent = createServer((s) => {
      held.push(s);
      s.on("error", () => {});
    });
    const port = await listen(silent);
    cleanups.push(() => {
      for (const s of held) s.destroy();
      silent.close();
    });
    const metric = { ...metricFor(port), consecutiveErrorLimit: 0 };
    const started = performance.now();
    const result = await runWebMetric(metric, { args: podArgs, maxMeasurements: 3 });
    const took = performance.now() - started;
    expect(result.phase).toBe("Error");
    expect(SHIPPED_METRIC.provider.web.timeoutSeconds).toBe(2);
    expect(took).toBeGreaterThanOrEqual(1_900);
    expect(took).toBeLessThan(6_000);
  });
});

describe("the operator's evaluation (emulation checks)", () => {
  it("reads the JSON path as client-go's jsonpath prints it", () => {
    expect(jsonPathText("{$.may_delete}", { may_delete: 1 })).toBe("1");
    expect(jsonPathText("{.a.b}", { a: { b: "x" } })).toBe("x");
    expect(() => jsonPathText("{$.may_delete}", { other: 1 })).toThrow(/not found/);
  });

  it("conditions: success only, failure only, both, and an unparsable result", () => {
    const m = (c: Partial<WebMetric>): WebMetric => ({ name: "m", provider: { web: { url: "", jsonPath: "" } }, ...c });
    expect(evaluateResult("1", m({ successCondition: "asInt(result) == 1" }))).toBe("Successful");
    expect(evaluateResult("0", m({ successCondition: "asInt(result) == 1" }))).toBe("Failed");
    expect(evaluateResult("0", m({ failureCondition: "asInt(result) > 5" }))).toBe("Successful");
    expect(
      evaluateResult("3", m({ successCondition: "asInt(result) > 5", failureCondition: "asInt(result) < 1" })),
    ).toBe("Inconclusive");
    expect(evaluateResult("yes", m({ successCondition: "asInt(result) == 1" }))).toBe("Error");
    expect(evaluateResult("anything", m({}))).toBe("Successful");
  });
});
