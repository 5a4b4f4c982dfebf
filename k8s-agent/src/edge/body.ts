// Reading what the edge answers, with a byte cap. The agent trusts the edge's
// content, but not without limit: a proxy in between, a misconfigured URL that
// points at something else, or an edge bug must cost one failed request (which
// the caller retries with backoff), never the agent's memory and its tunnels.
import { BodyTooLarge, readBounded } from "@hopway/core/bounded-body";
import type { ErrorCode } from "@hopway/core/errors";
import { ErrorBodySchema } from "@hopway/core/wire";

/** Largest success body the agent reads: a 50,000-record realm's route table is about 20 MiB. */
export const MAX_EDGE_BODY_BYTES = 64 * 1024 * 1024;
/** Error bodies are only quoted in logs. */
const MAX_ERROR_BODY_BYTES = 16 * 1024;

export class EdgeResponseTooLargeError extends Error {
  readonly code = "HOPWAY_EDGE_RESPONSE_TOO_LARGE";
  constructor(
    readonly bytes: number,
    readonly limit: number,
  ) {
    super(`edge response of ${bytes}+ bytes exceeds the ${limit}-byte limit`);
    this.name = "EdgeResponseTooLargeError";
  }
}

export class HttpStatusError extends Error {
  readonly code = "HOPWAY_EDGE_STATUS";
  /** The edge's stable error code (`unauthorized`, `forbidden`, …) when the body carried one. */
  readonly edgeCode: ErrorCode | undefined;
  /** The edge's own words for it, when the body carried them. */
  readonly edgeMessage: string | undefined;
  constructor(
    readonly status: number,
    body: string,
  ) {
    super(`edge answered ${status}: ${body.slice(0, 200)}`);
    this.name = "HttpStatusError";
    const error = errorOf(body);
    this.edgeCode = error?.code;
    this.edgeMessage = error?.message;
  }
}

function errorOf(body: string): { code: ErrorCode; message: string } | undefined {
  try {
    const parsed = ErrorBodySchema.safeParse(JSON.parse(body));
    return parsed.success ? parsed.data.error : undefined;
  } catch {
    return undefined;
  }
}

/** The body as UTF-8 text; stops reading and throws EdgeResponseTooLargeError past `limit` bytes. */
export async function readText(res: Response, limit: number = MAX_EDGE_BODY_BYTES): Promise<string> {
  try {
    return new TextDecoder().decode(await readBounded(res.body, res.headers.get("content-length"), limit));
  } catch (err) {
    throw err instanceof BodyTooLarge ? new EdgeResponseTooLargeError(err.bytes, limit) : err;
  }
}

/** The body parsed as JSON, under the same cap. */
export async function readJson(res: Response, limit: number = MAX_EDGE_BODY_BYTES): Promise<unknown> {
  return JSON.parse(await readText(res, limit)) as unknown;
}

/** An HttpStatusError for a non-2xx answer, quoting at most the start of its body. */
export async function statusError(res: Response): Promise<HttpStatusError> {
  const body = await readText(res, MAX_ERROR_BODY_BYTES).catch((err: unknown) =>
    err instanceof EdgeResponseTooLargeError ? "(body too large to quote)" : `(body unreadable: ${String(err)})`,
  );
  return new HttpStatusError(res.status, body);
}
