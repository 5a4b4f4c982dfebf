// The links bench's "node TLS floor" processes on real loopback sockets: three of them carry a
// stream byte for byte both ways with half-close (the bench's bulk exchange), and a hop refuses
// a TLS client without a certificate from the realm CA.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { digestSink, forkProgram, listen as listenOn, sendDigested } from "./bench-programs.ts";
import { probeMutualTls, writeRelayTls } from "./identity.ts";

const PROGRAM = join(import.meta.dirname, "bench-tls-floor.ts");
const dir = mkdtempSync(join(tmpdir(), "hopway-tls-floor-"));
const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const floor = (args: string[]) => forkProgram(PROGRAM, args, cleanups);
const listen = (server: Server) => listenOn(server, cleanups);
const tls = (name: string) => writeRelayTls(join(dir, name), "bench", name);

describe("bench-tls-floor", () => {
  it("carries a stream through plain → TLS → TLS → plain intact, and the answer back after the sender's FIN", async () => {
    const sink = await listen(digestSink());
    const c = await floor(["tls", "plain", String(sink), tls("floor-c")]);
    const b = await floor(["tls", "tls", String(c), tls("floor-b"), "floor-c"]);
    const a = await floor(["plain", "tls", String(b), tls("floor-a"), "floor-b"]);
    const { answer, want } = await sendDigested(a);
    expect(answer).toBe(want);
  });

  it("a TLS hop requires a client certificate from the realm CA", async () => {
    const echo = await listen(createServer((s) => s.pipe(s)));
    const port = await floor(["tls", "plain", String(echo), tls("floor-x")]);
    const ca = readFileSync(join(tls("floor-y"), "ca.crt"));
    const dirY = tls("floor-y");
    const attempt = (withCert: boolean) =>
      probeMutualTls({
        host: "127.0.0.1",
        port,
        ca,
        servername: "",
        checkServerIdentity: () => undefined,
        ...(withCert ? { cert: readFileSync(join(dirY, "tls.crt")), key: readFileSync(join(dirY, "tls.key")) } : {}),
      });
    expect(await attempt(true)).toBe("mtls?");
    const refused = await attempt(false);
    expect(refused).not.toBe("mtls?");
    expect(refused).not.toBe("timeout");
  });
});
