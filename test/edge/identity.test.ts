// The realm as its relays' certificate authority, inside workerd with real
// SQLite: who may obtain a certificate, that it verifies against the trust
// bundle, that the CA's private key never leaves, rotation and retirement,
// and that the bundle reaches agents with route tables and /changes.
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import { SCHEMA_VERSION } from "../../durable-objects/migrations.ts";
import type { RealmObject } from "../../durable-objects/realm.ts";
import { fromBase64, toBase64, toPem } from "../../src/core/der.ts";
import { parseCertificate, verifySignature } from "../../src/core/x509.ts";
import { clearRealmCacheForTest } from "../../src/edge/realm-cache.ts";
import { type Call, newRealm, node, call as rawCall, recordsBeforeReportNamespace, stubOf } from "./helpers.ts";

/** Every answer body of the test, to search for key material afterwards. */
const seen: string[] = [];
async function call(...args: Parameters<typeof rawCall>): Promise<Call> {
  const r = await rawCall(...args);
  seen.push(typeof r.body === "string" ? r.body : JSON.stringify(r.body));
  return r;
}
afterEach(() => {
  seen.length = 0;
});

async function publicKeyPem(curve: "P-256" | "P-384" = "P-256"): Promise<string> {
  const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: curve }, true, [
    "sign",
    "verify",
  ])) as CryptoKeyPair;
  return toPem("PUBLIC KEY", new Uint8Array((await crypto.subtle.exportKey("spki", keys.publicKey)) as ArrayBuffer));
}

async function setup() {
  const realm = await newRealm("pki");
  const base = `/v1/realms/${realm}`;
  await call("PUT", `${base}/nodes/relay-a`, { body: node("relay-a", "team-a") });
  await call("PUT", `${base}/nodes/relay-b`, { body: node("relay-b", "team-b") });
  await call("PUT", `${base}/nodes/app`, {
    body: { name: "app", type: "client", metadata: { namespace_name: "team-a" } },
  });
  await call("PUT", `${base}/nodes/g`, {
    body: { name: "g", type: "group", metadata: { namespace_name: "team-a" }, node_list: [{ node_name: "relay-a" }] },
  });
  const token = async (body: unknown) => (await call("POST", `${base}/tokens`, { body })).body.token as string;
  return {
    realm,
    base,
    agentA: await token({ role: "agent", namespaces: ["team-a"] }),
    reader: await token({ role: "reader" }),
  };
}

async function caSecrets(realm: string): Promise<string[]> {
  const pkcs8s = await runInDurableObject(stubOf(realm), (_i: RealmObject, state) =>
    state.storage.sql
      .exec<{ private_key_pkcs8: string }>("SELECT private_key_pkcs8 FROM ca_authorities")
      .toArray()
      .map((r) => r.private_key_pkcs8),
  );
  const out: string[] = [];
  for (const b64 of pkcs8s) {
    out.push(b64);
    const key = await crypto.subtle.importKey("pkcs8", fromBase64(b64), { name: "ECDSA", namedCurve: "P-256" }, true, [
      "sign",
    ]);
    const jwk = (await crypto.subtle.exportKey("jwk", key)) as JsonWebKey;
    out.push(jwk.d!);
    // The private scalar in standard base64 too.
    out.push(toBase64(fromBase64(jwk.d!.replace(/-/g, "+").replace(/_/g, "/").padEnd(44, "="))).replace(/=+$/, ""));
  }
  return out;
}

async function verifiesAgainstBundle(certificate: string, bundle: string[]): Promise<boolean> {
  const leaf = parseCertificate(certificate);
  for (const ca of bundle) if (await verifySignature(leaf, parseCertificate(ca).spki)) return true;
  return false;
}

describe("POST /relays/{name}/certificate", () => {
  it("issues a leaf for the relay that verifies against the trust bundle; the CA key is in no answer", async () => {
    const { realm, base, agentA } = await setup();
    const before = await call("GET", `${base}/trust-bundle`, { token: agentA });
    expect(before.body.trust_bundle).toEqual([]);
    const t0 = Date.now();
    const r = await call("POST", `${base}/relays/relay-a/certificate`, {
      token: agentA,
      body: { public_key: await publicKeyPem() },
    });
    expect(r.status).toBe(200);
    expect(r.headers.get("cache-control")).toBe("no-store");
    expect(r.body.uri).toBe(`spiffe://${realm}/relay/relay-a`);
    expect(r.body.chain).toEqual([r.body.certificate]);
    expect(r.body.trust_bundle).toHaveLength(1);
    const leaf = parseCertificate(r.body.certificate);
    expect(leaf.uris).toEqual([`spiffe://${realm}/relay/relay-a`]);
    expect(leaf.subjectCommonName).toBe("relay-a");
    expect(leaf.isCa).toBe(false);
    expect(leaf.serialHex).toBe(r.body.serial);
    // 24 h by default, from the moment of issuing (whole seconds).
    const t1 = Date.now();
    expect(Date.parse(r.body.not_after) - 24 * 3600_000).toBeGreaterThanOrEqual(t0 - 1_000);
    expect(Date.parse(r.body.not_after) - 24 * 3600_000).toBeLessThanOrEqual(t1);
    expect(await verifiesAgainstBundle(r.body.certificate, r.body.trust_bundle)).toBe(true);
    // Creating the CA changed the bundle: a new realm version.
    const after = await call("GET", `${base}/trust-bundle`, { token: agentA });
    expect(after.body.trust_bundle).toEqual(r.body.trust_bundle);
    expect(after.body.version).toBe(before.body.version + 1);
    // A second certificate comes from the same CA.
    const again = await call("POST", `${base}/relays/relay-a/certificate`, {
      body: { public_key: await publicKeyPem() },
    });
    expect(again.body.trust_bundle).toEqual(r.body.trust_bundle);
    expect(again.body.serial).not.toBe(r.body.serial);
    await call("GET", `${base}/ca`);

    const secrets = await caSecrets(realm);
    expect(secrets.length).toBe(3);
    for (const body of seen) for (const secret of secrets) expect(body).not.toContain(secret);
  });

  it("only for node records the caller may write", async () => {
    const { base, agentA, reader } = await setup();
    const pub = await publicKeyPem();
    const ask = (name: string, token: string | null | undefined, body: unknown = { public_key: pub }) =>
      call("POST", `${base}/relays/${name}/certificate`, { token, body });

    expect((await ask("relay-a", agentA)).status).toBe(200);
    const other = await ask("relay-b", agentA);
    expect(other.status).toBe(403);
    expect(other.body.error.code).toBe("namespace_forbidden");
    const read = await ask("relay-a", reader);
    expect(read.status).toBe(403);
    expect(read.body.error.code).toBe("forbidden");
    expect((await ask("relay-a", null)).status).toBe(401);
    const unknown = await ask("nope", agentA);
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toMatchObject({ code: "unknown_node", path: "name" });
    for (const name of ["app", "g"]) {
      const refused = await ask(name, undefined);
      expect(refused.status).toBe(400);
      expect(refused.body.error).toMatchObject({ code: "invalid_input", path: "name" });
      expect(refused.body.error.message).toMatch(/only node records/);
    }
  });

  it("refuses keys that are not P-256 public keys, naming public_key", async () => {
    const { base } = await setup();
    const rsa = (await crypto.subtle.generateKey(
      { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" },
      true,
      ["sign", "verify"],
    )) as CryptoKeyPair;
    const rsaPem = toPem(
      "PUBLIC KEY",
      new Uint8Array((await crypto.subtle.exportKey("spki", rsa.publicKey)) as ArrayBuffer),
    );
    const cases: [unknown, RegExp][] = [
      [{ public_key: rsaPem }, /not an EC key/],
      [{ public_key: await publicKeyPem("P-384") }, /not on P-256/],
      [{ public_key: "hello" }, /PUBLIC KEY/],
      [{ public_key: "" }, /./],
      [{}, /./],
    ];
    for (const [body, message] of cases) {
      const r = await call("POST", `${base}/relays/relay-a/certificate`, { body });
      expect(r.status).toBe(400);
      expect(r.body.error.code).toBe("invalid_input");
      expect(r.body.error.path).toBe("public_key");
      expect(r.body.error.message).toMatch(message);
    }
    const extra = await call("POST", `${base}/relays/relay-a/certificate`, {
      body: { public_key: await publicKeyPem(), private_key: "x" },
    });
    expect(extra.status).toBe(400);
    // Nothing was issued, so no CA was created either.
    expect((await call("GET", `${base}/trust-bundle`)).body.trust_bundle).toEqual([]);
  });

  it("bounds the unexpired certificates one name holds", async () => {
    const { base } = await setup();
    const pub = await publicKeyPem();
    for (let i = 0; i < 16; i++) {
      expect((await call("POST", `${base}/relays/relay-a/certificate`, { body: { public_key: pub } })).status).toBe(
        200,
      );
    }
    const r = await call("POST", `${base}/relays/relay-a/certificate`, { body: { public_key: pub } });
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe("conflict");
  });

  it("bounds a namespace's unexpired certificates, however many names it goes through", async () => {
    const { base, agentA } = await setup();
    // Four records allowed (team-a holds three): sixteen unexpired certificates for the namespace,
    // which one name reaches by itself.
    expect((await call("PUT", `${base}/limits`, { body: { namespaces: { "team-a": { records: 4 } } } })).status).toBe(
      200,
    );
    const pub = await publicKeyPem();
    const ask = (name: string) =>
      call("POST", `${base}/relays/${name}/certificate`, { token: agentA, body: { public_key: pub } });
    for (let i = 0; i < 16; i++) expect((await ask("relay-a")).status).toBe(200);
    // The per-name cap alone let a token go on with the next name.
    const put = await call("PUT", `${base}/nodes/relay-a2`, { token: agentA, body: node("relay-a2", "team-a") });
    expect(put.status).toBe(201);
    const refused = await ask("relay-a2");
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatchObject({ code: "conflict", path: "name" });
    expect(refused.body.error.message).toContain("namespace 'team-a' already holds 16 unexpired relay certificates");
    // Other namespaces are not held back.
    const other = await call("POST", `${base}/relays/relay-b/certificate`, { body: { public_key: pub } });
    expect(other.status).toBe(200);
    const ca = await call("GET", `${base}/ca`);
    const outstanding = ca.body.authorities.reduce(
      (n: number, a: { outstanding_certificates: number }) => n + a.outstanding_certificates,
      0,
    );
    expect(outstanding).toBe(17);
  });
});

describe("a relay name another namespace holds certificates for", () => {
  async function tenants() {
    const realm = await newRealm("pkins");
    const base = `/v1/realms/${realm}`;
    const token = async (ns: string) =>
      (await call("POST", `${base}/tokens`, { body: { role: "agent", namespaces: [ns] } })).body.token as string;
    return { realm, base, agentA: await token("a"), agentB: await token("b") };
  }
  const setClock = (realm: string, at: number) =>
    runInDurableObject(stubOf(realm), (instance: RealmObject) => {
      instance.clockForTest = () => at;
    });

  it("may not be taken by another namespace until they expire, and they never count against it", async () => {
    const { realm, base, agentA, agentB } = await tenants();
    // Tenant a registers a predictable name nobody holds yet, takes certificates for it, and lets it go.
    expect(
      (await call("PUT", `${base}/nodes/hopway-agent-0`, { token: agentA, body: node("hopway-agent-0", "a") })).status,
    ).toBe(201);
    const pub = await publicKeyPem();
    let last: Call | undefined;
    for (let i = 0; i < 16; i++) {
      last = await call("POST", `${base}/relays/hopway-agent-0/certificate`, {
        token: agentA,
        body: { public_key: pub },
      });
      expect(last.status).toBe(200);
    }
    expect((await call("DELETE", `${base}/nodes/hopway-agent-0`, { token: agentA })).status).toBe(200);

    // Tenant b may not register the name while a's certificates would let a stand in for b's relay.
    const taken = await call("PUT", `${base}/nodes/hopway-agent-0`, {
      token: agentB,
      body: node("hopway-agent-0", "b"),
    });
    expect(taken.status).toBe(409);
    expect(taken.body.error.code).toBe("name_certified");
    expect(taken.body.error.path).toBe("name");
    expect(taken.body.error.message).toContain(last!.body.not_after);
    expect((await call("GET", `${base}/nodes/hopway-agent-0`)).status).toBe(404);
    // Nor through an import, nor by the admin (the certificates are out whoever writes).
    const imported = await call("POST", `${base}/import`, {
      token: agentB,
      body: [node("b-other", "b"), node("hopway-agent-0", "b")],
    });
    expect(imported.status).toBe(409);
    expect(imported.body.error).toMatchObject({ code: "name_certified", path: "[1].name" });
    expect((await call("GET", `${base}/nodes/b-other`)).status).toBe(404);
    expect((await call("PUT", `${base}/nodes/hopway-agent-0`, { body: node("hopway-agent-0", "b") })).status).toBe(409);
    expect(
      (await call("PUT", `${base}/nodes/hopway-agent-0`, { body: { ...node("hopway-agent-0"), metadata: {} } })).status,
    ).toBe(409);

    // Tenant a may take its name back: the certificates are its own (and its limit still holds).
    expect(
      (await call("PUT", `${base}/nodes/hopway-agent-0`, { token: agentA, body: node("hopway-agent-0", "a") })).status,
    ).toBe(201);
    const full = await call("POST", `${base}/relays/hopway-agent-0/certificate`, {
      token: agentA,
      body: { public_key: pub },
    });
    expect(full.status).toBe(409);
    expect(full.body.error.code).toBe("conflict");
    // Moving the record to namespace b is refused too, for the admin as well.
    const moved = await call("PUT", `${base}/nodes/hopway-agent-0`, { body: node("hopway-agent-0", "b") });
    expect(moved.status).toBe(409);
    expect(moved.body.error.code).toBe("name_certified");
    expect((await call("GET", `${base}/nodes/hopway-agent-0`)).body.record.metadata.namespace_name).toBe("a");
    expect((await call("DELETE", `${base}/nodes/hopway-agent-0`, { token: agentA })).status).toBe(200);

    // Once they have expired the name is free, and a's 16 old certificates do not count against b.
    await setClock(realm, Date.parse(last!.body.not_after) + 1_000);
    expect(
      (await call("PUT", `${base}/nodes/hopway-agent-0`, { token: agentB, body: node("hopway-agent-0", "b") })).status,
    ).toBe(201);
    const mine = await call("POST", `${base}/relays/hopway-agent-0/certificate`, {
      token: agentB,
      body: { public_key: pub },
    });
    expect(mine.status).toBe(200);
  });

  it("counts the per-name limit within the record's namespace", async () => {
    const { realm, base, agentA, agentB } = await tenants();
    const pub = await publicKeyPem();
    expect((await call("PUT", `${base}/nodes/r`, { token: agentA, body: node("r", "a") })).status).toBe(201);
    const first = await call("POST", `${base}/relays/r/certificate`, { token: agentA, body: { public_key: pub } });
    expect(first.status).toBe(200);
    // A certificate row from before namespaces were recorded, for a name whose record is gone,
    // belongs to no known namespace: it neither blocks nor counts (see migrations.ts).
    await runInDurableObject(stubOf(realm), (_i: RealmObject, state) => {
      for (let i = 0; i < 16; i++) {
        state.storage.sql.exec(
          "INSERT INTO ca_issued (serial, generation, name, not_after, namespace, namespace_known) VALUES (?, 1, 's', ?, NULL, 0)",
          `legacy${i}`,
          Date.now() + 3_600_000,
        );
      }
    });
    expect((await call("PUT", `${base}/nodes/s`, { token: agentB, body: node("s", "b") })).status).toBe(201);
    const s = await call("POST", `${base}/relays/s/certificate`, { token: agentB, body: { public_key: pub } });
    expect(s.status).toBe(200);
    // ... but they still hold the CA they were signed by back from retirement.
    const ca = await call("GET", `${base}/ca`);
    expect(ca.body.authorities[0].outstanding_certificates).toBe(18);
  });
});

describe("CA settings and rotation", () => {
  it("the admin sets the leaf lifetime within bounds", async () => {
    const { base, agentA } = await setup();
    expect((await call("GET", `${base}/ca`)).body.cert_lifetime_seconds).toBe(86_400);
    for (const bad of [599, 30 * 86_400 + 1, 3600.5, "3600"]) {
      const r = await call("PUT", `${base}/ca`, { body: { cert_lifetime_seconds: bad } });
      expect(r.status).toBe(400);
      expect(r.body.error.path).toBe("cert_lifetime_seconds");
    }
    expect((await call("PUT", `${base}/ca`, { token: agentA, body: { cert_lifetime_seconds: 3600 } })).status).toBe(
      403,
    );
    expect((await call("GET", `${base}/ca`, { token: agentA })).status).toBe(403);
    const set = await call("PUT", `${base}/ca`, { body: { cert_lifetime_seconds: 3600 } });
    expect(set.body.cert_lifetime_seconds).toBe(3600);
    const t0 = Date.now();
    const r = await call("POST", `${base}/relays/relay-a/certificate`, {
      token: agentA,
      body: { public_key: await publicKeyPem() },
    });
    const t1 = Date.now();
    expect(Date.parse(r.body.not_after) - 3600_000).toBeGreaterThanOrEqual(t0 - 1_000);
    expect(Date.parse(r.body.not_after) - 3600_000).toBeLessThanOrEqual(t1);
  });

  it("rotation keeps both CAs trusted; the old one is retired only after its leaves expired", async () => {
    const { realm, base, agentA } = await setup();
    const first = await call("POST", `${base}/relays/relay-a/certificate`, {
      token: agentA,
      body: { public_key: await publicKeyPem() },
    });
    const [oldCa] = first.body.trust_bundle as string[];
    expect((await call("POST", `${base}/ca/rotate`, { token: agentA })).status).toBe(403);
    const rotated = await call("POST", `${base}/ca/rotate`);
    expect(rotated.status).toBe(200);
    expect(
      rotated.body.authorities.map((a: { generation: number; active: boolean }) => [a.generation, a.active]),
    ).toEqual([
      [1, false],
      [2, true],
    ]);
    expect(rotated.body.authorities[0].outstanding_certificates).toBe(1);
    const bundle = (await call("GET", `${base}/trust-bundle`, { token: agentA })).body.trust_bundle as string[];
    expect(bundle).toHaveLength(2);
    expect(bundle[0]).toBe(oldCa);
    // New certificates come from the new CA; the old leaf still verifies against the bundle.
    const second = await call("POST", `${base}/relays/relay-a/certificate`, {
      token: agentA,
      body: { public_key: await publicKeyPem() },
    });
    expect(await verifySignature(parseCertificate(second.body.certificate), parseCertificate(bundle[1]!).spki)).toBe(
      true,
    );
    expect(await verifySignature(parseCertificate(second.body.certificate), parseCertificate(oldCa!).spki)).toBe(false);
    expect(parseCertificate(second.body.certificate).issuer).toEqual(parseCertificate(bundle[1]!).subject);
    expect(await verifiesAgainstBundle(first.body.certificate, bundle)).toBe(true);

    const early = await call("POST", `${base}/ca/retire-old`);
    expect(early.status).toBe(409);
    expect(early.body.error.code).toBe("conflict");
    expect(early.body.error.message).toContain(first.body.not_after);
    expect((await call("GET", `${base}/trust-bundle`)).body.trust_bundle).toHaveLength(2);

    // Once the old CA's last leaf has expired, it can go.
    const later = Date.parse(first.body.not_after) + 1_000;
    await runInDurableObject(stubOf(realm), (instance: RealmObject) => {
      instance.clockForTest = () => later;
    });
    const retired = await call("POST", `${base}/ca/retire-old`);
    expect(retired.status).toBe(200);
    expect(retired.body.retired).toEqual([1]);
    expect(retired.body.authorities.map((a: { generation: number }) => a.generation)).toEqual([2]);
    expect((await call("GET", `${base}/trust-bundle`)).body.trust_bundle).toEqual([bundle[1]]);
    const remaining = await runInDurableObject(
      stubOf(realm),
      (_i: RealmObject, state) =>
        state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM ca_authorities").one().n,
    );
    expect(remaining).toBe(1);
    // Nothing more to retire.
    expect((await call("POST", `${base}/ca/retire-old`)).body.retired).toEqual([]);
  });
});

describe("the trust bundle reaches agents", () => {
  it("in the route table and /changes, and a rotation wakes a long-poll", async () => {
    const { base, agentA, reader } = await setup();
    const t0 = await call("GET", `${base}/route-tables/relay-a`, { token: agentA });
    expect(t0.body.trust_bundle).toEqual([]);
    await call("POST", `${base}/relays/relay-a/certificate`, {
      token: agentA,
      body: { public_key: await publicKeyPem() },
    });
    const t1 = await call("GET", `${base}/route-tables/relay-a`, { token: agentA });
    expect(t1.body.trust_bundle).toHaveLength(1);
    expect(t1.headers.get("etag")).not.toBe(t0.headers.get("etag"));

    const poll = call("GET", `${base}/route-tables/relay-a?wait=20`, {
      token: agentA,
      headers: { "if-none-match": t1.headers.get("etag")! },
    });
    await new Promise((r) => setTimeout(r, 200));
    const started = Date.now();
    await call("POST", `${base}/ca/rotate`);
    const t2 = await poll;
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(t2.status).toBe(200);
    expect(t2.body.trust_bundle).toHaveLength(2);
    expect(t2.body.trust_bundle[0]).toBe(t1.body.trust_bundle[0]);

    const changes = await call("GET", `${base}/changes`, { token: reader });
    expect(changes.body.trust_bundle).toEqual(t2.body.trust_bundle);
    const delta = await call("GET", `${base}/changes?since=${t1.body.version}&epoch=${changes.body.epoch}`, {
      token: reader,
    });
    expect(delta.body.kind).toBe("delta");
    expect(delta.body.changes).toEqual([]);
    expect(delta.body.trust_bundle).toHaveLength(2);
    // A fresh isolate (reset path, by pages) sees the same bundle.
    clearRealmCacheForTest();
    const t3 = await call("GET", `${base}/route-tables/relay-a`, { token: agentA });
    expect(t3.body.trust_bundle).toEqual(t2.body.trust_bundle);
    expect(t3.headers.get("etag")).toBe(t2.headers.get("etag"));
  });
});

describe("migration", () => {
  it("a realm stored by schema 10 gains the index that counts certificates per namespace", async () => {
    const { realm, base, agentA } = await setup();
    const issued = await call("POST", `${base}/relays/relay-a/certificate`, {
      token: agentA,
      body: { public_key: await publicKeyPem() },
    });
    expect(issued.status).toBe(200);
    await runInDurableObject(stubOf(realm), (_instance: RealmObject, state) => {
      state.storage.sql.exec("DROP INDEX ca_issued_namespace");
      state.storage.sql.exec("UPDATE schema_version SET version = 10");
    });
    await evictDurableObject(stubOf(realm));
    const after = await runInDurableObject(stubOf(realm), (_i, state) => ({
      version: state.storage.sql.exec<{ version: number }>("SELECT version FROM schema_version").one().version,
      index: state.storage.sql
        .exec<{ n: number }>("SELECT count(*) AS n FROM sqlite_master WHERE name = 'ca_issued_namespace'")
        .one().n,
    }));
    expect(after).toEqual({ version: SCHEMA_VERSION, index: 1 });
    clearRealmCacheForTest();
    // The certificate issued before counts in its namespace's limit after.
    expect((await call("PUT", `${base}/limits`, { body: { namespaces: { "team-a": { records: 1 } } } })).status).toBe(
      200,
    );
    for (let i = 0; i < 3; i++) {
      const r = await call("POST", `${base}/relays/relay-a/certificate`, {
        token: agentA,
        body: { public_key: await publicKeyPem() },
      });
      expect(r.status).toBe(200);
    }
    const fifth = await call("POST", `${base}/relays/relay-a/certificate`, {
      token: agentA,
      body: { public_key: await publicKeyPem() },
    });
    expect(fifth.status).toBe(409);
  });

  it("a realm stored by schema 2 gains the CA tables and issues certificates", async () => {
    const { realm, base, agentA } = await setup();
    await runInDurableObject(stubOf(realm), (_instance: RealmObject, state) => {
      const sql = state.storage.sql;
      sql.exec("DROP TABLE ca_issued");
      sql.exec("DROP TABLE ca_authorities");
      recordsBeforeReportNamespace(sql);
      sql.exec("UPDATE schema_version SET version = 2");
    });
    // A restarted object migrates in its constructor, before it serves anything.
    await evictDurableObject(stubOf(realm));
    const now = await runInDurableObject(
      stubOf(realm),
      (_i, state) => state.storage.sql.exec<{ version: number }>("SELECT version FROM schema_version").one().version,
    );
    expect(now).toBe(SCHEMA_VERSION);
    clearRealmCacheForTest();
    expect((await call("GET", `${base}/nodes/relay-a`)).status).toBe(200);
    const r = await call("POST", `${base}/relays/relay-a/certificate`, {
      token: agentA,
      body: { public_key: await publicKeyPem() },
    });
    expect(r.status).toBe(200);
    expect(await verifiesAgainstBundle(r.body.certificate, r.body.trust_bundle)).toBe(true);
  });
});
