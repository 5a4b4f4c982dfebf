// Places records on the canvas: one column per region (a label value, by
// default `area.region`), one box per namespace inside it, nodes in a grid
// inside that. Pure geometry, no DOM, so the same records always give the same
// picture and a change moves as little as possible.
import type { HopwayRecord } from "../../../core/schema.ts";

export const NODE_W = 168;
export const NODE_H = 48;
const GAP = 14;
const NS_PAD = 12;
const NS_TITLE = 20;
const REGION_PAD = 14;
const REGION_TITLE = 26;
const PER_ROW = 2;
const MARGIN = 16;
export const NO_REGION = "(no region)";
export const NO_NAMESPACE = "(no namespace)";

export type Drawable = Exclude<HopwayRecord, { type: "group" }>;

export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}
export interface PlacedNode extends Box {
  record: Drawable;
  kindClass: "app" | "relay" | "client";
}
export interface PlacedNamespace extends Box {
  name: string;
}
export interface PlacedRegion extends Box {
  name: string;
  namespaces: PlacedNamespace[];
}
export interface Layout {
  width: number;
  height: number;
  regions: PlacedRegion[];
  nodes: Map<string, PlacedNode>;
}

export function kindClass(record: Drawable): PlacedNode["kindClass"] {
  if (record.type === "client") return "client";
  return record.metadata?.kind === "relay" ? "relay" : "app";
}

const byName = (a: string, b: string) => (a === b ? 0 : a < b ? -1 : 1);
// Unlabelled records go last so the labelled regions keep their places when one appears.
const placeholderLast = (placeholder: string) => (a: string, b: string) =>
  a === placeholder ? 1 : b === placeholder ? -1 : byName(a, b);

export function layout(records: readonly HopwayRecord[], regionKey: string): Layout {
  const tree = new Map<string, Map<string, Drawable[]>>();
  for (const r of records) {
    if (r.type === "group") continue;
    const region = r.metadata?.labels?.[regionKey] ?? NO_REGION;
    const ns = r.metadata?.namespace_name ?? NO_NAMESPACE;
    let namespaces = tree.get(region);
    if (!namespaces) {
      namespaces = new Map();
      tree.set(region, namespaces);
    }
    let list = namespaces.get(ns);
    if (!list) {
      list = [];
      namespaces.set(ns, list);
    }
    list.push(r);
  }
  const regions: PlacedRegion[] = [];
  const nodes = new Map<string, PlacedNode>();
  let x = MARGIN;
  let height = 0;
  for (const regionName of [...tree.keys()].sort(placeholderLast(NO_REGION))) {
    const namespaces = tree.get(regionName) as Map<string, Drawable[]>;
    const placedNs: PlacedNamespace[] = [];
    let y = MARGIN + REGION_TITLE;
    let innerW = 0;
    for (const nsName of [...namespaces.keys()].sort(placeholderLast(NO_NAMESPACE))) {
      // Relays first: they are what the links and routes run between.
      const list = (namespaces.get(nsName) as Drawable[]).sort((a, b) => {
        const ra = kindClass(a) === "relay" ? 0 : 1;
        const rb = kindClass(b) === "relay" ? 0 : 1;
        return ra - rb || byName(a.name, b.name);
      });
      // Relays get rows of their own at the top, where the links between them are drawn.
      const relays = list.filter((r) => kindClass(r) === "relay");
      const others = list.filter((r) => kindClass(r) !== "relay");
      const grid: Drawable[][] = [];
      for (const part of [relays, others]) {
        for (let i = 0; i < part.length; i += PER_ROW) grid.push(part.slice(i, i + PER_ROW));
      }
      const cols = Math.max(1, ...grid.map((row) => row.length));
      const rows = grid.length;
      const w = NS_PAD * 2 + cols * NODE_W + (cols - 1) * GAP;
      const h = NS_TITLE + NS_PAD + rows * NODE_H + (rows - 1) * GAP + NS_PAD;
      const nsX = x + REGION_PAD;
      grid.forEach((row, r) => {
        row.forEach((record, c) => {
          nodes.set(record.name, {
            record,
            kindClass: kindClass(record),
            x: nsX + NS_PAD + c * (NODE_W + GAP),
            y: y + NS_TITLE + NS_PAD + r * (NODE_H + GAP),
            w: NODE_W,
            h: NODE_H,
          });
        });
      });
      placedNs.push({ name: nsName, x: nsX, y, w, h });
      innerW = Math.max(innerW, w);
      y += h + GAP;
    }
    // Namespaces of one region share a width so the column reads as one block.
    for (const ns of placedNs) ns.w = innerW;
    const regionH = y - MARGIN + REGION_PAD - GAP;
    regions.push({ name: regionName, x, y: MARGIN, w: innerW + REGION_PAD * 2, h: regionH, namespaces: placedNs });
    height = Math.max(height, MARGIN + regionH);
    // Wide gaps between regions leave room for the links that cross them.
    x += innerW + REGION_PAD * 2 + 72;
  }
  const width = Math.max(x - 72 + MARGIN, 320);
  // Links between columns arc over the top: leave room for the widest arc's apex (half its lift)
  // above the first row of nodes, less the region and namespace titles it may cross.
  const arcSpace = Math.max(0, Math.ceil(arcLift(width) / 2) - (REGION_TITLE + NS_TITLE + NS_PAD)) + 8;
  for (const region of regions) {
    region.y += arcSpace;
    for (const ns of region.namespaces) ns.y += arcSpace;
  }
  for (const node of nodes.values()) node.y += arcSpace;
  return { width, height: height + MARGIN + arcSpace, regions, nodes };
}

/** How far above its ends the control point of an arc spanning `span` pixels lies. */
function arcLift(span: number): number {
  return Math.min(380, 36 + 0.22 * span);
}

export interface Curve {
  path: string;
  /** Where the label of the curve goes. */
  mid: { x: number; y: number };
}

/**
 * The line drawn for "a dials b". Boxes in different columns are joined by an
 * arc over the top, higher the farther apart they are, and a→b is drawn higher
 * than b→a so the two directions stay apart; boxes in one column by a slightly
 * bent line between their facing sides.
 */
export function curve(a: Box, b: Box): Curve {
  const r = (n: number) => Math.round(n * 10) / 10;
  const dx = b.x - a.x;
  if (Math.abs(dx) >= a.w) {
    const forward = dx > 0;
    const p = { x: a.x + a.w / 2 + (forward ? 12 : -12), y: a.y };
    const q = { x: b.x + b.w / 2 + (forward ? -12 : 12), y: b.y };
    const span = Math.abs(q.x - p.x);
    const lift = (forward ? 1 : 0.6) * arcLift(span);
    const cy = Math.min(p.y, q.y) - lift;
    const cx = (p.x + q.x) / 2;
    // A quadratic Bézier reaches half way to its control point at t = 1/2.
    const top = { x: (p.x + 2 * cx + q.x) / 4, y: (p.y + 2 * cy + q.y) / 4 };
    return { path: `M${r(p.x)},${r(p.y)} Q${r(cx)},${r(cy)} ${r(q.x)},${r(q.y)}`, mid: { x: r(top.x), y: r(top.y) } };
  }
  const p = borderPoint(a, b);
  const q = borderPoint(b, a);
  const mx = (p.x + q.x) / 2;
  const my = (p.y + q.y) / 2;
  const len = Math.hypot(q.x - p.x, q.y - p.y) || 1;
  const bend = 14;
  const cx = mx + (-(q.y - p.y) / len) * bend;
  const cy = my + ((q.x - p.x) / len) * bend;
  return {
    path: `M${r(p.x)},${r(p.y)} Q${r(cx)},${r(cy)} ${r(q.x)},${r(q.y)}`,
    mid: { x: r((mx + cx) / 2 + 4), y: r((my + cy) / 2) },
  };
}

/** Where a line from `a`'s centre towards `b`'s centre leaves `a`'s box. */
export function borderPoint(a: Box, b: Box): { x: number; y: number } {
  const ax = a.x + a.w / 2;
  const ay = a.y + a.h / 2;
  const dx = b.x + b.w / 2 - ax;
  const dy = b.y + b.h / 2 - ay;
  if (dx === 0 && dy === 0) return { x: ax, y: ay };
  const scale = Math.min(Math.abs(a.w / 2 / (dx || 1e-9)), Math.abs(a.h / 2 / (dy || 1e-9)));
  return { x: ax + dx * scale, y: ay + dy * scale };
}
