// The agent's Kubernetes API client against local servers: TLS verified
// against a CA the test creates with openssl (as the service account's
// ca.crt is), the in-cluster configuration from a service-account directory,
// token rotation, and errors carrying status and Retry-After.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inClusterKubeApi, KubeApi, KubeApiError } from "../../src/k8s/api.ts";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "hopway-kube-api-"));
  const ssl = (args: string) => execFileSync("openssl", args.split(" "), { cwd: dir, stdio: "pipe" });
  const selfSignedCa = (name: string) =>
    ssl(`req -x509 -newkey rsa:2048 -nodes -keyout ${name}.key -out ${name}.crt -days 2 -subj /CN=${name}`);
  // A CA, and a server certificate for 127.0.0.1 signed by it (what a cluster's API server has).
  selfSignedCa("ca");
  ssl("req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=apiserver");
  writeFileSync(join(dir, "ext.cnf"), "subjectAltName=IP:127.0.0.1\n");
  ssl("x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile ext.cnf");
  // Another CA that signed nothing here: trusting it alone must fail.
  selfSignedCa("other");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Handler = (req: IncomingMessage, body: string, res: ServerResponse) => void;
async function serve(tls: boolean, handler: Handler): Promise<{ url: string; close: () => Promise<void> }> {
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    let body = "";
    req.on("data", (c: Buffer) => {
      body += c.toString();
    });
    req.on("end", () => handler(req, body, res));
  };
  const server = tls
    ? createHttpsServer(
        { key: readFileSync(join(dir, "server.key")), cert: readFileSync(join(dir, "server.crt")) },
        onRequest,
      )
    : createHttpServer(onRequest);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `${tls ? "https" : "http"}://127.0.0.1:${port}`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const pod = (annotations: Record<string, unknown>) =>
  JSON.stringify({ kind: "Pod", apiVersion: "v1", metadata: { name: "p", namespace: "ns", annotations } });

describe("KubeApi", () => {
  it("verifies the API server against the service account's CA and refuses another CA", async () => {
    const srv = await serve(true, (_req, _body, res) => res.end(pod({ a: "1" })));
    try {
      const good = new KubeApi({ server: srv.url, token: () => "t", ca: readFileSync(join(dir, "ca.crt")) });
      expect(await good.readPodAnnotations("ns", "p")).toEqual({ a: "1" });
      const bad = new KubeApi({ server: srv.url, token: () => "t", ca: readFileSync(join(dir, "other.crt")) });
      const err = await bad.readPodAnnotations("ns", "p").catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KubeApiError);
      expect((err as KubeApiError).status).toBeUndefined();
      expect((err as KubeApiError).message).toMatch(/certificate/i);
    } finally {
      await srv.close();
    }
  });

  it("sends a JSON merge patch with the field manager, and reads the token file on every request", async () => {
    const seen: Array<{ method?: string; url?: string; type?: string; auth?: string; body: string }> = [];
    const srv = await serve(false, (req, body, res) => {
      seen.push({
        method: req.method,
        url: req.url,
        type: req.headers["content-type"],
        auth: req.headers.authorization,
        body,
      });
      res.end(pod({}));
    });
    let token = "first\n";
    try {
      const api = new KubeApi({ server: srv.url, token: () => token });
      await api.patchPodAnnotations("ns", "p", { k: "v", gone: null }, "hopway-agent");
      token = "rotated";
      await api.readPodAnnotations("ns", "p");
      expect(seen[0]).toEqual({
        method: "PATCH",
        url: "/api/v1/namespaces/ns/pods/p?fieldManager=hopway-agent",
        type: "application/merge-patch+json",
        auth: "Bearer first",
        body: JSON.stringify({ metadata: { annotations: { k: "v", gone: null } } }),
      });
      expect(seen[1]?.auth).toBe("Bearer rotated");
    } finally {
      await srv.close();
    }
  });

  it("turns a Status answer into an error with the status, reason and Retry-After", async () => {
    const srv = await serve(false, (_req, _body, res) => {
      res.writeHead(429, { "content-type": "application/json", "retry-after": "7" });
      res.end(JSON.stringify({ kind: "Status", status: "Failure", reason: "TooManyRequests", message: "slow down" }));
    });
    try {
      const err = await new KubeApi({ server: srv.url, token: () => "t" })
        .patchPodAnnotations("ns", "p", { k: "v" }, "m")
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KubeApiError);
      expect(err).toMatchObject({ code: "HOPWAY_KUBE_API", status: 429, retryAfterSeconds: 7 });
      expect((err as Error).message).toContain("HTTP 429 TooManyRequests: slow down");
    } finally {
      await srv.close();
    }
  });

  it("stops reading an answer over 1 MiB, declared or streamed, and says so", async () => {
    const big = Buffer.alloc(2 * 1024 * 1024, 0x20);
    const answers: Array<(res: ServerResponse) => void> = [
      (res) => res.end(big), // with content-length
      (res) => {
        // chunked, no length declared: the cap applies to the bytes as they come
        for (let i = 0; i < 8; i++) res.write(big.subarray(i * 262144, (i + 1) * 262144));
        res.end();
      },
    ];
    const srv = await serve(false, (_req, _body, res) => answers.shift()?.(res));
    try {
      const api = new KubeApi({ server: srv.url, token: () => "t" });
      for (let i = 0; i < 2; i++) {
        const err = await api.readPodAnnotations("ns", "p").catch((e: unknown) => e);
        expect(err).toBeInstanceOf(KubeApiError);
        expect(err).toMatchObject({ code: "HOPWAY_KUBE_API", status: 200 });
        expect((err as Error).message).toContain(`answer over ${1024 * 1024} bytes`);
      }
    } finally {
      await srv.close();
    }
  });

  it("keeps only string annotations and accepts a pod without any", async () => {
    const answers = [pod({ a: "x", b: 3 }), JSON.stringify({ kind: "Pod", metadata: {} })];
    const srv = await serve(false, (_req, _body, res) => res.end(answers.shift()));
    try {
      const api = new KubeApi({ server: srv.url, token: () => "t" });
      expect(await api.readPodAnnotations("ns", "p")).toEqual({ a: "x" });
      expect(await api.readPodAnnotations("ns", "p")).toEqual({});
    } finally {
      await srv.close();
    }
  });
});

describe("inClusterKubeApi", () => {
  it("uses KUBERNETES_SERVICE_HOST/PORT with the mounted token and CA", async () => {
    const sa = mkdtempSync(join(tmpdir(), "hopway-sa-"));
    writeFileSync(join(sa, "token"), "sa-token\n");
    writeFileSync(join(sa, "ca.crt"), readFileSync(join(dir, "ca.crt")));
    let auth: string | undefined;
    const srv = await serve(true, (req, _body, res) => {
      auth = req.headers.authorization;
      res.end(pod({ z: "1" }));
    });
    try {
      const port = new URL(srv.url).port;
      const api = inClusterKubeApi({ KUBERNETES_SERVICE_HOST: "127.0.0.1", KUBERNETES_SERVICE_PORT: port }, sa);
      expect(await api.readPodAnnotations("ns", "p")).toEqual({ z: "1" });
      expect(auth).toBe("Bearer sa-token");
    } finally {
      await srv.close();
      rmSync(sa, { recursive: true, force: true });
    }
  });

  it("says why when it is not in a cluster", () => {
    expect(() => inClusterKubeApi({}, dir)).toThrow(/KUBERNETES_SERVICE_HOST/);
    expect(() => inClusterKubeApi({ KUBERNETES_SERVICE_HOST: "10.0.0.1" }, join(dir, "missing"))).toThrow(/token/);
  });
});
