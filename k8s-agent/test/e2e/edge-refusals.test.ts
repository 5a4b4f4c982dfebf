// What an agent does when the edge, as configured, will not let it do its job:
// a token the edge refuses, records of the same name that someone else put
// in the realm (an import), and a namespace at its record limit. Real edge (workerd), real agent (startAgent), all on
// loopback. The person running it must learn what is wrong from one log line,
// /readyz and a metric, and the agent must never replace or delete a record it
// did not register unless told to. A token past its write budget is paced, not an outage.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { HopwayRecord } from "@hopway/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adminApi, createRealm, type LocalEdge, startLocalEdge } from "../../../test/support/local-edge.ts";
import type { RunningAgent } from "../../src/main.ts";
import { type LaunchedAgent, launchRelayAgent, relayRecord, until } from "../support/relay-agents.ts";

const REALM = "refusals";
const NS = "namespace_1";
const workDir = mkdtempSync(join(tmpdir(), "hopway-refusals-"));
let edge: LocalEdge;
let agentToken: string;

const launch = (name: string, token: string, extra: { takeover?: boolean } = {}, dir = name): Promise<LaunchedAgent> =>
  launchRelayAgent({
    edgeUrl: edge.url,
    realm: REALM,
    namespace: NS,
    name,
    token,
    dataDir: join(workDir, dir),
    edge: extra,
  });

async function readyz(a: RunningAgent): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${a.admin?.url}/readyz`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function metric(a: RunningAgent, name: string): Promise<number | undefined> {
  const text = await (await fetch(`${a.admin?.url}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  return m ? Number(m[1]) : undefined;
}

beforeAll(async () => {
  edge = await startLocalEdge();
  await createRealm(edge, REALM, { allowLoopback: true });
  agentToken = String((await adminApi(edge, REALM, "POST", "/tokens", { role: "agent", namespaces: [NS] })).token);
}, 120_000);

afterAll(async () => {
  await edge?.stop();
  rmSync(workDir, { recursive: true, force: true });
});

describe("agent refusals", () => {
  it("a wrong token is said as unauthorized, with the realm and the role needed, in /readyz and a metric", async () => {
    const { agent, lines } = await launch("relay-badtoken", "hwt_not-a-token-of-this-realm");
    try {
      const line = await until("the unauthorized log line", () => lines.find((l) => l.msg === "edge unauthorized"));
      expect(line).toMatchObject({ level: "error", realm: REALM, token_role_needed: "agent", status: 401 });
      expect(String(line.error)).toContain(`realm '${REALM}'`);
      // Said as what it is, not as an outage.
      expect(lines.some((l) => l.msg === "edge unreachable")).toBe(false);
      const r = await readyz(agent);
      expect(r.status).toBe(503);
      expect(r.body).toMatchObject({ status: "not_ready", reason: "edge_unauthorized" });
      expect(await metric(agent, "hopway_edge_auth_failed")).toBe(1);
    } finally {
      await agent.shutdown("test");
    }
  });

  it("an imported record of the same name is neither replaced nor deleted, and /readyz says why", async () => {
    const imported = relayRecord("relay-imported", NS, 1);
    await adminApi(edge, REALM, "PUT", "/nodes/relay-imported", imported);
    const { agent, lines } = await launch("relay-imported", agentToken);
    try {
      await until("the refusal", () => lines.find((l) => l.msg === "refusing to take over a record"));
      const r = await readyz(agent);
      expect(r.status).toBe(503);
      expect(r.body).toMatchObject({ reason: "record_conflict" });
      expect(String(r.body.message)).toContain("edge.takeover: true");
      expect(await metric(agent, "hopway_edge_auth_failed")).toBe(0);
    } finally {
      await agent.shutdown("test");
    }
    const after = await adminApi(edge, REALM, "GET", "/nodes/relay-imported");
    expect(after.record).toEqual(imported);
    expect(after.ttl_seconds).toBeNull();
  });

  it("with edge.takeover: true the agent replaces it, and removes it when it stops", async () => {
    await adminApi(edge, REALM, "PUT", "/nodes/relay-taken", relayRecord("relay-taken", NS, 1));
    const { agent, lines } = await launch("relay-taken", agentToken, { takeover: true });
    try {
      await until("registration", () => lines.find((l) => l.msg === "registered"));
      const now = await adminApi(edge, REALM, "GET", "/nodes/relay-taken");
      expect(now.ttl_seconds).toBe(30);
      expect((await readyz(agent)).status).toBe(200);
    } finally {
      await agent.shutdown("test");
    }
    await expect(adminApi(edge, REALM, "GET", "/nodes/relay-taken")).rejects.toThrow(/404/);
  });

  it("a namespace at its record limit is said as a refused record, not a bad token, and heals when the limit is raised", async () => {
    const usage = (await adminApi(edge, REALM, "GET", "/limits")) as {
      usage: { namespaces: Record<string, { records: number }> };
    };
    const held = usage.usage.namespaces[NS]?.records ?? 0;
    await adminApi(edge, REALM, "PUT", "/limits", { namespaces: { [NS]: { records: held } } });
    const { agent, lines } = await launch("relay-over-limit", agentToken);
    try {
      const line = await until("the refusal", () => lines.find((l) => l.msg === "edge refused record"));
      expect(line).toMatchObject({ level: "error", realm: REALM, status: 403, code: "quota_exceeded" });
      expect(String(line.error)).toContain(`namespace '${NS}' holds ${held} records and may hold ${held}`);
      expect(lines.some((l) => l.msg === "edge forbidden")).toBe(false);
      const r = await readyz(agent);
      expect(r.status).toBe(503);
      expect(r.body).toMatchObject({ status: "not_ready", reason: "record_refused" });
      expect(await metric(agent, "hopway_edge_auth_failed")).toBe(0);
      // The agent's route-table polls go on answering (edge.wait_seconds 5): past one of them, the
      // refusal still stands, and it never counted as the edge being unreachable.
      await new Promise((r) => setTimeout(r, 6_000));
      expect((await readyz(agent)).body).toMatchObject({ reason: "record_refused" });
      const outage = lines.filter(
        (l) => l.msg === "edge unreachable" && /quota_exceeded|\b403\b/.test(String(l.error)),
      );
      expect(outage).toEqual([]);

      await adminApi(edge, REALM, "PUT", "/limits", { namespaces: { [NS]: { records: held + 1 } } });
      await until("registration", () => lines.find((l) => l.msg === "registered"), 30_000);
      expect(lines.some((l) => l.msg === "edge accepts the record again")).toBe(true);
      await until("ready", async () => ((await readyz(agent)).status === 200 ? true : undefined));
    } finally {
      await agent.shutdown("test");
      await adminApi(edge, REALM, "PUT", "/limits", {});
    }
  }, 60_000);

  it("a token past its write budget: the agent waits as told, says so once, and registers", async () => {
    // This test's own token, with a budget of its own (docs/contract/edge-api.md §14.1): one write
    // every 2 s. The test spends it just before the agent starts, so the agent's first write (its
    // registration) is refused, and it registers once the budget has refilled.
    const minted = await adminApi(edge, REALM, "POST", "/tokens", { role: "agent", namespaces: [NS] });
    const id = String(minted.id);
    await adminApi(edge, REALM, "PUT", "/limits", { tokens: { [id]: { writes_per_second: 0.5, write_burst: 1 } } });
    const spend = await fetch(`${edge.url}/v1/realms/${REALM}/nodes/relay-spent`, {
      method: "PUT",
      headers: { authorization: `Bearer ${String(minted.token)}`, "content-type": "application/json" },
      body: JSON.stringify(relayRecord("relay-spent", NS, 1)),
    });
    expect(spend.status).toBe(201);
    const { agent, lines } = await launch("relay-paced", String(minted.token));
    try {
      const line = await until("the rate-limit line", () => lines.find((l) => l.msg === "edge rate limit"));
      expect(line).toMatchObject({ level: "warn", realm: REALM, code: "rate_limited" });
      expect(String(line.error)).toContain(`token ${id} is past its write budget, 0.5 per second and 1 at once`);
      await until("registration", () => lines.find((l) => l.msg === "registered"), 30_000);
      await until("ready", async () => ((await readyz(agent)).status === 200 ? true : undefined), 30_000);
      expect(await metric(agent, "hopway_edge_throttled_total")).toBeGreaterThanOrEqual(1);
      // Throttled is not an outage: the edge answered every time.
      expect(await metric(agent, "hopway_edge_reachable")).toBe(1);
      expect(lines.filter((l) => /edge unreachable/.test(String(l.msg)))).toEqual([]);
      // Said once a minute at most, however many writes were refused.
      expect(lines.filter((l) => l.msg === "edge rate limit")).toHaveLength(1);
    } finally {
      await agent.shutdown("test");
      await adminApi(edge, REALM, "PUT", "/limits", {});
      await adminApi(edge, REALM, "DELETE", "/nodes/relay-spent");
    }
  }, 60_000);

  it("a second agent of the same name is refused while the first holds the lease, and takes over when it stops", async () => {
    const first = await launch("relay-twice", agentToken);
    let second: LaunchedAgent | undefined;
    try {
      await until("the first registration", () => first.lines.find((l) => l.msg === "registered"));
      await until("the first ready", async () => ((await readyz(first.agent)).status === 200 ? true : undefined));
      const held = (await adminApi(edge, REALM, "GET", "/nodes/relay-twice")) as { record: HopwayRecord };
      // Another pod, another data_dir: another instance.
      second = await launch("relay-twice", agentToken, {}, "relay-twice-elsewhere");
      const s = second;
      const line = await until("the refusal", () => s.lines.find((l) => l.msg === "edge refused record"));
      expect(line).toMatchObject({ level: "error", realm: REALM, status: 409, code: "name_in_use" });
      expect(String(line.error)).toContain("two agents register the same name");
      const r = await readyz(s.agent);
      expect(r.status).toBe(503);
      expect(r.body).toMatchObject({ status: "not_ready", reason: "record_refused" });
      // The first keeps its record: the second neither replaced nor renewed it.
      expect((await adminApi(edge, REALM, "GET", "/nodes/relay-twice")).record).toEqual(held.record);
      expect((await readyz(first.agent)).status).toBe(200);

      // The first stops and deregisters; the second registers its own record at its next attempt.
      await first.agent.shutdown("test");
      await until("the second registration", () => s.lines.find((l) => l.msg === "registered"), 40_000);
      const now = (await adminApi(edge, REALM, "GET", "/nodes/relay-twice")) as { record: HopwayRecord };
      expect(now.record).not.toEqual(held.record);
      await until("ready", async () => ((await readyz(s.agent)).status === 200 ? true : undefined));
    } finally {
      await first.agent.shutdown("test");
      await second?.agent.shutdown("test");
    }
    await expect(adminApi(edge, REALM, "GET", "/nodes/relay-twice")).rejects.toThrow(/404/);
  }, 60_000);
});
