// For the tests of the benchmarks' own programs (bench-tls-floor.ts, bench-floor-relay.ts): fork
// one, listen for it, and push a digested stream through it.
import { type ChildProcess, fork } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { connect, createServer, type Server } from "node:net";

/** Forks `program` under tsx; resolves with the port it reports. Its kill goes into `cleanups`. */
export async function forkProgram(program: string, args: string[], cleanups: Array<() => void>): Promise<number> {
  const child: ChildProcess = fork(program, args, {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  cleanups.push(() => child.kill("SIGKILL"));
  const [msg] = (await once(child, "message")) as [{ port: number }];
  return msg.port;
}

/** Listens on 127.0.0.1 (a free port); the close goes into `cleanups`. */
export async function listen(server: Server, cleanups: Array<() => void>): Promise<number> {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  cleanups.push(() => server.close());
  const a = server.address();
  return typeof a === "object" && a ? a.port : 0;
}

/**
 * A sink that answers with the count and sha256 of what it got once the sender has ended, so a
 * FIN carried too early (or one direction closed with the other) loses the answer. With
 * `stallMs` it stops reading for that long at first, so the kernel's buffers fill behind it.
 */
export function digestSink(stallMs = 0): Server {
  return createServer({ allowHalfOpen: true }, (s) => {
    const h = createHash("sha256");
    let n = 0;
    if (stallMs > 0) {
      s.once("data", () => {
        s.pause();
        setTimeout(() => s.resume(), stallMs);
      });
    }
    s.on("data", (c: Buffer) => {
      n += c.length;
      h.update(c);
    });
    s.on("end", () => s.end(`${n} ${h.digest("hex")}`));
  });
}

/**
 * Sends 24 MiB of random bytes to `port`, ends, and waits for the answer: what a digestSink behind
 * it answered, and what it should have.
 */
export async function sendDigested(port: number): Promise<{ answer: string; want: string }> {
  // Varied bytes, so a read buffer written over while a write still held it would change the digest.
  const block = randomBytes(3 * 1024 * 1024 + 17);
  const rounds = 8;
  const want = createHash("sha256");
  for (let i = 0; i < rounds; i++) want.update(block);
  const s = connect({ host: "127.0.0.1", port, allowHalfOpen: true });
  let answer = "";
  s.on("data", (d: Buffer) => {
    answer += d.toString();
  });
  await once(s, "connect");
  for (let i = 0; i < rounds; i++) if (!s.write(block)) await once(s, "drain");
  s.end();
  await once(s, "end");
  return { answer, want: `${block.length * rounds} ${want.digest("hex")}` };
}
