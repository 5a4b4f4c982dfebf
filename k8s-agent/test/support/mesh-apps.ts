// What the agent's end-to-end tests on a loopback mesh share: more applications beside app1,
// running a real client program, and reading one series of a relay's metrics.
import { spawn } from "node:child_process";
import type { Mesh, Topology } from "../../../test/support/loopback-mesh.ts";

/** More applications in app1's namespace, reachable the same way as app1. */
export function likeApp1(name: string, address: string): Topology {
  return {
    [name]: {
      discovery: {
        name,
        metadata: { namespace_name: "namespace_1", kind: "app", labels: { "area.region": "CN" } },
        gateway: [{ priority: 1, address, match: { metadata: { namespace_name: "namespace_1" } } }],
        advertise_relay: { metadata: { namespace_name: "namespace_1", kind: "relay" } },
      },
    },
  };
}

/** Runs a program to its end (asynchronously: servers in this process keep answering meanwhile). */
export function run(cmd: string, args: string[]): Promise<{ stdout: string; stderr: string; code: number | null }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    child.on("exit", (code) => resolve({ stdout, stderr, code }));
  });
}

/** A relay's /metrics text, from the admin address its agent logged. */
export async function metricsOf(mesh: Mesh, relay: string): Promise<string> {
  const line = await mesh.agents.get(relay)?.waitFor((l) => l.msg === "admin listening");
  return (await fetch(`${String(line?.url)}/metrics`)).text();
}

/** One unlabelled or fully labelled series' value; NaN when absent. */
export function metricValue(text: string, series: string): number {
  for (const l of text.split("\n")) if (l.startsWith(`${series} `)) return Number(l.slice(series.length + 1));
  return Number.NaN;
}
