// The edge as `wrangler dev` runs it, with its storage on disk: requests
// without a valid credential for a realm leave no file behind, the admin's
// realm creation does, and signed tokens survive a restart with the same key.
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createRealm, type LocalEdge, startLocalEdge } from "../support/local-edge.ts";

const dir = mkdtempSync(join(tmpdir(), "hopway-edge-storage-"));
let edge: LocalEdge | undefined;

afterAll(async () => {
  await edge?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Every SQLite database under the persisted state: one per Durable Object that ever stored anything. */
function sqliteFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith(".sqlite")) out.push(p);
    }
  };
  walk(root);
  return out.sort();
}

describe("edge storage under wrangler dev", () => {
  it("500 requests without a valid credential to new realm names add no .sqlite file", async () => {
    edge = await startLocalEdge({ persistDir: dir });
    const url = edge.url;
    await createRealm(edge, "real", { allowLoopback: false });
    const tok = await fetch(`${url}/v1/realms/real/tokens`, {
      method: "POST",
      headers: { authorization: `Bearer ${edge.adminToken}`, "content-type": "application/json" },
      body: JSON.stringify({ role: "reader" }),
    });
    const reader = ((await tok.json()) as { token: string }).token;
    const before = sqliteFiles(dir);
    expect(before.length).toBeGreaterThanOrEqual(2); // the directory and the realm "real"

    const credentials = [
      undefined,
      "Bearer garbage",
      `Bearer ${reader}`,
      `Bearer hwt_${"0".repeat(16)}_${"1".repeat(48)}`,
    ];
    const statuses = new Map<number, number>();
    const n = 500;
    for (let i = 0; i < n; i += 25) {
      const batch = Array.from({ length: 25 }, async (_, j) => {
        const k = i + j;
        const auth = credentials[k % credentials.length];
        const res = await fetch(
          `${url}/v1/realms/ghost-${k}/nodes`,
          auth === undefined ? {} : { headers: { authorization: auth } },
        );
        await res.arrayBuffer();
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      });
      await Promise.all(batch);
    }
    const admin = await fetch(`${url}/v1/realms/ghost-admin/nodes`, {
      headers: { authorization: `Bearer ${edge.adminToken}` },
    });
    expect(admin.status).toBe(404);
    expect([...statuses]).toEqual([[401, n]]);
    const after = sqliteFiles(dir);
    expect(after).toEqual(before);
    console.log(
      `edge storage: ${n} unauthenticated requests to new realms → .sqlite files ${before.length} before, ${after.length} after`,
    );

    // A restart with the same key keeps the realm and its token working.
    const { adminToken, tokenKey } = edge;
    await edge.stop();
    edge = await startLocalEdge({ persistDir: dir, adminToken, tokenKey });
    const again = await fetch(`${edge.url}/v1/realms/real/nodes`, { headers: { authorization: `Bearer ${reader}` } });
    expect(again.status).toBe(200);
  });
});
