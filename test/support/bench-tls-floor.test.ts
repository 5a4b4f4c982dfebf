// The links bench's "node TLS floor" processes on real loopback sockets: three of them carry a
// stream byte for byte both ways with half-close (the bench's bulk exchange), and a hop refuses
// a TLS client without a certificate from the realm CA.
import { type ChildProcess, fork } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { probeMutualTls, writeRelayTls } from "./identity.ts";

const PROGRAM = join(import.meta.dirname, "bench-tls-floor.ts");
const dir = mkdtempSync(join(tmpdir(), "hopway-tls-floor-"));
const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function floor(args: string[]): Promise<number> {
  const child: ChildProcess = fork(PROGRAM, args, {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  cleanups.push(() => child.kill("SIGKILL"));
  const [msg] = (await once(child, "message")) as [{ port: number }];
  return msg.port;
}

const tls = (name: string) => writeRelayTls(join(dir, name), "bench", name);

async function listen(server: Server): Promise<number> {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  cleanups.push(() => server.close());
  const a = server.address();
  return typeof a === "object" && a ? a.port : 0;
}

describe("bench-tls-floor", () => {
  it("carries a stream through plain → TLS → TLS → plain intact, and the answer back after the sender's FIN", async () => {
    // The sink answers with the count and digest of what it got once the sender has ended.
    const sink = await listen(
      createServer({ allowHalfOpen: true }, (s) => {
        const h = createHash("sha256");
        let n = 0;
        s.on("data", (c: Buffer) => {
          n += c.length;
          h.update(c);
        });
        s.on("end", () => s.end(`${n} ${h.digest("hex")}`));
      }),
    );
    const c = await floor(["tls", "plain", String(sink), tls("floor-c")]);
    const b = await floor(["tls", "tls", String(c), tls("floor-b"), "floor-c"]);
    const a = await floor(["plain", "tls", String(b), tls("floor-a"), "floor-b"]);
    // Varied bytes, so a read buffer reused while a write still held it would change the digest.
    const block = randomBytes(3 * 1024 * 1024 + 17);
    const rounds = 8;
    const want = createHash("sha256");
    for (let i = 0; i < rounds; i++) want.update(block);
    const s = connect({ host: "127.0.0.1", port: a, allowHalfOpen: true });
    let answer = "";
    s.on("data", (d: Buffer) => {
      answer += d.toString();
    });
    await once(s, "connect");
    for (let i = 0; i < rounds; i++) if (!s.write(block)) await once(s, "drain");
    s.end();
    await once(s, "end");
    expect(answer).toBe(`${block.length * rounds} ${want.digest("hex")}`);
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
