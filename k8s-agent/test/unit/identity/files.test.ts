// Bring-your-own PKI: files laid out the way Kubernetes mounts a Secret
// (timestamped directory, `..data` symlink swapped atomically, file symlinks
// through it), read by the real FilesIdentity on a fake clock.
import { X509Certificate } from "node:crypto";
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../../src/config.ts";
import type { RenewalResult } from "../../../src/identity/edge-issued.ts";
import { FilesIdentity } from "../../../src/identity/files.ts";
import { createRelayIdentity } from "../../../src/identity/index.ts";
import { createLogger } from "../../../src/log.ts";
import { FakeClock } from "../edge/fake-clock.ts";
import { relayKeyPair, type TestCa, testCa } from "./helpers.ts";

const HOUR = 3_600_000;

/** A Secret volume: `..data` → `..<n>` holding the files; each file name is a symlink through `..data`. */
class SecretVolume {
  readonly dir = mkdtempSync(join(tmpdir(), "hopway-secret-"));
  private generation = 0;

  write(files: Record<string, string>): void {
    const gen = `..2026_${++this.generation}`;
    mkdirSync(join(this.dir, gen));
    for (const [name, text] of Object.entries(files)) writeFileSync(join(this.dir, gen, name), text);
    const tmpLink = join(this.dir, "..data_tmp");
    symlinkSync(gen, tmpLink);
    renameSync(tmpLink, join(this.dir, "..data"));
    for (const name of Object.keys(files)) {
      try {
        symlinkSync(join("..data", name), join(this.dir, name));
      } catch {}
    }
    if (this.generation > 1) rmSync(join(this.dir, `..2026_${this.generation - 1}`), { recursive: true });
  }
}

async function material(ca: TestCa, opts: { name?: string; realm?: string; now?: number; lifetimeMs?: number } = {}) {
  const key = relayKeyPair();
  const cert = await ca.issue(
    key.publicPem,
    opts.name ?? "relay-a",
    opts.now ?? Date.now(),
    opts.lifetimeMs ?? HOUR,
    opts.realm ?? "r",
  );
  return { "tls.crt": cert, "tls.key": key.privatePem, "ca.crt": ca.pem };
}

function setup(vol: SecretVolume, clock: FakeClock) {
  const results: RenewalResult[] = [];
  const lines: string[] = [];
  const identity = new FilesIdentity({
    dir: vol.dir,
    realm: "r",
    node: "relay-a",
    pollMs: 5_000,
    clock,
    log: createLogger("debug", {}, (l) => lines.push(l)),
    onReload: (r) => results.push(r),
  });
  let changes = 0;
  identity.onChange(() => changes++);
  return { identity, results, lines, changes: () => changes };
}

/** Fires the poll timer and lets its reload finish. */
async function poll(clock: FakeClock, identity: FilesIdentity): Promise<void> {
  clock.advance(5_000);
  await identity.reload();
}

describe("createRelayIdentity with relay.tls.source files", () => {
  it("reads the directory from the config and exports expiry and reload metrics", async () => {
    const vol = new SecretVolume();
    vol.write(await material(await testCa(), { lifetimeMs: 2 * HOUR }));
    const config = parseConfig(
      `edge: { url: "http://127.0.0.1:8787", realm: r, token: t0ken }\nnode: relay-a\nrelay: { tls: { source: files, dir: "${vol.dir}" } }\n`,
      {},
    );
    const registry = new Registry();
    const identity = createRelayIdentity(
      config,
      registry,
      createLogger("error", {}, () => {}),
    );
    await identity.start();
    identity.updateTrustBundle(["ignored: ca.crt is the trust"]);
    expect(identity.material()?.trustBundle).toHaveLength(1);
    const text = await registry.metrics();
    const expiry = Number(/^hopway_relay_certificate_expiry_seconds (\S+)$/m.exec(text)?.[1]);
    expect(expiry).toBeGreaterThan(2 * 3600 - 60);
    expect(expiry).toBeLessThanOrEqual(2 * 3600);
    // Two hours, and the 5 minutes the test CA backdates a leaf by.
    const lifetime = Number(/^hopway_relay_certificate_lifetime_seconds (\S+)$/m.exec(text)?.[1]);
    expect(Math.abs(lifetime - (2 * 3600 + 300))).toBeLessThanOrEqual(1);
    expect(text).toMatch(/hopway_relay_certificate_renewals_total\{source="files",result="success"\} 1/);
    expect(text).toMatch(/hopway_relay_certificate_renewals_total\{source="files",result="invalid"\} 0/);
    identity.stop();
  });
});

describe("FilesIdentity", () => {
  it("loads tls.crt/tls.key/ca.crt and follows a Secret update (symlink swap)", async () => {
    const clock = new FakeClock();
    clock.t = Date.now();
    const ca = await testCa();
    const vol = new SecretVolume();
    const first = await material(ca);
    vol.write(first);
    const { identity, changes, results } = setup(vol, clock);
    await identity.start();
    const m = identity.material()!;
    expect(m.key).toBe(first["tls.key"]);
    expect(m.certChain).toBe(first["tls.crt"]);
    expect(m.trustBundle).toEqual([ca.pem]);
    expect(m.notAfter).toBe(Date.parse(new X509Certificate(first["tls.crt"]).validTo));
    expect(changes()).toBe(1);

    // Unchanged content: no change event on the next polls.
    await poll(clock, identity);
    await poll(clock, identity);
    expect(changes()).toBe(1);

    // cert-manager renewed: new key and certificate behind the swapped ..data link.
    const second = await material(ca, { lifetimeMs: 2 * HOUR });
    vol.write(second);
    await poll(clock, identity);
    expect(changes()).toBe(2);
    expect(identity.material()!.key).toBe(second["tls.key"]);
    expect(identity.material()!.notAfter).toBeGreaterThan(m.notAfter);
    expect(results).toEqual(["success", "success"]);
    identity.stop();
  });

  it.each([
    ["a key that does not match the certificate", "mismatch", /does not match/],
    ["a certificate for another relay", "other-name", /expected spiffe:\/\/r\/relay\/relay-a/],
    ["a certificate for another realm", "other-realm", /expected spiffe:\/\/r\/relay\/relay-a/],
    ["a certificate from a CA not in ca.crt", "other-ca", /does not chain/],
    ["an expired certificate", "expired", /expired/],
    ["a truncated key", "truncated", /unreadable/],
  ] as const)("keeps the previous material on %s", async (_label, kind, message) => {
    const clock = new FakeClock();
    clock.t = Date.now();
    const ca = await testCa();
    const vol = new SecretVolume();
    const good = await material(ca);
    vol.write(good);
    const { identity, changes, results, lines } = setup(vol, clock);
    await identity.start();
    let bad: Record<string, string>;
    if (kind === "mismatch") bad = { ...(await material(ca)), "tls.key": relayKeyPair().privatePem };
    else if (kind === "other-name") bad = await material(ca, { name: "relay-b" });
    else if (kind === "other-realm") bad = await material(ca, { realm: "s" });
    else if (kind === "other-ca") bad = { ...(await material(await testCa())), "ca.crt": ca.pem };
    else if (kind === "expired") bad = await material(ca, { now: Date.now() - 2 * HOUR, lifetimeMs: HOUR });
    else bad = { ...(await material(ca)), "tls.key": good["tls.key"].slice(0, 60) };
    vol.write(bad);
    await poll(clock, identity);
    expect(identity.material()!.key).toBe(good["tls.key"]);
    expect(changes()).toBe(1);
    expect(identity.lastError).toMatch(message);
    expect(results).toEqual(["success", "invalid"]);
    const errors = lines.map((l) => JSON.parse(l)).filter((l) => l.level === "error");
    expect(errors).toHaveLength(1);
    expect(errors[0].msg).toMatch(/rejected; keeping the previous/);
    // Polling the same bad content does not log again.
    await poll(clock, identity);
    expect(lines.map((l) => JSON.parse(l)).filter((l) => l.level === "error")).toHaveLength(1);
    // A good update is taken again.
    const fixed = await material(ca);
    vol.write(fixed);
    await poll(clock, identity);
    expect(identity.material()!.key).toBe(fixed["tls.key"]);
    expect(identity.lastError).toBeUndefined();
    identity.stop();
  });

  it("starts without the files and picks them up once they appear", async () => {
    const clock = new FakeClock();
    clock.t = Date.now();
    const vol = new SecretVolume();
    const { identity, changes } = setup(vol, clock);
    await identity.start();
    expect(identity.material()).toBeUndefined();
    expect(identity.lastError).toMatch(/cannot read/);
    vol.write(await material(await testCa()));
    await poll(clock, identity);
    expect(identity.material()).toBeDefined();
    expect(changes()).toBe(1);
    // And reports nothing once the leaf has expired.
    clock.advance(2 * HOUR);
    expect(identity.material()).toBeUndefined();
    identity.stop();
  });
});
