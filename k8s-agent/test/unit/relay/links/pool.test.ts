// The dialling side's bookkeeping on its own: a dial that fails before it starts gives back its
// place among the links held with that neighbour (max_links_per_peer).
import { once } from "node:events";
import { createServer, type Socket } from "node:net";
import { afterEach, expect, it } from "vitest";
import { relayIdentityForTest } from "../../../../../test/support/identity.ts";
import { DEFAULT_LINK_SETTINGS } from "../../../../src/relay/links/options.ts";
import { LinkPool } from "../../../../src/relay/links/pool.ts";
import { TEST_REALM } from "../helpers.ts";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

it("a dial that cannot start (a key that does not match its certificate) fails as such and holds no link place", async () => {
  const good = relayIdentityForTest(TEST_REALM, "r2");
  const other = relayIdentityForTest(TEST_REALM, "r3").material();
  const identity = relayIdentityForTest(TEST_REALM, "r2");
  const material = good.material();
  if (material === undefined || other === undefined) throw new Error("no test identity");
  identity.set({ ...material, key: other.key });
  const reached: Socket[] = [];
  const srv = createServer((s) => {
    reached.push(s);
    s.destroy();
  });
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  cleanups.push(() => srv.close());
  const port = (srv.address() as { port: number }).port;
  const logs: string[] = [];
  const pool = new LinkPool({
    name: "r2",
    realm: TEST_REALM,
    identity,
    settings: { ...DEFAULT_LINK_SETTINGS, maxLinksPerPeer: 3, redialInitialMs: 1, redialMaxMs: 1 },
    log: (_level, msg, fields) => logs.push(`${msg} ${String(fields.reason ?? "")}`),
  });
  cleanups.push(() => pool.destroyAll());
  const addr = { address: `ipv4://127.0.0.1:${port}`, host: "127.0.0.1", port, path: "" };
  const open = () =>
    new Promise<string>((resolve) => pool.open("r3", addr, "x:1", "", (r) => resolve(r.ok ? "ok" : (r.detail ?? ""))));
  for (let i = 0; i < 5; i++) {
    const detail = await open();
    expect(detail).not.toContain("peer_streams_exhausted");
    await new Promise((r) => setTimeout(r, 3));
  }
  expect(logs.filter((l) => l === "link dial failed tls_handshake").length).toBeGreaterThanOrEqual(1);
  // The operator fixes the key: the next tunnel dials again rather than finding every place taken.
  identity.set(material);
  await open();
  expect(reached.length).toBeGreaterThan(0);
});
