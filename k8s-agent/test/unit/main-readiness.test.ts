// Readiness says whether the relay can route. A corrupt persisted route table and an
// unreachable edge leave the relay refusing every CONNECT with 503: /readyz must say
// so (503 with a reason) until a valid table arrives, and then turn 200.
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { stringify as stringifyYaml } from "yaml";
import { parseConfig } from "../../src/config.ts";
import { createLogger } from "../../src/log.ts";
import { type RunningAgent, startAgent } from "../../src/main.ts";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe("agent readiness", () => {
  it("is 503 with a reason on a corrupt table and no edge, 200 once a table arrives", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "hopway-ready-"));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    await writeFile(join(dataDir, "route-table.json"), '{"table": {"node": "relay-r", "version": "x"', "utf8");

    // The edge: down (every request 503) until `up`, then it serves a table and accepts leases.
    let up = false;
    let tableRequests = 0;
    const edge = createServer((req, res) => {
      req.resume();
      if (!up) {
        res.writeHead(503, { "content-type": "application/json" });
        res.end('{"error":{"code":"internal","message":"down"}}');
        return;
      }
      if (req.url?.includes("/route-tables/")) {
        tableRequests++;
        res.writeHead(200, { "content-type": "application/json", etag: '"3"' });
        res.end(JSON.stringify({ node: "relay-r", version: 3, routes: [] }));
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    });
    edge.listen(0, "127.0.0.1");
    await once(edge, "listening");
    cleanups.push(() => {
      edge.closeAllConnections();
      edge.close();
    });
    const edgePort = (edge.address() as { port: number }).port;

    const config = parseConfig(
      stringifyYaml({
        edge: { url: `http://127.0.0.1:${edgePort}`, realm: "r", token: "t", wait_seconds: 1 },
        node: "relay-r",
        relay: { listen: ["127.0.0.1:0"] },
        admin: { listen: "127.0.0.1:0" },
        data_dir: dataDir,
        shutdown: { drain_seconds: 0 },
        log_level: "error",
      }),
      {},
    );
    const agent: RunningAgent = await startAgent(config, createLogger("error", { node: "relay-r" }));
    cleanups.push(() => agent.shutdown("test over"));
    const url = agent.admin?.url as string;

    const before = await fetch(`${url}/readyz`);
    expect(before.status).toBe(503);
    const body = (await before.json()) as { status: string; reason: string; message: string };
    expect(body.status).toBe("not_ready");
    expect(body.reason).toBe("no_route_table");
    expect(body.message).toMatch(/no valid route table/);

    up = true;
    const upAt = performance.now();
    let status = 0;
    const deadline = Date.now() + 20_000;
    while (status !== 200 && Date.now() < deadline) {
      status = (await fetch(`${url}/readyz`)).status;
      if (status !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe(200);
    console.log(
      `readiness: 503 (${body.message}) → 200 ${Math.round(performance.now() - upAt)} ms after the edge came up`,
    );
    expect(tableRequests).toBeGreaterThan(0);
    expect(agent.relay.openConnections).toBe(0);
  });
});
