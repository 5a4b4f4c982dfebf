// The topology page end to end: the real Worker under wrangler dev, the
// cross-region example imported through the API, and Debian's Chromium driven
// by playwright-core reading the page with a reader token. Assertions are on DOM
// state (data attributes of the SVG elements, the hop list), never on pixels.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRealm, type LocalEdge, startLocalEdge } from "../support/local-edge.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const ARTIFACTS = join(ROOT, "test-artifacts");
const CHROMIUM = "/usr/bin/chromium";
const REALM = "ui-e2e";

let edge: LocalEdge;
let browser: Browser;
let page: Page;
let readerToken: string;
const pageErrors: string[] = [];

async function api(method: string, path: string, body?: string, type = "application/json"): Promise<Response> {
  const headers: Record<string, string> = { authorization: `Bearer ${edge.adminToken}` };
  if (body !== undefined) headers["content-type"] = type;
  return fetch(`${edge.url}/v1/realms/${REALM}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
}

async function ok(response: Promise<Response>): Promise<unknown> {
  const r = await response;
  const text = await r.text();
  if (!r.ok) throw new Error(`HTTP ${r.status}: ${text}`);
  return JSON.parse(text);
}

const drawnNodes = () =>
  page.$$eval("#graph g.node", (els) => els.map((e) => e.getAttribute("data-node") ?? "").sort());

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium (.ci/system-deps.sh)`);
  // The bundle embeds the core's dial rule: rebuild it so the page under test runs the current core.
  execFileSync(process.execPath, [join(ROOT, "src/edge/ui/build.mjs")], { stdio: "pipe" });
  edge = await startLocalEdge();
  await createRealm(edge, REALM);
  const topology = readFileSync(join(ROOT, "test/fixtures/topologies/cross-region.yaml"), "utf8");
  await ok(api("POST", "/import", topology, "application/yaml"));
  const created = (await ok(api("POST", "/tokens", JSON.stringify({ role: "reader", namespaces: [] })))) as {
    token: string;
  };
  readerToken = created.token;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
  page.on("pageerror", (e) => pageErrors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") pageErrors.push(`console: ${m.text()}`);
  });
});

afterAll(async () => {
  await browser?.close();
  await edge?.stop();
});

describe("topology page", () => {
  it("serves the page with a strict Content-Security-Policy and no token in any URL", async () => {
    const r = await fetch(`${edge.url}/ui/${REALM}`);
    expect(r.status).toBe(200);
    const csp = r.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain("unsafe-inline");
    expect(r.headers.get("x-content-type-options")).toBe("nosniff");
    expect(r.headers.get("x-frame-options")).toBe("DENY");
    // Only the page's own script: no inline script for the CSP to have to allow.
    const html = await r.text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)/);
    const js = await fetch(`${edge.url}/ui/assets/app.js`);
    expect(js.headers.get("content-type")).toMatch(/^text\/javascript/);
    const etag = js.headers.get("etag") ?? "";
    expect(etag).not.toBe("");
    const again = await fetch(`${edge.url}/ui/assets/app.js`, { headers: { "if-none-match": etag } });
    expect(again.status).toBe(304);
    expect((await fetch(`${edge.url}/ui/Not_A_Realm`)).status).toBe(404);
  });

  it("asks for a token, and refuses a bad one with the edge's code", async () => {
    await page.goto(`${edge.url}/ui/${REALM}`);
    await page.waitForSelector("#login:not([hidden])");
    await page.fill("#login-token", "not-a-token");
    await page.click("#login-form button[type=submit]");
    await expect.poll(() => page.textContent("#login-error"), { timeout: 10_000 }).toContain("unauthorized");
  });

  it("takes the reader token from the fragment, keeps it out of the URL, and draws every record", async () => {
    await page.goto("about:blank");
    await page.goto(`${edge.url}/ui/${REALM}#token=${encodeURIComponent(readerToken)}`);
    await page.waitForSelector("#view:not([hidden])");
    await expect.poll(drawnNodes, { timeout: 10_000 }).toEqual(["app1", "app2", "relaysvr1", "relaysvr2", "relaysvr3"]);
    expect(new URL(page.url()).hash).toBe("");
    expect(await page.evaluate((k) => sessionStorage.getItem(k), `hopway.token:${REALM}`)).toBe(readerToken);

    // Regions by area.region, namespaces inside them; relays marked by kind.
    const regions = await page.$$eval("#graph g.region", (els) => els.map((e) => e.getAttribute("data-region")));
    expect(regions).toEqual(["CN", "US", "any"]);
    expect(await page.getAttribute('g.node[data-node="relaysvr3"]', "data-kind-class")).toBe("relay");
    expect(await page.getAttribute('g.node[data-node="app1"]', "data-kind-class")).toBe("app");
    // Gateways with address and priority in the records table.
    expect(await page.textContent('#records tr[data-node="relaysvr1"] td.gw')).toContain("p3 → ipv4://192.16.0.1:1234");

    // Relay links as the core's dial rule gives them: relaysvr2 cannot dial relaysvr1 (docs/contract/routing.md §6.2).
    const links = await page.$$eval("#graph path.link", (els) =>
      els.map((e) => `${e.getAttribute("data-link-from")}>${e.getAttribute("data-link-to")}`).sort(),
    );
    expect(links).toContain("relaysvr2>relaysvr3");
    expect(links).toContain("relaysvr3>relaysvr1");
    expect(links).not.toContain("relaysvr2>relaysvr1");
    expect(links).not.toContain("relaysvr1>relaysvr2");
  });

  it("marks relay links up or down as the relays report them with their heartbeats", async () => {
    const beat = (name: string, links: unknown) =>
      ok(api("POST", `/nodes/${name}/heartbeat`, JSON.stringify({ links })));
    await beat("relaysvr2", [{ peer: "relaysvr3", up: true, streams: 2 }]);
    await beat("relaysvr3", [{ peer: "relaysvr1", up: false, streams: 0 }]);
    await page.reload();
    await page.waitForSelector("#view:not([hidden])");
    const state = (from: string, to: string) =>
      page.getAttribute(`#graph path.link[data-link-from="${from}"][data-link-to="${to}"]`, "data-link-state");
    await expect.poll(() => state("relaysvr2", "relaysvr3"), { timeout: 10_000 }).toBe("up");
    expect(await state("relaysvr3", "relaysvr1")).toBe("down");
    expect(await state("relaysvr1", "relaysvr3")).toBe("unknown");
    expect(
      await page.textContent('#graph path.link[data-link-from="relaysvr2"][data-link-to="relaysvr3"] title'),
    ).toContain("link up, 2 tunnels");
  });

  it("draws the route app2 → app1 through relaysvr2, relaysvr3 and relaysvr1 with each hop's address", async () => {
    await page.selectOption("#route-from", "app2");
    await page.selectOption("#route-to", "app1");
    await page.waitForSelector('#route-panel[data-state="found"]', { timeout: 10_000 });
    const onRoute = await page.$$eval("#graph g.node[data-route-hop]", (els) =>
      els
        .map((e) => [Number(e.getAttribute("data-route-hop")), e.getAttribute("data-node")] as const)
        .sort((a, b) => a[0] - b[0])
        .map(([, n]) => n),
    );
    expect(onRoute).toEqual(["app2", "relaysvr2", "relaysvr3", "relaysvr1", "app1"]);
    const steps = await page.$$eval("#graph path.route-step", (els) =>
      els.map((e) => `${e.getAttribute("data-step")}:${e.getAttribute("data-from")}>${e.getAttribute("data-to")}`),
    );
    expect(steps).toEqual(["1:app2>relaysvr2", "2:relaysvr2>relaysvr3", "3:relaysvr3>relaysvr1", "4:relaysvr1>app1"]);
    const hops = await page.$$eval("#route-hops li", (els) => els.map((e) => e.textContent ?? ""));
    expect(hops).toHaveLength(4);
    expect(hops[0]).toMatch(/^relaysvr2\s+ipv4:\/\/10\.1\.1\.1:1234\s+priority 1/);
    expect(hops[1]).toMatch(/^relaysvr3\s+ipv4:\/\/192\.18\.0\.1:1234\s+priority 2/);
    expect(hops[2]).toMatch(/^relaysvr1\s+ipv4:\/\/192\.16\.0\.1:1234\s+priority 3/);
    expect(hops[3]).toMatch(/^app1\s+ipv4:\/\/10\.0\.0\.1:1234\s+priority 1/);

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "topology.png"), fullPage: true });
  });

  it("says why there is no route", async () => {
    // Reachable by nobody: its only gateway asks for a namespace no record is in.
    await ok(
      api(
        "PUT",
        "/nodes/island",
        JSON.stringify({
          name: "island",
          metadata: { namespace_name: "namespace_9", kind: "app" },
          gateway: [
            { priority: 1, address: "ipv4://10.9.0.1:1234", match: { metadata: { namespace_name: "nowhere" } } },
          ],
        }),
      ),
    );
    await expect.poll(drawnNodes, { timeout: 10_000 }).toContain("island");
    await page.selectOption("#route-from", "app2");
    await page.selectOption("#route-to", "island");
    await page.waitForSelector('#route-panel[data-state="none-found"]', { timeout: 10_000 });
    const status = (await page.textContent("#route-status")) ?? "";
    expect(status).toMatch(/^No route: (no_matching_gateway|no_relay_chain)/);
    expect(await page.$$("#graph g.node[data-route-hop]")).toHaveLength(0);
  });

  it("draws one route per member when the target is a group", async () => {
    await ok(
      api(
        "PUT",
        "/nodes/apps",
        // Members of two namespaces on purpose: any_namespace says so (docs/contract/records.md §1.4).
        JSON.stringify({
          name: "apps",
          type: "group",
          any_namespace: true,
          node_list: [{ node_name: "app1" }, { node_name: "island" }],
        }),
      ),
    );
    await expect.poll(() => page.$$eval("#route-to option", (os) => os.map((o) => o.textContent))).toContain("apps");
    await page.selectOption("#route-from", "app2");
    await page.selectOption("#route-to", "apps");
    await page.waitForSelector('#route-panel[data-state="found"]', { timeout: 10_000 });
    expect(await page.textContent("#route-status")).toBe("Group of 2: 1 member reachable.");
    const members = await page.$$eval("#route-hops > li", (els) => els.map((e) => e.getAttribute("data-node")));
    expect(members).toEqual(["app1", "island"]);
    expect(await page.$$("#graph path.route-step")).toHaveLength(4);
    expect(await page.getAttribute('#graph g.node[data-node="app1"]', "data-route-hop")).toBe("4");
    expect((await api("DELETE", "/nodes/apps")).status).toBe(200);
  });

  it("renders hostile record contents as text", async () => {
    const hostile = `<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>`;
    await ok(
      api(
        "PUT",
        "/nodes/hostile",
        JSON.stringify({
          name: "hostile",
          custom_data: hostile,
          metadata: { namespace_name: "<b>ns</b>", kind: "app" },
        }),
      ),
    );
    await expect.poll(drawnNodes, { timeout: 10_000 }).toContain("hostile");
    await page.click('#graph g.node[data-node="hostile"]');
    await page.waitForSelector("#details:not([hidden])");
    expect(await page.textContent("#details-list")).toContain(hostile);
    expect(await page.$$("img")).toHaveLength(0);
    expect(await page.$$("#graph b, #details b")).toHaveLength(0);
    expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
  });

  it("follows changes live: a deleted record and an expired lease disappear within seconds", async () => {
    const deleted = await api("DELETE", "/nodes/island");
    expect(deleted.status).toBe(200);
    const t0 = Date.now();
    await expect.poll(drawnNodes, { timeout: 5_000, interval: 100 }).not.toContain("island");
    const deleteMs = Date.now() - t0;

    await ok(
      api(
        "PUT",
        "/nodes/lease-relay",
        JSON.stringify({
          name: "lease-relay",
          ttl_seconds: 2,
          metadata: { namespace_name: "namespace_3", kind: "relay", labels: { "area.region": "any" } },
          gateway: [{ priority: 1, address: "ipv4://10.2.9.9:1234" }],
        }),
      ),
    );
    await expect.poll(drawnNodes, { timeout: 5_000, interval: 100 }).toContain("lease-relay");
    const t1 = Date.now();
    // Lease of 2 s, then within seconds of its end.
    await expect.poll(drawnNodes, { timeout: 8_000, interval: 100 }).not.toContain("lease-relay");
    const expiryMs = Date.now() - t1;
    console.log(`ui: deleted record gone after ${deleteMs} ms; 2 s lease gone after ${expiryMs} ms`);
    expect(await page.getAttribute("#live", "data-state")).toBe("live");
  });

  it("opens a realm from the picker at the root", async () => {
    const fresh = await browser.newPage();
    try {
      await fresh.goto(`${edge.url}/`);
      await fresh.waitForSelector("#login:not([hidden])");
      await fresh.fill("#login-realm", REALM);
      await fresh.fill("#login-token", readerToken);
      await fresh.click("#login-form button[type=submit]");
      await fresh.waitForURL(`${edge.url}/ui/${REALM}`);
      await expect
        .poll(() => fresh.$$eval("#graph g.node", (els) => els.length), { timeout: 10_000 })
        .toBeGreaterThanOrEqual(5);
      expect(fresh.url()).not.toContain(readerToken);
    } finally {
      await fresh.close();
    }
  });

  it("raised no script or Content-Security-Policy errors", () => {
    // The failed login above logs its 401 as a console error; nothing else may.
    expect(pageErrors.filter((e) => !/401|Unauthorized/i.test(e))).toEqual([]);
  });
});
