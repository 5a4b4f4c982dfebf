// The cert-manager component (k8s-agent/deploy/components/cert-manager,
// docs/identity.md). cert-manager's CRDs are not in this repository, so the
// Issuer and Certificate are checked with zod schemas that mirror the fields of
// cert-manager's v1 API this component uses (strict: a misspelt field fails),
// the csi-driver volume with its documented csi.cert-manager.io/* attributes,
// and everything against what the agent expects: the URI SAN form, the file
// names it reads, ECDSA P-256, and the directory it is told to read.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { relayNameFromUri, relayUri } from "@hopway/core/identity";
import { describe, expect, it } from "vitest";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { z } from "zod";
import { parseConfig } from "../../src/config.ts";
import { FILE_NAMES } from "../../src/identity/files.ts";

const DEPLOY = join(dirname(fileURLToPath(import.meta.url)), "../../deploy");
const COMPONENT = join(DEPLOY, "components/cert-manager");

// biome-ignore lint/suspicious/noExplicitAny: manifests are free-form YAML; the schemas below narrow them
type Obj = Record<string, any>;
const load = (file: string): Obj => parseYaml(readFileSync(join(COMPONENT, file), "utf8")) as Obj;

/** Go duration as cert-manager parses it (metav1.Duration): e.g. 24h, 2160h, 90m. */
const GoDuration = z.string().regex(/^(\d+(\.\d+)?(h|m|s|ms))+$/, "a Go duration such as 24h");
const goSeconds = (d: string): number => {
  let s = 0;
  for (const m of d.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s)/g)) {
    s += Number(m[1]) * { h: 3600, m: 60, s: 1, ms: 0.001 }[m[2] as "h" | "m" | "s" | "ms"];
  }
  return s;
};
const Metadata = z.object({
  name: z.string(),
  namespace: z.string(),
  labels: z.record(z.string(), z.string()).optional(),
});
const IssuerRef = z.strictObject({
  name: z.string(),
  kind: z.enum(["Issuer", "ClusterIssuer"]),
  group: z.literal("cert-manager.io"),
});

/** cert-manager.io/v1 Issuer, CA issuer only (spec.ca.secretName). */
const IssuerSchema = z.strictObject({
  apiVersion: z.literal("cert-manager.io/v1"),
  kind: z.literal("Issuer"),
  metadata: Metadata,
  spec: z.strictObject({ ca: z.strictObject({ secretName: z.string().min(1) }) }),
});

/** cert-manager's key usages (KeyUsage in cert-manager.io/v1). */
const KeyUsage = z.enum([
  "signing",
  "digital signature",
  "content commitment",
  "key encipherment",
  "key agreement",
  "data encipherment",
  "cert sign",
  "crl sign",
  "encipher only",
  "decipher only",
  "any",
  "server auth",
  "client auth",
  "code signing",
  "email protection",
  "s/mime",
  "ipsec end system",
  "ipsec tunnel",
  "ipsec user",
  "timestamping",
  "ocsp signing",
  "microsoft sgc",
  "netscape sgc",
]);

/** cert-manager.io/v1 Certificate: the `spec` fields this component uses. */
const CertificateSchema = z.strictObject({
  apiVersion: z.literal("cert-manager.io/v1"),
  kind: z.literal("Certificate"),
  metadata: Metadata,
  spec: z.strictObject({
    secretName: z.string().min(1),
    commonName: z.string().max(64).optional(),
    uris: z.array(z.string()).min(1),
    duration: GoDuration,
    renewBefore: GoDuration,
    privateKey: z.strictObject({
      algorithm: z.enum(["RSA", "ECDSA", "Ed25519"]),
      size: z.number().int(),
      encoding: z.enum(["PKCS1", "PKCS8"]),
      rotationPolicy: z.enum(["Never", "Always"]),
    }),
    usages: z.array(KeyUsage),
    issuerRef: IssuerRef,
  }),
});

/** The csi.cert-manager.io volume attributes used (cert-manager csi-driver). */
const CsiAttributes = z.strictObject({
  "csi.cert-manager.io/issuer-name": z.string(),
  "csi.cert-manager.io/issuer-kind": z.enum(["Issuer", "ClusterIssuer"]),
  "csi.cert-manager.io/issuer-group": z.literal("cert-manager.io"),
  "csi.cert-manager.io/uri-sans": z.string(),
  "csi.cert-manager.io/common-name": z.string(),
  "csi.cert-manager.io/duration": GoDuration,
  "csi.cert-manager.io/renew-before": GoDuration,
  "csi.cert-manager.io/key-usages": z.string(),
  "csi.cert-manager.io/key-encoding": z.enum(["PKCS1", "PKCS8"]),
  "csi.cert-manager.io/certificate-file": z.string(),
  "csi.cert-manager.io/privatekey-file": z.string(),
  "csi.cert-manager.io/ca-file": z.string(),
  "csi.cert-manager.io/fs-group": z.string().regex(/^\d+$/),
});

const configMap = parseAllDocuments(readFileSync(join(DEPLOY, "base/configmap.yaml"), "utf8"))[0]!.toJS() as Obj;
/** The pod's environment, with the Secret's files given as variables (they are not mounted here). */
const POD_ENV = {
  POD_NAME: "hopway-agent-0",
  POD_NAMESPACE: "hopway",
  HOPWAY_TOKEN: "test-token",
  HOPWAY_LOCAL_API_TOKEN: "0123456789abcdef-local",
};
const baseConfig = parseConfig(configMap.data["agent.yaml"], POD_ENV);
const realm = baseConfig.edge.realm;
const baseSts = parseYaml(readFileSync(join(DEPLOY, "base/statefulset.yaml"), "utf8")) as Obj;

describe("cert-manager component", () => {
  const issuer = IssuerSchema.parse(load("issuer.yaml"));
  const cert = CertificateSchema.parse(load("certificate.yaml"));
  // A JSON patch (RFC 6902) of the agent container and the pod's volumes, for every workload kind.
  const ops = z
    .array(z.strictObject({ op: z.literal("add"), path: z.string(), value: z.record(z.string(), z.unknown()) }))
    .parse(load("workload-tls.patch.yaml"));
  const added = (path: string) => ops.filter((o) => o.path === path).map((o) => o.value as Obj);
  const agent = {
    env: added("/spec/template/spec/containers/0/env/-"),
    volumeMounts: added("/spec/template/spec/containers/0/volumeMounts/-"),
  };
  const volume = added("/spec/template/spec/volumes/-")[0] as Obj;
  const attrs = CsiAttributes.parse(volume.csi.volumeAttributes);
  const kustomization = load("kustomization.yaml");

  it("the schemas reject what cert-manager would (so the checks can fail)", () => {
    const bad = structuredClone(load("certificate.yaml"));
    bad.spec.privateKey.algorith = "ECDSA";
    expect(CertificateSchema.safeParse(bad).success).toBe(false);
    bad.spec = { ...load("certificate.yaml").spec, duration: "one day" };
    expect(CertificateSchema.safeParse(bad).success).toBe(false);
    expect(IssuerSchema.safeParse({ ...load("issuer.yaml"), spec: { ca: {} } }).success).toBe(false);
  });

  it("the Certificate names one relay of the realm with a P-256 key for both TLS roles", () => {
    expect(cert.spec.uris).toHaveLength(1);
    const name = relayNameFromUri(realm, cert.spec.uris[0]!);
    expect(name).toBe(cert.metadata.name);
    expect(cert.spec.commonName).toBe(name);
    expect(cert.spec.privateKey).toMatchObject({ algorithm: "ECDSA", size: 256 });
    expect(cert.spec.usages).toEqual(expect.arrayContaining(["digital signature", "server auth", "client auth"]));
    expect(goSeconds(cert.spec.renewBefore)).toBeLessThan(goSeconds(cert.spec.duration));
    expect(cert.spec.issuerRef).toEqual({ name: issuer.metadata.name, kind: "Issuer", group: "cert-manager.io" });
    expect(cert.metadata.namespace).toBe(issuer.metadata.namespace);
  });

  it("the Certificate is an example, not a resource: nothing keeps a key for a relay nobody runs", () => {
    expect(kustomization.resources).toEqual(["issuer.yaml"]);
    expect(kustomization.patches).toEqual([
      {
        path: "workload-tls.patch.yaml",
        target: { name: baseSts.metadata.name, kind: "StatefulSet|GameStatefulSet|GameDeployment" },
      },
    ]);
    expect(ops.map((o) => o.path).every((p) => p.startsWith("/spec/template/spec/"))).toBe(true);
  });

  it("each pod gets its own certificate named after the pod, in the files the agent reads", () => {
    // The patch adds to the pod's first container: the base's only one is the agent.
    expect((baseSts.spec.template.spec.containers as Obj[]).map((c) => c.name)).toEqual(["agent"]);
    expect(volume.csi.driver).toBe("csi.cert-manager.io");
    // csi-driver substitutes the pod's name for this variable.
    const podNameVariable = ["$", "{POD_NAME}"].join("");
    expect(attrs["csi.cert-manager.io/uri-sans"]).toBe(relayUri(realm, podNameVariable));
    // The pod name is the relay's record name in the base config.
    expect(baseConfig.node).toBe("hopway-agent-0");
    expect(attrs["csi.cert-manager.io/issuer-name"]).toBe(issuer.metadata.name);
    expect(attrs["csi.cert-manager.io/key-usages"].split(",")).toEqual(
      expect.arrayContaining(["digital signature", "server auth", "client auth"]),
    );
    expect(goSeconds(attrs["csi.cert-manager.io/renew-before"])).toBeLessThan(
      goSeconds(attrs["csi.cert-manager.io/duration"]),
    );
    expect({
      chain: attrs["csi.cert-manager.io/certificate-file"],
      key: attrs["csi.cert-manager.io/privatekey-file"],
      ca: attrs["csi.cert-manager.io/ca-file"],
    }).toEqual(FILE_NAMES);
    expect(Number(attrs["csi.cert-manager.io/fs-group"])).toBe(baseSts.spec.template.spec.securityContext.fsGroup);
    // The agent is told to read exactly that mount, through the config's own overrides.
    const env = Object.fromEntries((agent.env as Obj[]).map((e) => [e.name, e.value]));
    const mount = (agent.volumeMounts as Obj[]).find((m) => m.name === volume.name) as Obj;
    expect(mount.readOnly).toBe(true);
    const config = parseConfig(configMap.data["agent.yaml"], { ...POD_ENV, ...env });
    expect(config.relay.tls).toMatchObject({ source: "files", dir: mount.mountPath });
  });

  it.skipIf(!hasKubectl()).each([
    ["base", "StatefulSet"],
    ["overlays/bk-bcs", "GameStatefulSet"],
    ["overlays/bk-bcs-gamedeployment", "GameDeployment"],
  ])("%s + the component renders its %s with the relay's own certificate, in namespace hopway", (under, kind) => {
    const dir = mkdtempSync(join(tmpdir(), "hopway-overlay-"));
    writeFileSync(
      join(dir, "kustomization.yaml"),
      [
        "apiVersion: kustomize.config.k8s.io/v1beta1",
        "kind: Kustomization",
        `resources: [${relative(dir, join(DEPLOY, under))}]`,
        `components: [${relative(dir, COMPONENT)}]`,
        "",
      ].join("\n"),
    );
    const out = execFileSync("kubectl", ["kustomize", dir], { encoding: "utf8", timeout: 30_000 });
    const rendered = parseAllDocuments(out).map((d) => d.toJS() as Obj);
    expect(
      rendered
        .filter((o) => o.kind === "Issuer" || o.kind === "Certificate")
        .map((o) => `${o.kind}/${o.metadata.namespace}`),
    ).toEqual(["Issuer/hopway"]);
    const sts = rendered.find((o) => o.kind === kind) as Obj;
    const container = (sts.spec.template.spec.containers as Obj[]).find((c) => c.name === "agent") as Obj;
    // The patch merged into the base container instead of replacing its env and mounts.
    expect((container.env as Obj[]).map((e) => e.name)).toEqual(
      expect.arrayContaining(["POD_NAME", "HOPWAY_TLS_SOURCE", "HOPWAY_TLS_DIR"]),
    );
    expect((container.volumeMounts as Obj[]).map((m) => m.name)).toEqual(
      expect.arrayContaining(["config", "secrets", "data", "relay-tls"]),
    );
    expect((sts.spec.template.spec.volumes as Obj[]).map((v) => v.name)).toEqual(
      expect.arrayContaining(["config", "secrets", "relay-tls"]),
    );
  });
});

function hasKubectl(): boolean {
  try {
    execFileSync("kubectl", ["version", "--client"], { stdio: "ignore", timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}
