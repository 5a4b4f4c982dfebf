// The relay's identity source as the configuration chooses it (docs/identity.md).

import type { IdentitySource } from "@hopway/core/identity";
import type { Registry } from "prom-client";
import type { AgentConfig } from "../config.ts";
import type { Logger } from "../log.ts";
import { EdgeIssuedIdentity } from "./edge-issued.ts";
import { FilesIdentity } from "./files.ts";
import { createIdentityMetrics } from "./metrics.ts";

export { EdgeIssuedIdentity } from "./edge-issued.ts";
export { FilesIdentity } from "./files.ts";

export interface RelayIdentity extends IdentitySource {
  start(): Promise<void>;
  stop(): void;
  /** Takes the trust bundle the edge sent with a route table or records answer (ignored by the files source). */
  updateTrustBundle(bundle: readonly string[]): void;
}

export function createRelayIdentity(
  config: AgentConfig,
  registry: Registry,
  log: Logger,
  edgeFetch: typeof fetch = fetch,
): RelayIdentity {
  const tls = config.relay.tls;
  if (tls.source === "files") {
    let files: FilesIdentity | undefined;
    const metrics = createIdentityMetrics(registry, {
      source: "files",
      notAfter: () => files?.notAfter,
      notBefore: () => files?.notBefore,
    });
    files = new FilesIdentity({
      dir: tls.dir!,
      realm: config.edge.realm,
      node: config.node,
      pollMs: tls.poll_seconds * 1000,
      log,
      onReload: (r) => metrics.renewal(r),
    });
    const source = files;
    return {
      material: () => source.material(),
      onChange: (l) => source.onChange(l),
      start: () => source.start(),
      stop: () => source.stop(),
      // The external PKI's ca.crt is the trust: the edge's bundle is not used.
      updateTrustBundle: () => {},
    };
  }
  let edge: EdgeIssuedIdentity | undefined;
  const metrics = createIdentityMetrics(registry, {
    source: "edge",
    notAfter: () => edge?.notAfter,
    notBefore: () => edge?.notBefore,
  });
  edge = new EdgeIssuedIdentity({
    url: config.edge.url,
    realm: config.edge.realm,
    token: config.edgeToken,
    node: config.node,
    dataDir: config.data_dir,
    fetch: edgeFetch,
    log,
    onRenewal: (r) => metrics.renewal(r),
  });
  return edge;
}
