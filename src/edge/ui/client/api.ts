// The page's only way to the realm: the edge's /v1 API with the reader token as
// a Bearer header. Nothing here decides routing: routes come from the edge's
// resolver, so the page can never disagree with the agents.
import type { HopwayRecord, Route } from "../../../core/schema.ts";
import type { LinkStatus } from "../../types.ts";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface NodesSnapshot {
  etag: string | null;
  version: string | null;
  records: HopwayRecord[];
}

export interface RouteAnswer extends Route {
  version?: number | string;
  /** When the target is a group: the route to each member. */
  routes?: Route[];
}

export class Api {
  constructor(
    private readonly realm: string,
    private readonly token: string,
  ) {}

  private url(rest: string): string {
    return `/v1/realms/${encodeURIComponent(this.realm)}${rest}`;
  }

  private async get(rest: string, init: { etag?: string | null; signal?: AbortSignal } = {}): Promise<Response> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}`, accept: "application/json" };
    if (init.etag) headers["if-none-match"] = init.etag;
    const response = await fetch(this.url(rest), {
      headers,
      cache: "no-store",
      credentials: "omit",
      ...(init.signal ? { signal: init.signal } : {}),
    });
    if (!response.ok && response.status !== 304) throw await toError(response);
    return response;
  }

  /**
   * The realm's records. With an ETag, the edge holds the request (`?wait=`)
   * until the realm changes, so the page follows changes without polling;
   * null means "unchanged".
   */
  async nodes(etag: string | null, waitSeconds: number, signal?: AbortSignal): Promise<NodesSnapshot | null> {
    const rest = etag ? `/nodes?wait=${waitSeconds}` : "/nodes";
    const response = await this.get(rest, { etag, ...(signal ? { signal } : {}) });
    if (response.status === 304) return null;
    const body: unknown = await response.json();
    return { etag: response.headers.get("etag"), ...normalizeNodes(body) };
  }

  /** Each relay's links as it last reported them with its heartbeat. */
  async links(signal?: AbortSignal): Promise<LinkStatus[]> {
    const response = await this.get("/links", signal ? { signal } : {});
    const body = (await response.json()) as { links?: LinkStatus[] };
    return Array.isArray(body.links) ? body.links : [];
  }

  async route(from: string, to: string, signal?: AbortSignal): Promise<RouteAnswer> {
    const q = new URLSearchParams({ from, to });
    const response = await this.get(`/routes?${q}`, signal ? { signal } : {});
    return (await response.json()) as RouteAnswer;
  }
}

async function toError(response: Response): Promise<ApiError> {
  let code = `http_${response.status}`;
  let message = response.statusText || `HTTP ${response.status}`;
  try {
    const body = (await response.json()) as { error?: { code?: unknown; message?: unknown } };
    if (typeof body.error?.code === "string") code = body.error.code;
    if (typeof body.error?.message === "string") message = body.error.message;
  } catch {
    // Not a Hopway error body (a proxy's page): the status is all there is.
  }
  return new ApiError(response.status, code, message);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** The list answer wraps records with the realm version; lease entries may wrap each record. */
export function normalizeNodes(body: unknown): { version: string | null; records: HopwayRecord[] } {
  let list: unknown[] = [];
  let version: string | null = null;
  if (Array.isArray(body)) list = body;
  else if (isObject(body)) {
    const items = body.nodes ?? body.records ?? body.items;
    if (Array.isArray(items)) list = items;
    if (typeof body.version === "number" || typeof body.version === "string") version = String(body.version);
  }
  const records: HopwayRecord[] = [];
  for (const item of list) {
    const record = isObject(item) && isObject(item.record) ? item.record : item;
    if (isObject(record) && typeof record.name === "string") {
      records.push({ ...record, type: record.type ?? "node" } as HopwayRecord);
    }
  }
  return { version, records };
}
