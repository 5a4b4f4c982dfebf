// The relay bench's "node, libuv handles" reference (bench-floor-relay.ts `handles`) on real
// loopback sockets: it must forward byte for byte, carry each FIN on its own, and survive the
// bench's connection churn, or its per-connection figure would be a forwarder that cuts corners.
import { type ChildProcess, fork } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { connect, createServer, type Server } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";

const PROGRAM = join(import.meta.dirname, "bench-floor-relay.ts");
const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

async function forwarder(target: number, mode: string): Promise<number> {
  const child: ChildProcess = fork(PROGRAM, [String(target), mode], {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  cleanups.push(() => child.kill("SIGKILL"));
  const [msg] = (await once(child, "message")) as [{ port: number }];
  return msg.port;
}

async function listen(server: Server): Promise<number> {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  cleanups.push(() => server.close());
  const a = server.address();
  return typeof a === "object" && a ? a.port : 0;
}

describe("bench-floor-relay handles", () => {
  it("carries two streams intact at once, then the answer the target writes after the sender's FIN", async () => {
    // The sink answers with the count and digest of what it got once the sender has ended, so a
    // FIN forwarded too early (or one direction closed with the other) loses the answer. It stops
    // reading for a while at first: the kernel's buffers fill, and the forwarder's reads then
    // meet a full socket and take the queued path behind the shared read buffer.
    const sink = await listen(
      createServer({ allowHalfOpen: true }, (s) => {
        const h = createHash("sha256");
        let n = 0;
        s.once("data", () => {
          s.pause();
          setTimeout(() => s.resume(), 300);
        });
        s.on("data", (c: Buffer) => {
          n += c.length;
          h.update(c);
        });
        s.on("end", () => s.end(`${n} ${h.digest("hex")}`));
      }),
    );
    const port = await forwarder(sink, "handles");
    // Two at once, so while one connection's unwritten bytes wait, the other reads into the same buffer.
    const transfer = async () => {
      // Varied bytes, so bytes written over while a write still held them would change the digest.
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
      expect(answer).toBe(`${block.length * rounds} ${want.digest("hex")}`);
    };
    await Promise.all([transfer(), transfer()]);
  });

  it("forwards and closes 500 short connections, 16 at a time, as the bench's clients make them", async () => {
    let open = 0;
    const echo = await listen(
      createServer((s) => {
        open++;
        s.on("close", () => open--);
        s.pipe(s);
      }),
    );
    const port = await forwarder(echo, "handles");
    let next = 0;
    const answers: string[] = [];
    const worker = async () => {
      while (next < 500) {
        const i = next++;
        const s = connect({ host: "127.0.0.1", port });
        await once(s, "connect");
        s.write(`ping ${i}`);
        const [d] = (await once(s, "data")) as [Buffer];
        answers.push(d.toString());
        s.end();
        await once(s, "close");
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    expect(answers).toHaveLength(500);
    expect(new Set(answers).size).toBe(500);
    // The client's FIN reached the echo server, which ended, and the forwarder closed its side.
    for (let i = 0; i < 100 && open > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(open).toBe(0);
  });
});
