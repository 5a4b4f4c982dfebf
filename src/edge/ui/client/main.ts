// The topology page. It draws what the edge says: the records from the nodes
// list (followed live with ETag long-polls), the relay links and routes from the
// edge's resolver. Every string from a record reaches the DOM through
// textContent or setAttribute, never as markup, so a record cannot inject HTML;
// the Content-Security-Policy the Worker sends is the second fence.

import { chooseGateway } from "../../../core/dial.ts";
import type { Gateway, Hop, HopwayRecord } from "../../../core/schema.ts";
import type { LinkStatus, RouteAnswer } from "../../../core/wire.ts";
import { Api, ApiError } from "./api.ts";
import { curve, type Drawable, type Layout, layout, type PlacedNode } from "./layout.ts";

const SVG_NS = "http://www.w3.org/2000/svg";
const WAIT_SECONDS = 20;
// Relays report their links with each heartbeat (a third of a lease); polling faster shows nothing new.
const LINK_POLL_MS = 10_000;
// The edge's realm rule: a DNS-1123 subdomain of at most 63 characters (core NAME_PATTERN,
// restated here so the page does not bundle zod for one regular expression).
const REALM_PATTERN = /^(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const tokenKey = (realm: string) => `hopway.token:${realm}`;

interface RelayLink {
  from: string;
  to: string;
  address: string | null;
  priority: number;
}

interface State {
  realm: string;
  api: Api;
  records: HopwayRecord[];
  /** The realm's shared namespaces (docs/contract/records.md §2.3); null: every namespace. */
  shared: string[] | null;
  version: number | null;
  links: RelayLink[];
  /** Reported link state by `from>peer`; a relay link missing here was not reported. */
  linkStatus: Map<string, LinkStatus>;
  from: string;
  to: string;
  route: RouteAnswer | null;
  routeError: string | null;
  selected: string | null;
  regionKey: string;
}

function $(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (!el) throw new Error(`page is missing #${id}`);
  return el;
}

function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number>,
  parent?: Element,
): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  parent?.appendChild(el);
  return el;
}

function html<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  text?: string,
  parent?: Element,
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (text !== undefined) el.textContent = text;
  parent?.appendChild(el);
  return el;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---- entry ---------------------------------------------------------------------

function start(): void {
  const match = /^\/ui\/([^/]+)\/?$/.exec(location.pathname);
  const realm = match ? decodeURIComponent(match[1] as string) : null;

  // A token handed over in the fragment never reaches the server or its logs;
  // it is moved to session storage at once and wiped from the address bar and history.
  const fragment = new URLSearchParams(location.hash.slice(1));
  const handed = fragment.get("token");
  if (handed !== null) {
    if (realm && REALM_PATTERN.test(realm) && handed !== "") sessionStorage.setItem(tokenKey(realm), handed);
    history.replaceState(null, "", location.pathname + location.search);
  }

  wireLogin(realm);
  if (!realm || !REALM_PATTERN.test(realm)) {
    showLogin(realm ?? "", realm ? `'${realm}' is not a realm name` : "");
    return;
  }
  const token = sessionStorage.getItem(tokenKey(realm));
  if (!token) {
    showLogin(realm, "");
    return;
  }
  openRealm(realm, token);
}

function wireLogin(realm: string | null): void {
  const form = $("login-form") as HTMLFormElement;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const r = ($("login-realm") as HTMLInputElement).value.trim();
    const t = ($("login-token") as HTMLInputElement).value.trim();
    if (!REALM_PATTERN.test(r)) {
      $("login-error").textContent = "A realm name is lower-case letters, digits, '-' and '.'.";
      return;
    }
    sessionStorage.setItem(tokenKey(r), t);
    if (r === realm) openRealm(r, t);
    else location.assign(`/ui/${encodeURIComponent(r)}`);
  });
  $("logout").addEventListener("click", () => {
    if (realm) sessionStorage.removeItem(tokenKey(realm));
    location.reload();
  });
}

function showLogin(realm: string, error: string): void {
  $("view").hidden = true;
  $("login").hidden = false;
  $("logout").hidden = true;
  ($("login-realm") as HTMLInputElement).value = realm;
  $("login-error").textContent = error;
  ($(realm ? "login-token" : "login-realm") as HTMLInputElement).focus();
}

let generation = 0;

function openRealm(realm: string, token: string): void {
  const myGeneration = ++generation;
  $("login").hidden = true;
  $("view").hidden = false;
  $("logout").hidden = false;
  $("realm-title").textContent = `realm ${realm}`;
  document.title = `Hopway · ${realm}`;
  const state: State = {
    realm,
    api: new Api(realm, token),
    records: [],
    shared: null,
    version: null,
    links: [],
    linkStatus: new Map(),
    from: "",
    to: "",
    route: null,
    routeError: null,
    selected: null,
    regionKey: ($("region-key") as HTMLInputElement).value.trim() || "area.region",
  };
  wireControls(state);
  void follow(state, () => myGeneration === generation);
  void followLinks(state, () => myGeneration === generation);
}

// ---- live data -------------------------------------------------------------------

function setLive(kind: "live" | "error" | "idle", text: string): void {
  const el = $("live");
  el.dataset.state = kind;
  el.textContent = text;
}

async function follow(state: State, current: () => boolean): Promise<void> {
  let etag: string | null = null;
  let backoff = 1000;
  while (current()) {
    try {
      const snapshot = await state.api.nodes(etag, WAIT_SECONDS);
      backoff = 1000;
      if (snapshot) {
        state.records = snapshot.records;
        state.shared = snapshot.shared;
        state.version = snapshot.version;
        etag = snapshot.etag;
        await refreshDerived(state);
        render(state);
      }
      setLive("live", `live · version ${state.version ?? "?"} · ${new Date().toLocaleTimeString()}`);
      // Without an ETag the edge cannot hold the request; fall back to a gentle poll.
      if (!etag) await sleep(2000);
    } catch (error) {
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
        sessionStorage.removeItem(tokenKey(state.realm));
        showLogin(state.realm, `${error.code}: ${error.message}`);
        setLive("error", error.code);
        return;
      }
      const reason = error instanceof ApiError ? error.code : error instanceof Error ? error.message : String(error);
      setLive("error", `reconnecting (${reason})`);
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 15_000);
    }
  }
}

/** Link state is a picture repainted by heartbeats: poll it, and redraw only when it changed. */
async function followLinks(state: State, current: () => boolean): Promise<void> {
  let last = "";
  while (current()) {
    try {
      const links = await state.api.links();
      const key = JSON.stringify(links.map(({ reported_at: _, ...l }) => l));
      if (key !== last && current()) {
        last = key;
        state.linkStatus = new Map(links.map((l) => [`${l.from}>${l.peer}`, l]));
        render(state);
      }
    } catch {
      // The records loop reports the edge's state; a failed poll keeps the last picture.
    }
    await sleep(LINK_POLL_MS);
  }
}

/** Relay links and the picked route change with the records; ask the edge again after each change. */
async function refreshDerived(state: State): Promise<void> {
  const names = new Set(state.records.map((r) => r.name));
  if (state.from && !names.has(state.from)) state.from = "";
  if (state.to && !names.has(state.to)) state.to = "";
  if (state.selected && !names.has(state.selected)) state.selected = null;
  state.links = relayLinks(state.records, state.shared);
  await refreshRoute(state);
}

/**
 * Which relay can dial which, with the gateway it would use: computed here with
 * the core's own dial rule (bundled from src/core/dial.ts), so the picture
 * cannot drift from what the edge's resolver does.
 */
export function relayLinks(records: readonly HopwayRecord[], shared: readonly string[] | null = null): RelayLink[] {
  const relays = records.filter((r) => r.type === "node" && r.metadata?.kind === "relay");
  const reach = shared === null ? null : new Set(shared);
  const links: RelayLink[] = [];
  for (const a of relays) {
    for (const b of relays) {
      const choice = chooseGateway(a, b, reach);
      if (choice) links.push({ from: a.name, to: b.name, address: choice.address, priority: choice.priority });
    }
  }
  return links;
}

let routeSeq = 0;
async function refreshRoute(state: State): Promise<void> {
  const seq = ++routeSeq;
  if (!state.from || !state.to || state.from === state.to) {
    state.route = null;
    state.routeError = null;
    return;
  }
  try {
    const route = await state.api.route(state.from, state.to);
    if (seq !== routeSeq) return;
    state.route = route;
    state.routeError = null;
  } catch (error) {
    if (seq !== routeSeq) return;
    state.route = null;
    state.routeError = error instanceof ApiError ? `${error.code}: ${error.message}` : String(error);
  }
}

// ---- controls --------------------------------------------------------------------

function wireControls(state: State): void {
  const fromSel = $("route-from") as HTMLSelectElement;
  const toSel = $("route-to") as HTMLSelectElement;
  const pick = async () => {
    state.from = fromSel.value;
    state.to = toSel.value;
    await refreshRoute(state);
    render(state);
  };
  fromSel.addEventListener("change", pick);
  toSel.addEventListener("change", pick);
  $("route-clear").addEventListener("click", () => {
    state.from = "";
    state.to = "";
    state.route = null;
    state.routeError = null;
    render(state);
  });
  const regionInput = $("region-key") as HTMLInputElement;
  regionInput.addEventListener("change", () => {
    state.regionKey = regionInput.value.trim() || "area.region";
    render(state);
  });
  const pickNode = async (target: Element | null) => {
    const name = target?.closest("[data-node]")?.getAttribute("data-node");
    if (!name) return;
    state.selected = name;
    if (!state.from || state.to) {
      state.from = name;
      state.to = "";
    } else if (name !== state.from) {
      state.to = name;
    }
    await refreshRoute(state);
    render(state);
    // The graph was redrawn: give the keyboard its place back.
    document.querySelector<SVGGElement>(`#graph g.node[data-node="${CSS.escape(name)}"]`)?.focus();
  };
  $("graph").addEventListener("click", (event) => void pickNode(event.target as Element));
  $("graph").addEventListener("keydown", (event) => {
    if (event.key !== "Enter" && event.key !== " ") return;
    event.preventDefault();
    void pickNode(event.target as Element);
  });
}

// ---- rendering -------------------------------------------------------------------

function render(state: State): void {
  const drawn = layout(state.records, state.regionKey);
  renderSelects(state);
  renderGraph(state, drawn);
  renderRoutePanel(state);
  renderDetails(state);
  renderTable(state);
}

function renderSelects(state: State): void {
  const names = state.records.map((r) => r.name).sort();
  for (const [id, value] of [
    ["route-from", state.from],
    ["route-to", state.to],
  ] as const) {
    const sel = $(id) as HTMLSelectElement;
    sel.replaceChildren();
    html("option", "—", sel).value = "";
    for (const name of names) html("option", name, sel).value = name;
    sel.value = value;
  }
}

interface RoutePath {
  /** The route's target: the member, when the picked target is a group. */
  to: string;
  nodes: string[];
  hops: Hop[];
}

/** The routes to draw: the one route, or one per member that has one when the target is a group. */
function routePaths(state: State): RoutePath[] {
  const route = state.route;
  if (!route) return [];
  const routes = route.routes ?? [route];
  return routes.flatMap((r) =>
    r.hops ? [{ to: r.to, nodes: [r.from, ...r.hops.map((h) => h.node)], hops: r.hops }] : [],
  );
}

function renderGraph(state: State, drawn: Layout): void {
  const root = $("graph") as unknown as SVGSVGElement;
  root.replaceChildren();
  root.setAttribute("width", String(drawn.width));
  root.setAttribute("height", String(drawn.height));
  root.setAttribute("viewBox", `0 0 ${drawn.width} ${drawn.height}`);
  root.dataset.version = state.version === null ? "" : String(state.version);

  const defs = svg("defs", {}, root);
  for (const [id, cls] of [
    ["arrow-link", "#8a94a6"],
    ["arrow-route", "#dc2626"],
  ] as const) {
    const marker = svg(
      "marker",
      { id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      defs,
    );
    svg("path", { d: "M0,0 L10,5 L0,10 z", fill: cls }, marker);
  }

  for (const region of drawn.regions) {
    const g = svg("g", { class: "region", "data-region": region.name }, root);
    svg("rect", { x: region.x, y: region.y, width: region.w, height: region.h, rx: 10 }, g);
    svg("text", { x: region.x + 12, y: region.y + 18 }, g).textContent = `${state.regionKey}: ${region.name}`;
    for (const ns of region.namespaces) {
      const n = svg("g", { class: "namespace", "data-namespace": ns.name }, g);
      svg("rect", { x: ns.x, y: ns.y, width: ns.w, height: ns.h, rx: 6 }, n);
      svg("text", { x: ns.x + 8, y: ns.y + 14 }, n).textContent = `namespace ${ns.name}`;
    }
  }

  const linkLayer = svg("g", { class: "links" }, root);
  for (const link of state.links) {
    const a = drawn.nodes.get(link.from);
    const b = drawn.nodes.get(link.to);
    if (!a || !b) continue;
    const d = curve(a, b);
    const status = state.linkStatus.get(`${link.from}>${link.to}`);
    const live = status === undefined ? "unknown" : status.up ? "up" : "down";
    const path = svg(
      "path",
      {
        class: `link link-${live}`,
        d: d.path,
        "data-link-from": link.from,
        "data-link-to": link.to,
        "data-link-state": live,
      },
      linkLayer,
    );
    const seen =
      status === undefined
        ? "no link reported"
        : status.up
          ? `link up, ${status.streams} tunnel${status.streams === 1 ? "" : "s"} (reported ${status.reported_at})`
          : `link down (reported ${status.reported_at})`;
    svg("title", {}, path).textContent =
      `${link.from} can dial ${link.to} at ${link.address ?? "(client)"} (priority ${link.priority}): ${seen}`;
    svg("text", { class: "link-label", x: d.mid.x, y: d.mid.y }, linkLayer).textContent = `p${link.priority}`;
  }

  const paths = routePaths(state);
  const onRoute = new Map<string, number>();
  for (const path of paths) {
    path.nodes.forEach((name, i) => {
      onRoute.set(name, Math.min(i, onRoute.get(name) ?? i));
    });
  }

  const nodeLayer = svg("g", { class: "nodes" }, root);
  for (const placed of drawn.nodes.values()) drawNode(nodeLayer, placed, state, onRoute.get(placed.record.name));

  const routeLayer = svg("g", { class: "route" }, root);
  const drawnSteps = new Set<string>();
  for (const path of paths) {
    path.hops.forEach((hop, i) => {
      const from = path.nodes[i] as string;
      // Member routes of a group share their first hops: draw each step once.
      const key = `${i}:${from}>${hop.node}`;
      const a = drawn.nodes.get(from);
      const b = drawn.nodes.get(hop.node);
      if (!a || !b || drawnSteps.has(key)) return;
      drawnSteps.add(key);
      const d = curve(a, b);
      svg(
        "path",
        { class: "route-step", d: d.path, "data-step": i + 1, "data-from": from, "data-to": hop.node },
        routeLayer,
      );
      svg("text", { class: "route-label", x: d.mid.x, y: d.mid.y - 4 }, routeLayer).textContent =
        `${i + 1}: p${hop.priority}`;
    });
  }
}

function drawNode(layer: SVGGElement, placed: PlacedNode, state: State, hopIndex: number | undefined): void {
  const r = placed.record;
  const g = svg(
    "g",
    { class: "node", "data-node": r.name, "data-kind-class": placed.kindClass, "data-type": r.type, tabindex: 0 },
    layer,
  );
  if (hopIndex !== undefined) g.setAttribute("data-route-hop", String(hopIndex));
  if (r.name === state.from) g.setAttribute("data-selected", "from");
  else if (r.name === state.to) g.setAttribute("data-selected", "to");
  svg("rect", { x: placed.x, y: placed.y, width: placed.w, height: placed.h }, g);
  svg("text", { x: placed.x + 8, y: placed.y + 17 }, g).textContent = clip(r.name, 24);
  const first = r.type === "node" ? bestGateway(r.gateway) : undefined;
  const sub =
    r.type === "client"
      ? "client"
      : `${r.metadata?.kind ?? "node"}${first ? ` · p${first.priority} ${clip(firstAddress(first), 22)}` : " · no gateway"}`;
  svg("text", { class: "sub", x: placed.x + 8, y: placed.y + 35 }, g).textContent = sub;
  svg("title", {}, g).textContent = describe(r);
}

function bestGateway(gateways: readonly Gateway[] | undefined): Gateway | undefined {
  return gateways?.reduce<Gateway | undefined>(
    (best, g) => (!best || g.priority < best.priority ? g : best),
    undefined,
  );
}

function firstAddress(g: Gateway): string {
  return Array.isArray(g.address) ? (g.address[0] ?? "") : g.address;
}

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function gatewayLines(r: Drawable): string[] {
  if (r.type !== "node") return [];
  return (r.gateway ?? []).map((g) => {
    const addresses = Array.isArray(g.address) ? g.address.join(", ") : g.address;
    return `p${g.priority} → ${addresses}${g.match ? `  (match ${JSON.stringify(g.match)})` : ""}`;
  });
}

function describe(r: Drawable): string {
  return [
    r.name,
    `${r.type} · ${r.metadata?.kind ?? ""} · ${r.metadata?.namespace_name ?? ""}`,
    ...gatewayLines(r),
  ].join("\n");
}

function renderRoutePanel(state: State): void {
  const panel = $("route-panel");
  const status = $("route-status");
  const list = $("route-hops");
  list.replaceChildren();
  $("route-title").textContent = state.from && state.to ? `Route ${state.from} → ${state.to}` : "Route";
  if (!state.from || !state.to) {
    panel.dataset.state = "none";
    status.textContent = state.from
      ? `From ${state.from}: pick a target.`
      : "Pick two records (or click two nodes) to see the route between them.";
  } else if (state.routeError) {
    panel.dataset.state = "error";
    status.textContent = `The edge refused: ${state.routeError}`;
  } else if (state.route?.routes) {
    // A group: one route per member that exists (docs/contract/routing.md §5.1).
    const found = state.route.routes.filter((r) => r.hops !== null).length;
    panel.dataset.state = found > 0 ? "found" : "none-found";
    status.textContent = `Group of ${state.route.routes.length}: ${found} member${found === 1 ? "" : "s"} reachable.`;
    for (const member of state.route.routes) {
      const li = html("li", undefined, list);
      li.dataset.node = member.to;
      html("strong", member.to, li);
      if (member.hops === null) {
        html("span", `  no route: ${member.reason ?? "unknown"}${member.detail ? ` — ${member.detail}` : ""}`, li);
      } else {
        const ol = html("ol", undefined, li);
        for (const hop of member.hops) html("li", hopText(hop), ol);
      }
    }
  } else if (state.route && state.route.hops === null) {
    panel.dataset.state = "none-found";
    status.textContent = `No route: ${state.route.reason ?? "unknown"}${state.route.detail ? ` — ${state.route.detail}` : ""}`;
  } else if (state.route?.hops) {
    panel.dataset.state = "found";
    const relays = state.route.hops.length - 1;
    status.textContent = `${state.route.hops.length} hop${state.route.hops.length === 1 ? "" : "s"}, ${relays} relay${relays === 1 ? "" : "s"}.`;
    for (const hop of state.route.hops) {
      const li = html("li", hopText(hop), list);
      li.dataset.node = hop.node;
    }
  } else {
    panel.dataset.state = "loading";
    status.textContent = "Resolving…";
  }
}

function hopText(hop: Hop): string {
  const fallbacks = hop.alternatives.length > 0 ? `  fallbacks: ${hop.alternatives.join(", ")}` : "";
  return `${hop.node}  ${hop.address ?? "(client connection)"}  priority ${hop.priority}${fallbacks}`;
}

function renderDetails(state: State): void {
  const section = $("details");
  const record = state.records.find((r) => r.name === state.selected);
  if (!record) {
    section.hidden = true;
    return;
  }
  section.hidden = false;
  $("details-title").textContent = record.name;
  const dl = $("details-list");
  dl.replaceChildren();
  const row = (k: string, v: string | undefined) => {
    if (v === undefined || v === "") return;
    html("dt", k, dl);
    html("dd", v, dl);
  };
  row("type", record.type);
  if (record.type === "group") {
    row("members", record.node_list.map((m) => m.node_name).join(", "));
  } else {
    row("namespace", record.metadata?.namespace_name);
    row("kind", record.metadata?.kind);
    row("labels", record.metadata?.labels ? JSON.stringify(record.metadata.labels) : undefined);
    row("host", record.host ? JSON.stringify(record.host) : undefined);
    row("gateways", gatewayLines(record).join("\n"));
    row("advertise_relay", record.advertise_relay ? JSON.stringify(record.advertise_relay) : undefined);
  }
  row("custom_data", record.custom_data);
}

function renderTable(state: State): void {
  const body = ($("records") as HTMLTableElement).tBodies[0] as HTMLTableSectionElement;
  body.replaceChildren();
  const sorted = [...state.records].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const r of sorted) {
    const tr = html("tr", undefined, body);
    tr.dataset.node = r.name;
    html("td", r.name, tr);
    html("td", r.type, tr);
    if (r.type === "group") {
      html("td", "", tr);
      html("td", "", tr);
      html("td", "", tr);
      html("td", `members: ${r.node_list.map((m) => m.node_name).join(", ")}`, tr);
      continue;
    }
    html("td", r.metadata?.labels?.[state.regionKey] ?? "", tr);
    html("td", r.metadata?.namespace_name ?? "", tr);
    html("td", r.metadata?.kind ?? "", tr);
    const gw = html("td", undefined, tr);
    gw.className = "gw";
    for (const line of gatewayLines(r)) html("div", line, gw);
  }
}

start();
// A link with a new #token= opened in the same tab is a same-document navigation: take the token over too.
addEventListener("hashchange", () => {
  if (new URLSearchParams(location.hash.slice(1)).has("token")) location.reload();
});
