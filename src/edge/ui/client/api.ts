// The page's only way to the realm: the edge's /v1 API with the reader token as
// a Bearer header. Nothing here decides routing: routes come from the edge's
// resolver, so the page can never disagree with the agents.
//
// The answers are typed by the core's wire schemas (types only: the page
// carries no validator; the edge's tests hold its answers to those schemas).
import type { HopwayRecord } from "../../../core/schema.ts";
import type { ErrorBody, LinkStatus, LinksAnswer, NodesAnswer, RouteAnswer } from "../../../core/wire.ts";

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
  version: number;
  records: HopwayRecord[];
  /** The realm's shared namespaces (docs/contract/records.md §2.3); null: every namespace. */
  shared: string[] | null;
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
    const body = (await response.json()) as NodesAnswer;
    return {
      etag: response.headers.get("etag"),
      version: body.version,
      records: body.records,
      shared: body.shared_namespaces ?? null,
    };
  }

  /** Each relay's links as it last reported them with its heartbeat. */
  async links(signal?: AbortSignal): Promise<LinkStatus[]> {
    const response = await this.get("/links", signal ? { signal } : {});
    return ((await response.json()) as LinksAnswer).links;
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
    const body = (await response.json()) as Partial<ErrorBody> | null;
    if (typeof body?.error?.code === "string") code = body.error.code;
    if (typeof body?.error?.message === "string") message = body.error.message;
  } catch {
    // Not a Hopway error body (a proxy's page): the status is all there is.
  }
  return new ApiError(response.status, code, message);
}
