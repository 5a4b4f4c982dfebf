// Whole agents (startAgent) registering one relay record each with a real edge on loopback, for the
// e2e tests that watch what an agent does and says: its log lines are kept in order.
import type { HopwayRecord } from "@hopway/core";
import { stringify as stringifyYaml } from "yaml";
import { freePort } from "../../../test/support/loopback-mesh.ts";
import { parseConfig } from "../../src/config.ts";
import { createLogger } from "../../src/log.ts";
import { type RunningAgent, startAgent } from "../../src/main.ts";

/** A relay record in `namespace` whose one gateway is the relay's loopback port. */
export function relayRecord(name: string, namespace: string, port: number): HopwayRecord {
  return {
    type: "node",
    name,
    metadata: { namespace_name: namespace, kind: "relay" },
    gateway: [{ priority: 1, address: `ipv4://127.0.0.1:${port}`, match: { metadata: { namespace_name: namespace } } }],
  } as HopwayRecord;
}

export interface LaunchedAgent {
  agent: RunningAgent;
  lines: Array<Record<string, unknown>>;
}

/** Starts an agent for relay `name` (its record, a relay listener on a free port, admin on port 0). */
export async function launchRelayAgent(o: {
  edgeUrl: string;
  realm: string;
  namespace: string;
  name: string;
  token: string;
  dataDir: string;
  /** More `edge` settings (`takeover`, …). */
  edge?: Record<string, unknown>;
  logLevel?: "info" | "error";
}): Promise<LaunchedAgent> {
  const port = await freePort("127.0.0.1");
  const level = o.logLevel ?? "info";
  const config = parseConfig(
    stringifyYaml({
      edge: { url: o.edgeUrl, realm: o.realm, token: o.token, lease_seconds: 30, wait_seconds: 5, ...o.edge },
      node: o.name,
      records: [relayRecord(o.name, o.namespace, port)],
      relay: { listen: [`127.0.0.1:${port}`] },
      admin: { listen: "127.0.0.1:0" },
      data_dir: o.dataDir,
      shutdown: { drain_seconds: 1 },
      log_level: level,
    }),
    {},
  );
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger(level, { node: o.name }, (line) => lines.push(JSON.parse(line) as Record<string, unknown>));
  return { agent: await startAgent(config, log), lines };
}

/** Polls `probe` every 50 ms until it gives a value; throws naming `what` after `ms`. */
export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  ms = 30_000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
