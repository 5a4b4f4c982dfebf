// A small stateful key-value service that uses Hopway's key ownership the way
// a production service would: it serves only the keys its pod owns, fetches a
// key from `previous` while a move is in progress, pulls its keys when it
// joins, hands its keys over when it drains, and reports holds_state so the
// state floor (and so the HPA) can follow. Run as its own process:
//   node --import tsx kv-app.ts '{"name":"kv-0",...}'
// It reaches its peers only through its own agent's relay (CONNECT kv-j),
// and asks its own agent (local API) about ownership.
//
// Line protocol (keys and values percent-encoded, one request per line):
//   SET k v        → OK <me> | MOVED <owner> | RETRY <why>
//   GET k          → VAL v <me> | NIL <me> | MOVED <owner> | RETRY <why>
//   TAKE k         → VAL v | NIL | MOVED <owner>     (peer: hand one key over)
//   PUT k v        → OK | KEPT | MOVED <owner>       (peer: hand-over, put-if-absent)
//   PULL who epoch → BATCH n + n lines "k v" | EPOCH <mine>   (peer: keys `who` owns)
//   LOAD x         → OK                              (operator: load factor to report)
//   PAUSE | GO     → OK                              (test: hold or release the migration loop)
//   STATS          → STATS <json>
import { once } from "node:events";
import { connect, createServer, type Socket } from "node:net";
import type { OwnershipIndex } from "@hopway/core/ownership";
import { AgentClient } from "../../src/client/index.ts";

export interface KvAppConfig {
  /** This application's record name (a member of the group). */
  name: string;
  group: string;
  host: string;
  port: number;
  /** The pod agent's admin URL (local API). */
  agentUrl: string;
  /** The agent's admin.local_api_token: reports are writes and need it. */
  agentToken: string;
  /** The pod agent's relay listener, to reach peers. */
  relay: { host: string; port: number };
  load: number;
  /** Start with migration paused (pull/push wait for `GO`), so a test can read during a move. */
  paused: boolean;
  tickMs: number;
}

// ---- a pipelined line connection (also used by the test client) -------------

export class LineConn {
  private buf = "";
  private readonly waiters: Array<(line: string) => void> = [];
  /** Lines that arrived before anyone asked for them (the rows of a BATCH). */
  private readonly unclaimed: string[] = [];
  private closed = false;

  constructor(readonly socket: Socket) {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      this.buf += chunk;
      let nl = this.buf.indexOf("\n");
      while (nl >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        nl = this.buf.indexOf("\n");
        const w = this.waiters.shift();
        if (w) w(line);
        else this.unclaimed.push(line);
      }
    });
    const fail = () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w("ERR connection closed");
    };
    socket.on("close", fail);
    socket.on("error", () => socket.destroy());
  }

  get open(): boolean {
    return !this.closed && !this.socket.destroyed;
  }

  /** Sends one request line and resolves with the next answer line (answers come in order). */
  request(line: string): Promise<string> {
    const answer = this.next();
    if (this.open) this.socket.write(`${line}\n`);
    return answer;
  }

  /**
   * The next line without sending anything (multi-line answers). Bounded: a
   * peer that does not answer in 10 s loses the connection (answers are
   * matched by order, so one lost answer poisons everything after it).
   */
  next(): Promise<string> {
    const ready = this.unclaimed.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    if (!this.open) return Promise.resolve("ERR connection closed");
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.socket.destroy();
        resolve("ERR timeout");
      }, 10_000);
      this.waiters.push((l) => {
        clearTimeout(timer);
        resolve(l);
      });
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Opens `CONNECT authority` through a relay; the tunnel as a LineConn, or the refusal status. */
export async function tunnel(
  relay: { host: string; port: number },
  authority: string,
  headers: Record<string, string> = {},
): Promise<{ conn: LineConn; status: 200 } | { status: number; reason: string }> {
  const socket = connect({ host: relay.host, port: relay.port, noDelay: true });
  socket.on("error", () => {});
  await once(socket, "connect");
  let head = `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n`;
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
  socket.write(`${head}\r\n`);
  let got = Buffer.alloc(0);
  const timer = setTimeout(() => socket.destroy(), 10_000);
  while (got.indexOf("\r\n\r\n") < 0) {
    const chunk = await new Promise<Buffer | undefined>((resolve) => {
      socket.once("data", resolve);
      socket.once("close", () => resolve(undefined));
    });
    if (chunk === undefined) {
      clearTimeout(timer);
      return { status: 0, reason: "closed before answering" };
    }
    got = Buffer.concat([got, chunk]);
  }
  clearTimeout(timer);
  socket.pause();
  const end = got.indexOf("\r\n\r\n");
  const headText = got.subarray(0, end).toString("latin1");
  const status = Number(headText.split(" ")[1]);
  if (status !== 200) {
    socket.destroy();
    return { status, reason: /hopway-reason: (.*)/i.exec(headText)?.[1] ?? headText.split("\r\n")[0] ?? "" };
  }
  const rest = got.subarray(end + 4);
  const conn = new LineConn(socket);
  if (rest.length > 0) socket.unshift(rest);
  socket.resume();
  return { conn, status: 200 };
}

const enc = encodeURIComponent;
const dec = decodeURIComponent;

// ---- the service ---------------------------------------------------------------

export async function runKvApp(cfg: KvAppConfig): Promise<void> {
  const agent = new AgentClient({ baseUrl: cfg.agentUrl, token: cfg.agentToken, timeoutMs: 3_000 });
  // The agent may still be starting (the app is started next to it): wait for its local API.
  for (let i = 0; i < 200; i++) {
    if (
      await agent.status().then(
        () => true,
        () => false,
      )
    )
      break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const store = new Map<string, string>();
  let index: OwnershipIndex | undefined;
  let ownerEpoch = "";
  let me = { draining: false, member: false };
  let load = cfg.load;
  let paused = cfg.paused;
  /** True from start until the first complete pull: a new pod holds nothing others need. */
  let joining = true;
  let pulledEpoch = "";
  const stats = { served: 0, refused: 0, fetched: 0, pulled: 0, pushed: 0, handed: 0 };
  const peers = new Map<string, LineConn>();
  let pulling: Promise<boolean> | undefined;

  const refresh = async () => {
    const m = await agent.membership(cfg.group);
    index = m.index;
    const self = m.members.find((x) => x.name === cfg.name);
    me = { draining: self?.draining ?? false, member: self !== undefined };
    // Owners depend only on the active set: that is what two pods must agree on to hand keys over.
    ownerEpoch = m.members
      .filter((x) => !x.draining)
      .map((x) => x.name)
      .join(",");
    return m;
  };

  const peer = async (name: string): Promise<LineConn | undefined> => {
    const held = peers.get(name);
    if (held?.open) return held;
    const t = await tunnel(cfg.relay, name);
    if (!("conn" in t)) return undefined;
    peers.set(name, t.conn);
    return t.conn;
  };

  const ownerOf = (key: string) => index?.lookup(key);

  const handle = async (line: string, socket: Socket): Promise<string> => {
    const [cmd, a = "", b = ""] = line.split(" ");
    switch (cmd) {
      case "SET": {
        const o = ownerOf(dec(a));
        if (o?.owner !== cfg.name) {
          stats.refused++;
          return `MOVED ${o?.owner ?? "-"}`;
        }
        store.set(dec(a), dec(b));
        return `OK ${cfg.name}`;
      }
      case "GET": {
        const key = dec(a);
        const o = ownerOf(key);
        if (o?.owner !== cfg.name) {
          stats.refused++;
          return `MOVED ${o?.owner ?? "-"}`;
        }
        let v = store.get(key);
        // A pull in flight may carry this key (the peer already let go of it): wait for it first.
        if (v === undefined && pulling !== undefined) {
          await pulling;
          v = store.get(key);
        }
        if (v === undefined && o.previous !== null) {
          // A move is in progress and this pod does not have the key yet: take it from the previous owner.
          const p = await peer(o.previous);
          if (p === undefined) return `RETRY previous ${o.previous} unreachable`;
          const r = await p.request(`TAKE ${a}`);
          if (r.startsWith("VAL ")) {
            v = dec(r.split(" ")[1] ?? "");
            if (!store.has(key)) store.set(key, v);
            else v = store.get(key);
            stats.fetched++;
          } else if (r !== "NIL") {
            return `RETRY previous answered ${r}`;
          }
        }
        stats.served++;
        return v === undefined ? `NIL ${cfg.name}` : `VAL ${enc(v)} ${cfg.name}`;
      }
      case "TAKE": {
        const key = dec(a);
        const o = ownerOf(key);
        if (o?.owner === cfg.name) return `MOVED ${cfg.name}`; // I still own it (views differ): do not give it away
        const v = store.get(key);
        if (v === undefined) return "NIL";
        store.delete(key);
        stats.handed++;
        return `VAL ${enc(v)}`;
      }
      case "PUT": {
        const key = dec(a);
        const o = ownerOf(key);
        if (o?.owner !== cfg.name) return `MOVED ${o?.owner ?? "-"}`;
        if (store.has(key)) return "KEPT"; // written here since the move: newer than the hand-over
        store.set(key, dec(b));
        return "OK";
      }
      case "PULL": {
        if (dec(b) !== ownerEpoch) return `EPOCH ${enc(ownerEpoch)}`;
        const out: string[] = [];
        for (const [k, v] of store) if (ownerOf(k)?.owner === a) out.push(`${enc(k)} ${enc(v)}`);
        socket.write(`BATCH ${out.length}\n${out.map((l) => `${l}\n`).join("")}`);
        for (const l of out) store.delete(dec(l.split(" ")[0] ?? ""));
        stats.handed += out.length;
        return "";
      }
      case "PAUSE":
      case "GO":
        paused = cmd === "PAUSE";
        return "OK";
      case "LOAD":
        load = Number(a);
        await report();
        return "OK";
      case "STATS":
        return `STATS ${JSON.stringify({ name: cfg.name, keys: store.size, joining, draining: me.draining, owner_epoch: ownerEpoch, pulled_epoch: pulledEpoch, ...stats })}`;
      default:
        return "ERR unknown command";
    }
  };

  const report = async () => {
    // A joining pod holds nothing others need (they fetch from `previous`), unless it is told to
    // drain before it finished: then what it took on the way must be found on it.
    const holds = joining && !me.draining ? false : store.size > 0;
    await agent.report({ load, holds_state: holds, state_items: store.size });
  };

  /** Pulls, from every member that may hold state, the keys this pod owns at the current epoch. */
  const pull = async (members: { name: string; holds_state: boolean | null }[]): Promise<boolean> => {
    for (const m of members) {
      if (m.name === cfg.name || m.holds_state === false) continue;
      const p = await peer(m.name);
      if (p === undefined) return false;
      const first = await p.request(`PULL ${cfg.name} ${enc(ownerEpoch)}`);
      if (!first.startsWith("BATCH ")) return false;
      const n = Number(first.slice(6));
      for (let i = 0; i < n; i++) {
        const [k = "", v = ""] = (await p.next()).split(" ");
        const key = dec(k);
        if (!store.has(key)) store.set(key, dec(v));
        stats.pulled++;
      }
      // The peer's BATCH has no trailing answer line; the empty return of its handler is not sent.
    }
    return true;
  };

  /** Hands every key this pod no longer owns to its owner (put-if-absent there). */
  const push = async () => {
    const byOwner = new Map<string, string[]>();
    for (const k of store.keys()) {
      const o = ownerOf(k)?.owner;
      if (o && o !== cfg.name) byOwner.set(o, [...(byOwner.get(o) ?? []), k]);
    }
    for (const [owner, keys] of byOwner) {
      const p = await peer(owner);
      if (p === undefined) continue;
      const answers = await Promise.all(
        keys.map((k) => p.request(`PUT ${enc(k)} ${enc(store.get(k) ?? "")}`).then((r) => [k, r] as const)),
      );
      for (const [k, r] of answers) {
        if (r === "OK" || r === "KEPT") {
          store.delete(k);
          stats.pushed++;
        }
      }
    }
  };

  const server = createServer((socket) => {
    socket.setNoDelay(true);
    socket.setEncoding("utf8");
    socket.on("error", () => socket.destroy());
    let chain = Promise.resolve();
    let buf = "";
    socket.on("data", (chunk: string) => {
      buf += chunk;
      let nl = buf.indexOf("\n");
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        nl = buf.indexOf("\n");
        // In order: answers must leave in request order on a pipelined connection.
        chain = chain.then(async () => {
          const answer = await handle(line, socket).catch((err: unknown) => `RETRY ${String(err)}`);
          if (answer !== "" && !socket.destroyed) socket.write(`${answer}\n`);
        });
      }
    });
  });
  server.listen(cfg.port, cfg.host);
  await once(server, "listening");

  // The migration loop: refresh the view, pull when joining or when the owners changed, push what is not ours.
  let busy = false;
  const tick = async () => {
    if (busy) return;
    busy = true;
    try {
      // Report first: until its first report reaches the edge, this pod's load counts as 0,
      // and a new pod counted at 0 would be told to drain.
      await report();
      const m = await refresh();
      if (me.member) {
        const moving = m.members.some((x) => x.draining) || ownerEpoch !== pulledEpoch;
        if (moving && !paused) {
          pulling = !me.draining && ownerEpoch !== pulledEpoch ? pull(m.members) : undefined;
          const pulled = pulling !== undefined && (await pulling);
          pulling = undefined;
          if (pulled) {
            pulledEpoch = ownerEpoch;
            joining = false;
          }
          await push();
        }
      }
      await report();
    } catch (err) {
      process.stderr.write(`kv ${cfg.name}: migration tick failed: ${String(err)}\n`);
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void tick(), cfg.tickMs);
  await tick();
  process.stdout.write(`${JSON.stringify({ msg: "kv listening", name: cfg.name, port: cfg.port })}\n`);
  process.once("SIGTERM", () => {
    clearInterval(timer);
    server.close();
    for (const p of peers.values()) p.close();
    process.exit(0);
  });
}

if (process.argv[1]?.endsWith("kv-app.ts") && process.argv[2]) {
  void runKvApp(JSON.parse(process.argv[2]) as KvAppConfig);
}
