// The relay bench's "node, handles" reference (bench-floor-relay.ts `handles`) on real
// loopback sockets: it must forward byte for byte, carry each FIN on its own, and survive the
// bench's connection churn, or its per-connection figure would be a forwarder that cuts corners.
import { once } from "node:events";
import { connect, createServer, type Server } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { digestSink, forkProgram, listen as listenOn, sendDigested } from "./bench-programs.ts";

const PROGRAM = join(import.meta.dirname, "bench-floor-relay.ts");
const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

const forwarder = (target: number, mode: string) => forkProgram(PROGRAM, [String(target), mode], cleanups);
const listen = (server: Server) => listenOn(server, cleanups);

describe("bench-floor-relay handles", () => {
  it("carries two streams intact at once, then the answer the target writes after the sender's FIN", async () => {
    // The sink stalls at first: the kernel's buffers fill, and the forwarder's reads then meet a
    // full socket and take the queued path behind the shared read buffer.
    const port = await forwarder(await listen(digestSink(300)), "handles");
    // Two at once, so while one connection's unwritten bytes wait, the other reads into the same buffer.
    const [x, y] = await Promise.all([sendDigested(port), sendDigested(port)]);
    expect(x.answer).toBe(x.want);
    expect(y.answer).toBe(y.want);
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
