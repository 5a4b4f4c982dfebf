// A typed client for the agent's local API, for applications written in
// TypeScript/JavaScript that run next to the agent in the same pod. It parses
// every answer with the same zod schemas the server validates with, so a
// version skew between application and agent fails loudly, not silently.

import type { ErrorCode } from "@hopway/core/errors";
import { OwnershipIndex } from "@hopway/core/ownership";
import { ErrorBodySchema } from "@hopway/core/wire";
import type { z } from "zod";
import {
  type LocalReport,
  LocalReportSchema,
  type LocalStatus,
  LocalStatusSchema,
  type PreDelete,
  PreDeleteSchema,
} from "../admin/schemas.ts";
import { type LocalOwners, LocalOwnersSchema, ownersInParts } from "../ownership/client-support.ts";

export { keyHost } from "@hopway/core/ownership";
export type { LocalOwners, LocalReport, LocalStatus, PreDelete };

export class AgentApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
    readonly path?: string,
  ) {
    super(message);
    this.name = "AgentApiError";
  }
}

export interface AgentClientOptions {
  /** The agent's admin address; default `http://127.0.0.1:9090`. */
  baseUrl?: string;
  /**
   * The agent's `admin.local_api_token`, sent as a bearer token; `report()` needs it
   * (the agent refuses writes without it). Default: HOPWAY_LOCAL_API_TOKEN.
   */
  token?: string;
  /** Per-request timeout; default 2 s (the agent answers from memory). */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

export class AgentClient {
  private readonly base: string;
  private readonly timeoutMs: number;
  private readonly fetchImpl: typeof fetch;
  private readonly token: string | undefined;

  constructor(opts: AgentClientOptions = {}) {
    this.base = (opts.baseUrl ?? "http://127.0.0.1:9090").replace(/\/+$/, "");
    this.timeoutMs = opts.timeoutMs ?? 2_000;
    this.fetchImpl = opts.fetch ?? fetch;
    this.token = opts.token ?? (process.env.HOPWAY_LOCAL_API_TOKEN || undefined);
  }

  /** Report load (1 = at capacity) and whether this pod still holds state. Answers the status after the report. */
  async report(report: LocalReport): Promise<LocalStatus> {
    // Validate before sending: a bad value is the caller's bug, named by field.
    const body = LocalReportSchema.parse(report);
    return this.call("PUT", "/v1/local/report", LocalStatusSchema, body);
  }

  async status(): Promise<LocalStatus> {
    return this.call("GET", "/v1/local/status", LocalStatusSchema);
  }

  /** Whether the coordinator asks this pod to move its state away. */
  async draining(): Promise<boolean> {
    return (await this.status()).draining;
  }

  async preDelete(): Promise<PreDelete> {
    return this.call("GET", "/v1/hooks/pre-delete", PreDeleteSchema);
  }

  /**
   * Owner and previous owner of each key in a group, from the agent's copy of
   * the membership (answers while the edge is down). Large batches are split
   * to fit the agent's body limit; all parts are answered from one epoch or
   * the call is retried, so the answer is consistent.
   */
  async owners(group: string, keys: readonly string[]): Promise<LocalOwners> {
    return ownersInParts(keys, (part) =>
      this.call("POST", "/v1/local/owners", LocalOwnersSchema, { group, keys: part }),
    );
  }

  /**
   * The group's membership; `index.lookup(key)` then computes owners locally with
   * the same pure function the agent and the edge use (no call per key).
   */
  async membership(group: string): Promise<LocalOwners & { index: OwnershipIndex }> {
    const m = await this.call("GET", `/v1/local/owners?group=${encodeURIComponent(group)}`, LocalOwnersSchema);
    return { ...m, index: new OwnershipIndex(m.members) };
  }

  private async call<T extends z.ZodType>(
    method: string,
    path: string,
    schema: T,
    body?: unknown,
  ): Promise<z.infer<T>> {
    const init: RequestInit = { method, signal: AbortSignal.timeout(this.timeoutMs) };
    const headers: Record<string, string> = {};
    if (this.token !== undefined) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      headers["content-type"] = "application/json";
    }
    init.headers = headers;
    const res = await this.fetchImpl(`${this.base}${path}`, init);
    const data: unknown = await res.json().catch(() => undefined);
    if (!res.ok) {
      const err = ErrorBodySchema.safeParse(data);
      if (err.success)
        throw new AgentApiError(res.status, err.data.error.code, err.data.error.message, err.data.error.path);
      throw new AgentApiError(res.status, "internal", `HTTP ${res.status} from ${path}`);
    }
    return schema.parse(data);
  }
}
