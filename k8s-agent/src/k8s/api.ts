// The two Kubernetes API calls the agent makes, GET and JSON-merge-PATCH of
// its own pod, over node:https with the pod's service account. This replaces
// @kubernetes/client-node, which was 5.4 MB of the 7.7 MB agent bundle and
// about 20 MB of the agent's resident memory for these two requests.
import { readFileSync } from "node:fs";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import { Readable } from "node:stream";
import { BodyTooLarge, readBounded } from "@hopway/core/bounded-body";

export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** A non-2xx answer from the API server, or a request that did not complete. */
export class KubeApiError extends Error {
  readonly code = "HOPWAY_KUBE_API";
  constructor(
    /** HTTP status; undefined when no answer arrived (connection refused, timeout). */
    readonly status: number | undefined,
    message: string,
    /** The server's Retry-After, in seconds, when it sent one. */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = "KubeApiError";
  }
}

/** What the deletion-cost patcher needs from the API; tests can implement it directly. */
export interface PodApi {
  readPodAnnotations(namespace: string, name: string): Promise<Record<string, string>>;
  /** JSON merge patch of metadata.annotations only; a null value removes the key. */
  patchPodAnnotations(
    namespace: string,
    name: string,
    annotations: Record<string, string | null>,
    fieldManager: string,
  ): Promise<void>;
}

export interface KubeApiOptions {
  /** https://host:port, or http:// for a local test server. */
  server: string;
  /** Read for every request: projected service-account tokens are rotated by the kubelet. */
  token: () => string;
  /** CA bundle (PEM) that signed the API server's certificate. */
  ca?: Buffer | undefined;
  timeoutMs?: number;
}

/** Largest answer read (a Pod object is a few KiB). */
const MAX_BODY_BYTES = 1024 * 1024;

export class KubeApi implements PodApi {
  private readonly base: URL;
  constructor(private readonly opts: KubeApiOptions) {
    this.base = new URL(opts.server);
    if (this.base.protocol !== "https:" && this.base.protocol !== "http:") {
      throw new Error(`Kubernetes API server must be an http(s) URL, got ${opts.server}`);
    }
  }

  async readPodAnnotations(namespace: string, name: string): Promise<Record<string, string>> {
    const pod = (await this.call("GET", podPath(namespace, name))) as {
      metadata?: { annotations?: Record<string, unknown> };
    };
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(pod.metadata?.annotations ?? {})) if (typeof v === "string") out[k] = v;
    return out;
  }

  async patchPodAnnotations(
    namespace: string,
    name: string,
    annotations: Record<string, string | null>,
    fieldManager: string,
  ): Promise<void> {
    await this.call(
      "PATCH",
      `${podPath(namespace, name)}?fieldManager=${encodeURIComponent(fieldManager)}`,
      { metadata: { annotations } },
      "application/merge-patch+json",
    );
  }

  private call(method: string, path: string, body?: unknown, contentType?: string): Promise<unknown> {
    const url = new URL(path, this.base);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const send = url.protocol === "https:" ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(
        url,
        {
          method,
          headers: {
            accept: "application/json",
            authorization: `Bearer ${this.opts.token().trim()}`,
            ...(payload ? { "content-type": contentType ?? "application/json", "content-length": payload.length } : {}),
          },
          ...(url.protocol === "https:" && this.opts.ca ? { ca: this.opts.ca } : {}),
          timeout: this.opts.timeoutMs ?? 10_000,
        },
        (res) => {
          readBody(res).then((text) => {
            const status = res.statusCode ?? 0;
            if (status < 200 || status >= 300) {
              const retry = Number(res.headers["retry-after"]);
              return reject(
                new KubeApiError(
                  status,
                  `${method} ${url.pathname}: HTTP ${status} ${statusMessage(text)}`.trim(),
                  Number.isFinite(retry) && retry >= 0 ? retry : undefined,
                ),
              );
            }
            try {
              resolve(text === "" ? {} : (JSON.parse(text) as unknown));
            } catch {
              reject(new KubeApiError(status, `${method} ${url.pathname}: answer is not JSON`));
            }
          }, reject);
        },
      );
      req.on("timeout", () => req.destroy(new Error(`timed out after ${this.opts.timeoutMs ?? 10_000} ms`)));
      req.on("error", (err) => reject(new KubeApiError(undefined, `${method} ${url.pathname}: ${err.message}`)));
      req.end(payload);
    });
  }
}

/**
 * The API server and credentials a pod gets: KUBERNETES_SERVICE_HOST/PORT and
 * the mounted service account (token, CA). Throws when not in a cluster.
 */
export function inClusterKubeApi(
  env: Record<string, string | undefined> = process.env,
  dir: string = SERVICE_ACCOUNT_DIR,
): KubeApi {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT ?? "443";
  if (!host) throw new Error("not in a cluster: KUBERNETES_SERVICE_HOST is not set");
  const tokenFile = join(dir, "token");
  readFileSync(tokenFile); // fail now, not at the first write, when no token is mounted
  return new KubeApi({
    server: `https://${host.includes(":") ? `[${host}]` : host}:${port}`,
    token: () => readFileSync(tokenFile, "utf8"),
    ca: readFileSync(join(dir, "ca.crt")),
  });
}

function podPath(namespace: string, name: string): string {
  return `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`;
}

/** The `message` of a Kubernetes Status object, or nothing. */
function statusMessage(text: string): string {
  try {
    const s = JSON.parse(text) as { message?: unknown; reason?: unknown };
    return [s.reason, s.message].filter((x) => typeof x === "string" && x !== "").join(": ");
  } catch {
    return "";
  }
}

/** The answer as text, under MAX_BODY_BYTES (declared or read), with the shared capped reader. */
async function readBody(res: IncomingMessage): Promise<string> {
  try {
    const stream = Readable.toWeb(res) as ReadableStream<Uint8Array>;
    const bytes = await readBounded(stream, res.headers["content-length"] ?? null, MAX_BODY_BYTES);
    return new TextDecoder().decode(bytes);
  } catch (err) {
    throw err instanceof BodyTooLarge ? new KubeApiError(res.statusCode, `answer over ${MAX_BODY_BYTES} bytes`) : err;
  }
}
