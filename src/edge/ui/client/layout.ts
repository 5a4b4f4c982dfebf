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
      const cols = Math.min(PER_ROW, list.length);
      const rows = Math.ceil(list.length / PER_ROW);
      const w = NS_PAD * 2 + cols * NODE_W + (cols - 1) * GAP;
      const h = NS_TITLE + NS_PAD + rows * NODE_H + (rows - 1) * GAP + NS_PAD;
      const nsX = x + REGION_PAD;
      list.forEach((record, i) => {
        nodes.set(record.name, {
          record,
          kindClass: kindClass(record),
          x: nsX + NS_PAD + (i % PER_ROW) * (NODE_W + GAP),
          y: y + NS_TITLE + NS_PAD + Math.floor(i / PER_ROW) * (NODE_H + GAP),
          w: NODE_W,
          h: NODE_H,
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
  return { width: Math.max(x - 72 + MARGIN, 320), height: height + MARGIN, regions, nodes };
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
