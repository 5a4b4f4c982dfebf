// Load generator and targets for bench/relay.bench.ts, one role per process so
// the file-descriptor limit (20,000 per process) and the event loop of one role
// never limit another. The same code drives the direct, HAProxy and relay runs;
// only the address and the optional CONNECT line differ.
//   serve                      → {bulk, echo} ports; bulk counts bytes and answers the count, echo echoes
//   send HOST PORT BYTES [AUTH]  → {bytes, seconds, fromConnect}: from the first byte sent, and from TCP connect
//   cps HOST PORT SECONDS CONC [AUTH|-] [MAX] → {done, seconds, failed}; stops at SECONDS or MAX connections
//   idle HOST PORT COUNT AUTH    → prints {ready}, holds the tunnels until stdin closes
import { once } from "node:events";
import { connect, createServer, type Socket } from "node:net";

const [mode, ...args] = process.argv.slice(2);
const out = (v: unknown) => process.stdout.write(`${JSON.stringify(v)}\n`);

/** Connects and, when `authority` is given, opens a CONNECT tunnel first. */
function open(host: string, port: number, authority: string | undefined): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port, noDelay: true });
    s.once("error", reject);
    s.once("connect", () => {
      if (!authority) {
        s.off("error", reject);
        return resolve(s);
      }
      s.write(`CONNECT ${authority} HTTP/1.1\r\n\r\n`);
      let buf = Buffer.alloc(0);
      const onData = (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        s.off("data", onData);
        s.off("error", reject);
        s.pause();
        if (!buf.subarray(0, 12).toString().startsWith("HTTP/1.1 200")) {
          s.destroy();
          return reject(new Error(buf.subarray(0, end).toString()));
        }
        if (buf.length > end + 4) s.unshift(buf.subarray(end + 4));
        resolve(s);
      };
      s.on("data", onData);
    });
  });
}

async function main(): Promise<void> {
  if (mode === "serve") {
    const bulk = createServer((s) => {
      let n = 0;
      s.on("data", (c: Buffer) => {
        n += c.length;
      });
      s.on("end", () => s.end(`${n}\n`));
      s.on("error", () => {});
    });
    const echo = createServer((s) => {
      s.setNoDelay(true);
      s.on("error", () => {});
      s.pipe(s);
    });
    echo.maxConnections = 19_900;
    bulk.listen(0, "127.0.0.1");
    echo.listen(0, "127.0.0.1", 4096);
    await Promise.all([once(bulk, "listening"), once(echo, "listening")]);
    const port = (srv: typeof bulk) => {
      const a = srv.address();
      return typeof a === "object" && a ? a.port : 0;
    };
    out({ bulk: port(bulk), echo: port(echo) });
    process.stdin.resume();
    process.stdin.on("end", () => process.exit(0));
    return;
  }
  const host = args[0] as string;
  const port = Number(args[1]);
  if (mode === "send") {
    const total = Number(args[2]);
    // `fromConnect` also counts the tunnel's setup: a client at a listener starts sending before
    // its path is up, so only this time compares a listener with a CONNECT tunnel fairly.
    const connectAt = performance.now();
    const s = await open(host, port, args[3]);
    const block = Buffer.alloc(1024 * 1024, 0x5a);
    let answer = "";
    s.on("data", (c: Buffer) => {
      answer += c.toString();
    });
    s.resume();
    const t0 = performance.now();
    for (let sent = 0; sent < total; sent += block.length) {
      if (!s.write(block)) await once(s, "drain");
    }
    s.end();
    await once(s, "end");
    const end = performance.now();
    if (Number(answer.trim()) !== total) throw new Error(`sink counted ${answer.trim()} of ${total}`);
    out({ bytes: total, seconds: (end - t0) / 1000, fromConnect: (end - connectAt) / 1000 });
    return;
  }
  if (mode === "cps") {
    const seconds = Number(args[2]);
    const conc = Number(args[3]);
    const authority = args[4] === "-" ? undefined : args[4];
    const max = Number(args[5] ?? Number.POSITIVE_INFINITY);
    const deadline = performance.now() + seconds * 1000;
    let done = 0;
    let failed = 0;
    let started = 0;
    const worker = async () => {
      while (performance.now() < deadline && started < max) {
        started++;
        try {
          const s = await open(host, port, authority);
          s.resume();
          s.write("ping\n");
          await once(s, "data");
          s.destroy();
          done++;
        } catch {
          failed++;
        }
      }
    };
    const t0 = performance.now();
    await Promise.all(Array.from({ length: conc }, worker));
    out({ done, failed, seconds: (performance.now() - t0) / 1000 });
    return;
  }
  if (mode === "idle") {
    const count = Number(args[2]);
    const authority = args[3];
    const held: Socket[] = [];
    let next = 0;
    const worker = async () => {
      while (next < count) {
        next++;
        const s = await open(host, port, authority);
        s.on("error", () => {});
        held.push(s);
      }
    };
    await Promise.all(Array.from({ length: 64 }, worker));
    out({ ready: held.length });
    process.stdin.resume();
    process.stdin.on("data", () => out({ ready: held.length }));
    process.stdin.on("end", () => process.exit(0));
    return;
  }
  throw new Error(`unknown mode ${mode}`);
}

main().then(
  () => {
    if (mode !== "serve" && mode !== "idle") process.exit(0);
  },
  (err: unknown) => {
    process.stderr.write(`bench-peer ${mode}: ${String(err)}\n`);
    process.exit(1);
  },
);
