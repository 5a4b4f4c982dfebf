// Relay identities for tests: a realm CA and relay leaf certificates made with
// openssl (EC P-256, URI SAN spiffe://<realm>/relay/<name>), generated once per
// test process into a temp dir, handed to relays as a static IdentitySource.
import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ConnectionOptions, type TLSSocket, connect as tlsConnect } from "node:tls";
import { type IdentitySource, relayUri, type TlsMaterial } from "../../src/core/identity.ts";

export interface TestPki {
  realm: string;
  caCert: string;
  /**
   * A leaf for `name` signed by this CA. `uri` overrides the SAN (another realm's name, a
   * non-relay identity); `expired` makes one whose validity ended in 2020; `extendedKeyUsage`
   * replaces `serverAuth,clientAuth`.
   */
  issue(name: string, opts?: { uri?: string; expired?: boolean; extendedKeyUsage?: string }): TlsMaterial;
}

let root: string | undefined;
const pkis = new Map<string, TestPki>();
const issued = new Map<string, TlsMaterial>();

function workDir(): string {
  root ??= mkdtempSync(join(tmpdir(), "hopway-pki-"));
  return root;
}

/** The CA of `realm` (one per realm and test process; a second `tag` makes an unrelated CA for the same realm). */
export function testPki(realm: string, tag = "main"): TestPki {
  const id = `${realm}-${tag}`;
  const existing = pkis.get(id);
  if (existing) return existing;
  const dir = join(workDir(), id);
  mkdirSync(dir, { recursive: true });
  // Arguments are space-separated words; none of them contains a space.
  const ssl = (args: string) => execFileSync("openssl", args.split(" "), { cwd: dir, stdio: "pipe" });
  const ecKey = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
  ssl(
    `req -x509 ${ecKey} -keyout ca.key -out ca.crt -days 3 -subj /CN=hopway-test-CA-${id} ` +
      "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign",
  );
  writeFileSync(join(dir, "index.txt"), "");
  writeFileSync(join(dir, "serial"), "1000\n");
  writeFileSync(
    join(dir, "ca.cnf"),
    "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\ndefault_md = sha256\n" +
      "policy = p\nunique_subject = no\n[p]\ncommonName = supplied\n",
  );
  const caCert = readFileSync(join(dir, "ca.crt"), "utf8");
  let n = 0;
  const pki: TestPki = {
    realm,
    caCert,
    issue(name, opts = {}) {
      const uri = opts.uri ?? relayUri(realm, name);
      const eku = opts.extendedKeyUsage ?? "serverAuth,clientAuth";
      const key = `${id}|${name}|${uri}|${opts.expired === true}|${eku}`;
      const cached = issued.get(key);
      if (cached) return cached;
      const f = `leaf${++n}`;
      ssl(`req ${ecKey} -keyout ${f}.key -out ${f}.csr -subj /CN=${name}`);
      writeFileSync(
        join(dir, `${f}.ext`),
        `subjectAltName=URI:${uri}\nextendedKeyUsage=${eku}\nbasicConstraints=critical,CA:FALSE\n` +
          "keyUsage=critical,digitalSignature\n",
      );
      const dates = opts.expired ? "-startdate 20200101000000Z -enddate 20200102000000Z" : "-days 2";
      ssl(
        `ca -config ca.cnf -batch -notext -cert ca.crt -keyfile ca.key -in ${f}.csr -out ${f}.crt ` +
          `-extfile ${f}.ext ${dates}`,
      );
      const m: TlsMaterial = {
        key: readFileSync(join(dir, `${f}.key`), "utf8"),
        certChain: readFileSync(join(dir, `${f}.crt`), "utf8"),
        trustBundle: [caCert],
        notAfter: opts.expired ? Date.UTC(2020, 0, 2) : Date.now() + 2 * 86_400_000,
      };
      issued.set(key, m);
      return m;
    },
  };
  pkis.set(id, pki);
  return pki;
}

export interface StaticIdentityForTest extends IdentitySource {
  /** Replaces the material and tells the listeners (a renewal or a CA rotation). */
  set(material: TlsMaterial | undefined): void;
}

/** An IdentitySource that returns what the test gives it. */
export function staticIdentityForTest(material: TlsMaterial | undefined): StaticIdentityForTest {
  let current = material;
  const listeners = new Set<() => void>();
  return {
    material: () => current,
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    set(m) {
      current = m;
      for (const l of listeners) l();
    },
  };
}

/** The identity of relay `name` in `realm`, from that realm's test CA. */
export function relayIdentityForTest(realm: string, name: string): StaticIdentityForTest {
  return staticIdentityForTest(testPki(realm).issue(name));
}

/**
 * Writes relay `name`'s certificate from the test CA of `realm` as relay.tls files expects
 * them (tls.crt, tls.key, ca.crt) into `dir`; returns `dir`.
 */
export function writeRelayTls(dir: string, realm: string, name: string): string {
  const m = testPki(realm).issue(name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "tls.crt"), m.certChain);
  writeFileSync(join(dir, "tls.key"), m.key, { mode: 0o600 });
  writeFileSync(join(dir, "ca.crt"), m.trustBundle.join("\n"));
  return dir;
}

/**
 * The files an external PKI writes (tls.crt, tls.key, ca.crt), read once, as a static source:
 * for processes that only need a fixed identity (the bench's relay workers). The agent's own
 * reader, which validates and reloads, is k8s-agent/src/identity/files.ts.
 */
export function identityFromFiles(dir: string): StaticIdentityForTest {
  const read = (name: string) => readFileSync(join(dir, name), "utf8");
  const certChain = read("tls.crt");
  return staticIdentityForTest({
    key: read("tls.key"),
    certChain,
    trustBundle: read("ca.crt").match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [],
    notAfter: Date.parse(new X509Certificate(certChain).validTo),
  });
}

/**
 * One TLS client that writes "mtls?" once its handshake is done and says what came back: the
 * echo, `error <code>`, `closed` or `timeout` (5 s). Used to prove a hop demands a client
 * certificate: with one it should echo, without one it should be refused (not time out).
 */
export function probeMutualTls(options: ConnectionOptions): Promise<string> {
  return new Promise<string>((resolve) => {
    const s = tlsConnect(options);
    const timer = setTimeout(() => finish("timeout"), 5_000);
    const finish = (what: string) => {
      clearTimeout(timer);
      s.destroy();
      resolve(what);
    };
    s.on("secureConnect", () => s.write("mtls?"));
    s.on("data", (d: Buffer) => finish(d.toString()));
    s.on("error", (e: NodeJS.ErrnoException) => finish(`error ${e.code ?? e.message}`));
    s.on("end", () => finish("closed"));
  });
}

/**
 * A TLS 1.3 connection to a relay on loopback `port` as relay `asRelay` of `realm` (its test
 * certificate), offering `alpn`, once the handshake is done (rejected when it closes before): the raw socket a link session is made
 * on. The relay's own certificate is not checked against a name (tests pick the relay by port).
 */
export async function dialLinkForTest(
  port: number,
  realm: string,
  asRelay: string,
  alpn: string,
  /** The loopback address to dial from (another source address than 127.0.0.1). */
  localAddress?: string,
): Promise<TLSSocket> {
  const m = relayIdentityForTest(realm, asRelay).material();
  if (!m) throw new Error(`no test identity for ${asRelay}`);
  const tcp = localAddress === undefined ? undefined : netConnect({ host: "127.0.0.1", port, localAddress });
  tcp?.on("error", () => {});
  const raw = tlsConnect({
    ...(tcp === undefined ? { host: "127.0.0.1", port } : { socket: tcp }),
    key: m.key,
    cert: m.certChain,
    ca: m.trustBundle,
    checkServerIdentity: () => undefined,
    ALPNProtocols: [alpn],
    minVersion: "TLSv1.3",
  });
  raw.on("error", () => {});
  await once(raw, "secureConnect");
  return raw;
}
