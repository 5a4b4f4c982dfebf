// Relay identities on the edge (docs/contract/edge-api.md §8; docs/identity.md): the realm object is the
// realm's certificate authority; these routes validate the input, check the
// public key here (so malformed keys never cost the realm object) and call it.
import type { Hono } from "hono";
import { NameSchema } from "../core/index.ts";
import { CaSettingsBodySchema, CertificateRequestSchema } from "../core/wire.ts";
import { parseP256Spki, X509Error } from "../core/x509.ts";
import { API, reply } from "./api.ts";
import { EdgeError, readJson, requireAdmin, unwrap, validate } from "./http.ts";
import type { Caller } from "./types.ts";

type IdentityVars = {
  realm: string;
  caller: Caller;
  stub: DurableObjectStub<import("../../durable-objects/realm.ts").RealmObject>;
};
type IdentityEnv = { Bindings: Env; Variables: IdentityVars };

const NO_STORE = { "Cache-Control": "no-store" };

/** Mounts the identity endpoints on the realm router (after its auth middleware). */
export function mountIdentity(realms: Hono<IdentityEnv>): void {
  realms.post("/relays/:name/certificate", async (c) => {
    const name = validate(NameSchema, c.req.param("name"), ["name"]);
    const body = validate(CertificateRequestSchema, await readJson(c.req.raw, 16 * 1024));
    let spki: Uint8Array;
    try {
      spki = await parseP256Spki(body.public_key);
    } catch (err) {
      if (err instanceof X509Error) throw new EdgeError(400, "invalid_input", err.message, "public_key");
      throw err;
    }
    const r = unwrap(await c.var.stub.issueCertificate(c.var.caller, c.var.realm, name, spki));
    return reply(c, API.certificate, 200, r.issued, NO_STORE);
  });

  realms.get("/trust-bundle", async (c) => {
    const r = unwrap(await c.var.stub.trustBundle(c.var.caller));
    return reply(
      c,
      API.trustBundle,
      200,
      { version: r.version, trust_bundle: r.trust_bundle },
      { "Cache-Control": "no-cache" },
    );
  });

  const status = (r: Awaited<ReturnType<IdentityVars["stub"]["getCa"]>>) => {
    const { ok: _ok, ...rest } = unwrap(r);
    return rest;
  };
  realms.get("/ca", async (c) => reply(c, API.getCa, 200, status(await c.var.stub.getCa(c.var.caller)), NO_STORE));
  realms.put("/ca", async (c) => {
    requireAdmin(c.var.caller);
    const body = validate(CaSettingsBodySchema, await readJson(c.req.raw));
    return reply(c, API.putCa, 200, status(await c.var.stub.setCa(c.var.caller, body.cert_lifetime_seconds)), NO_STORE);
  });
  realms.post("/ca/rotate", async (c) =>
    reply(c, API.rotateCa, 200, status(await c.var.stub.rotateCa(c.var.caller, c.var.realm)), NO_STORE),
  );
  realms.post("/ca/retire-old", async (c) =>
    reply(c, API.retireOldCa, 200, status(await c.var.stub.retireOldCa(c.var.caller)), NO_STORE),
  );
}
