// Listeners (docs/listeners.md): local addresses the agent binds so that an
// unmodified client (a Redis or PostgreSQL client, curl without -x) reaches a
// remote node. Every accepted connection goes to the relay core as if it had
// sent `CONNECT <target>`: same route table, limits, metrics and refusals; only
// the HTTP answer is missing, so outcomes are logged and counted instead.
// The set of listeners changes live (config, or declarations from the edge):
// new addresses are bound, removed ones stop accepting, and connections already
// carried are never touched.
import { createServer, isIP, type Socket } from "node:net";
import { type Listener, type ListenerTarget, parseListenAddress, parseListenerTarget } from "@hopway/core/listener";
import { CidrList } from "../relay/auth.ts";
import type { NativeConn, NativeListeners } from "../relay/native-splice.ts";
import type { FailureReason } from "../relay/protocol.ts";
import { normalizeIp, type SelfAddresses, WILDCARDS } from "../relay/self-addresses.ts";

export interface CarryTarget extends ListenerTarget {
  /** Key for a group target (key-affine owner), as the relay would read it from Hopway-Key. */
  key?: string;
}

export type CarryOutcome =
  | { ok: true; path: string }
  | { ok: false; reason: FailureReason; status: number; detail: string; failedAt: string };

/** The relay core, seen from a listener. */
export interface ListenerCarrier {
  /**
   * The socket buffer per direction the carrier's own sockets use. Accepted sockets made with
   * it read through the relay's buffers in place (k8s-agent/src/relay/pump.ts, `adopt`), as
   * the relay listener's do; with any other size each is moved into a second socket.
   */
  readonly bufferBytes?: number;
  /** Takes the socket; calls `settled` once, when the path is up or the connection was refused. */
  carry(socket: Socket, target: CarryTarget, settled: (outcome: CarryOutcome) => void): void;
  /**
   * Where listeners on an IP address accept natively (k8s-agent/native/listen.c), with
   * `carryNative` taking their connections as `carry` takes sockets; undefined: net.Server.
   */
  readonly nativeListeners?: NativeListeners | undefined;
  carryNative?(conn: NativeConn, target: CarryTarget, settled: (outcome: CarryOutcome) => void): void;
  /**
   * This process's own listeners and outbound connections (relay/self-addresses.ts): each
   * listener is entered while it is open, so that the relay never dials it (a route whose
   * gateway is a listener of this relay would loop through it), and a connection the relay
   * opened that comes back to a listener is refused.
   */
  readonly selfAddresses?: SelfAddresses | undefined;
}

export type ListenerResult = "carried" | FailureReason;

export interface ListenerObserver {
  connection(result: ListenerResult): void;
}

export interface ListenerManagerOptions {
  carrier: ListenerCarrier;
  /** Who may connect: the relay's client source ranges (a listener carries no credentials). */
  clientCidrs: readonly string[];
  log: (level: "info" | "warn" | "error", msg: string, fields: Record<string, unknown>) => void;
  observer?: ListenerObserver;
  /** Socket buffer per direction; the carrier's by default, as the relay's own listeners use. */
  bufferBytes?: number;
  /** Refusals of one listener are logged at most once per this many ms, with a count. */
  refusalLogMs?: number;
  now?: () => number;
  /**
   * Addresses the agent serves itself (the relay's and the admin server's listen addresses): no
   * listener may take them. A declared listener bound to the admin port first, as the saved
   * declarations are at start, would keep the agent from starting at all.
   */
  reserved?: readonly string[];
}

interface Running {
  spec: Listener;
  target: ListenerTarget;
  /** How it stops accepting: a net.Server's close, or a native listener's. */
  close: () => void;
  /** Accepting natively (k8s-agent/native/listen.c) rather than with a net.Server. */
  native: boolean;
  /** Actual bound address (port resolved). */
  address: string;
  refusals: Refusals;
  /** What the relay calls with each connection's outcome: one function per listener, not one per connection. */
  settled: (outcome: CarryOutcome) => void;
}

export interface ListenerStatus {
  name: string;
  listen: string;
  address: string;
  target: string;
}

/** What apply() could not do; the rest was applied. */
export interface ListenerProblem {
  listen: string;
  message: string;
}

export class ListenerManager {
  private readonly running = new Map<string, Running>();
  private readonly cidrs: CidrList;
  private readonly refusalLogMs: number;
  private readonly now: () => number;
  private applying: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(private readonly o: ListenerManagerOptions) {
    this.cidrs = new CidrList(o.clientCidrs);
    this.refusalLogMs = o.refusalLogMs ?? 10_000;
    this.now = o.now ?? Date.now;
  }

  /** Listeners accepting now. */
  list(): ListenerStatus[] {
    return [...this.running.values()].map((r) => ({
      name: nameOf(r.spec),
      listen: r.spec.listen,
      address: r.address,
      target: r.spec.target,
    }));
  }

  /**
   * Makes the running set equal `specs` (keyed by listen address): binds new ones, retargets
   * changed ones in place, closes removed ones. Calls are serialised; a listen address that
   * cannot be bound is reported and tried again by the next call.
   */
  apply(specs: readonly Listener[]): Promise<ListenerProblem[]> {
    const run = this.applying.then(() => this.applyNow(specs));
    this.applying = run.catch(() => {});
    return run;
  }

  private async applyNow(specs: readonly Listener[]): Promise<ListenerProblem[]> {
    const problems: ListenerProblem[] = [];
    if (this.closed) return problems;
    // `specs` come in order of precedence (the config file, then the admin's declarations, then a
    // namespace's): of two that would bind the same socket, spelled alike or not (a wildcard
    // covers every address of its port), the first is kept. Otherwise a later one could take the
    // port first, at start or while the earlier is not running, and carry its clients elsewhere.
    const wanted = new Map<string, Listener>();
    for (const spec of specs) {
      const reserved = (this.o.reserved ?? []).find((r) => sameSocket(spec.listen, r));
      if (reserved !== undefined) {
        problems.push({ listen: spec.listen, message: `${reserved} is this agent's own listen address` });
        continue;
      }
      const first = [...wanted.values()].find((w) => sameSocket(spec.listen, w.listen));
      if (first !== undefined) {
        problems.push({
          listen: spec.listen,
          message: `listen address given twice; keeping '${nameOf(first)}' (${first.listen})`,
        });
        continue;
      }
      wanted.set(spec.listen, spec);
    }
    for (const [listen, r] of this.running) {
      if (wanted.has(listen)) continue;
      this.running.delete(listen);
      // close() only stops accepting: connections already carried stay with the relay.
      r.close();
      this.o.log("info", "listener closed", { listener: nameOf(r.spec), listen });
    }
    for (const [listen, spec] of wanted) {
      const target = parseListenerTarget(spec.target);
      if (typeof target === "string") {
        problems.push({ listen, message: `target: ${target}` });
        continue;
      }
      const current = this.running.get(listen);
      if (current !== undefined) {
        if (current.spec.target !== spec.target || JSON.stringify(current.spec.key) !== JSON.stringify(spec.key)) {
          this.o.log("info", "listener retargeted", {
            listener: nameOf(spec),
            from: current.spec.target,
            to: spec.target,
          });
        }
        current.spec = spec;
        current.target = target;
        continue;
      }
      try {
        const running = await this.bind(spec, target);
        this.running.set(listen, running);
        this.o.log("info", "listener open", {
          listener: nameOf(spec),
          listen: running.address,
          target: spec.target,
          native: running.native,
        });
      } catch (err) {
        const message = (err as NodeJS.ErrnoException).code ?? String(err);
        problems.push({ listen, message: `cannot listen: ${message}` });
        this.o.log("error", "listener could not bind", { listener: nameOf(spec), listen, error: message });
      }
    }
    return problems;
  }

  private bind(spec: Listener, target: ListenerTarget): Promise<Running> {
    const addr = parseListenAddress(spec.listen);
    if (typeof addr === "string") return Promise.reject(new Error(addr));
    const native = this.o.carrier.nativeListeners;
    const carryNative = this.o.carrier.carryNative?.bind(this.o.carrier);
    if (native !== undefined && carryNative !== undefined && isIP(addr.host) !== 0) {
      return Promise.resolve(this.bindNative(native, carryNative, spec, target, addr.host, addr.port));
    }
    const server = createServer({
      allowHalfOpen: true,
      noDelay: true,
      highWaterMark: this.o.bufferBytes ?? this.o.carrier.bufferBytes,
    } as Parameters<typeof createServer>[0]);
    const running = this.newRunning(spec, target, false);
    server.on("connection", (socket) => this.accept(running, socket));
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: addr.host, port: addr.port }, () => {
        server.off("error", reject);
        server.on("error", (err) =>
          this.o.log("error", "listener error", { listener: nameOf(spec), error: String(err) }),
        );
        const a = server.address();
        if (a !== null && typeof a === "object") {
          running.address = a.family === "IPv6" ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
        }
        running.close = this.ownedWhileOpen(addr.host, a !== null && typeof a === "object" ? a.port : addr.port, () =>
          server.close(),
        );
        resolve(running);
      });
    });
  }

  /** A listener's state before it listens; `close` is set once it does. */
  private newRunning(spec: Listener, target: ListenerTarget, native: boolean): Running {
    const running: Running = {
      spec,
      target,
      close: () => {},
      native,
      address: spec.listen,
      refusals: { count: 0, lastLog: Number.NEGATIVE_INFINITY, byReason: {} },
      settled: (outcome) => {
        if (outcome.ok) this.o.observer?.connection("carried");
        else this.refused(running, outcome);
      },
    };
    return running;
  }

  /** A listener on an IP literal, accepting natively: its connections never become net.Sockets unless the relay needs one. */
  private bindNative(
    native: NativeListeners,
    carryNative: NonNullable<ListenerCarrier["carryNative"]>,
    spec: Listener,
    target: ListenerTarget,
    host: string,
    port: number,
  ): Running {
    const running = this.newRunning(spec, target, true);
    // The accepted connection's own address is the listener's, unknown on a wildcard address.
    const local = host === "0.0.0.0" || host === "::" ? undefined : host;
    const bound = native.listen(host, port, (conn) => {
      const why = this.refusal({
        remoteAddress: conn.remoteAddress,
        remotePort: conn.remotePort,
        localAddress: local,
        localPort: bound.port,
      });
      if (why !== undefined) {
        conn.destroy();
        this.refused(running, why);
        return;
      }
      carryNative(conn, this.targetFor(running, conn.remoteAddress), running.settled);
    });
    running.close = this.ownedWhileOpen(host, bound.port, () => native.unlisten(bound.id));
    running.address = host.includes(":") ? `[${host}]:${bound.port}` : `${host}:${bound.port}`;
    return running;
  }

  /** The listener's target, with the key a keyed listener gives its connections. */
  private targetFor(r: Running, remoteAddress: string | undefined): CarryTarget {
    const key =
      r.spec.key === undefined ? undefined : "value" in r.spec.key ? r.spec.key.value : clientKey(remoteAddress);
    return key === undefined ? r.target : { ...r.target, key };
  }

  /** Enters a listener's address among the relay's own while it is open; returns its close. */
  private ownedWhileOpen(host: string, port: number, close: () => void): () => void {
    const self = this.o.carrier.selfAddresses;
    self?.add({ host, port });
    return () => {
      self?.remove({ host, port });
      close();
    };
  }

  private accept(r: Running, socket: Socket): void {
    const why = this.refusal(socket);
    if (why !== undefined) {
      socket.destroy();
      this.refused(r, why);
      return;
    }
    this.o.carrier.carry(socket, this.targetFor(r, socket.remoteAddress), r.settled);
  }

  /**
   * Why a connection either kind of listener accepted is refused before the relay sees it: the
   * relay's own, come back, or a source outside client_cidrs; undefined when it is admitted.
   */
  private refusal(accepted: Parameters<SelfAddresses["isOwnConnection"]>[0]): Refusal | undefined {
    if (this.o.carrier.selfAddresses?.isOwnConnection(accepted)) return SELF_REFUSAL;
    if (this.cidrs.allows(accepted.remoteAddress)) return undefined;
    return {
      reason: "auth",
      status: 407,
      detail: `source ${accepted.remoteAddress ?? "?"} is outside client_cidrs`,
      failedAt: "",
    };
  }

  /**
   * Counted every time; logged at most once per interval per listener, whatever the reasons (a
   * client that alternates them must not get a line each), since a listener has no answer to give.
   */
  private refused(r: Running, o: Refusal): void {
    this.o.observer?.connection(o.reason);
    const seen = r.refusals;
    seen.count++;
    seen.byReason[o.reason] = (seen.byReason[o.reason] ?? 0) + 1;
    const now = this.now();
    if (now - seen.lastLog < this.refusalLogMs) return;
    this.o.log("warn", "listener refused a connection", {
      listener: nameOf(r.spec),
      target: r.spec.target,
      status: o.status,
      reason: o.reason,
      detail: o.detail,
      ...(o.failedAt ? { failed_at: o.failedAt } : {}),
      refused_since_last_log: seen.count,
      refused_by_reason: seen.byReason,
    });
    r.refusals = { count: 0, lastLog: now, byReason: {} };
  }

  /** Stops accepting on every listener; carried connections stay with the relay (its drain ends them). */
  async close(): Promise<void> {
    this.closed = true;
    await this.applying;
    const running = [...this.running.values()];
    this.running.clear();
    for (const r of running) r.close();
  }
}

/** Refusals since a listener's last log line, in all and by reason (a closed set). */
type Refusals = { count: number; lastLog: number; byReason: Partial<Record<FailureReason, number>> };

/** Why a listener's connection was not carried, as the listener logs and counts it. */
type Refusal = { reason: FailureReason; status: number; detail: string; failedAt: string };

/** A connection the relay itself opened, come back to one of its listeners (a hairpin or a loop). */
const SELF_REFUSAL: Refusal = {
  reason: "forbidden",
  status: 403,
  detail: "connection opened by this relay itself; a relay never tunnels to itself",
  failedAt: "",
};

function nameOf(spec: Listener): string {
  return spec.name ?? spec.listen;
}

/** The client's address as a key: IPv4 peers of dual-stack listeners without the ::ffff: prefix. */
function clientKey(remoteAddress: string | undefined): string {
  const a = remoteAddress ?? "";
  return a.startsWith("::ffff:") ? a.slice(7) : a;
}

/**
 * Whether two listen addresses would bind the same socket: the same port (not 0, which the kernel
 * chooses) and the same host in any spelling, or a wildcard on either side (`[::]` binds both
 * families here). Addresses that are not `host:port` (a unix path) never do.
 */
function sameSocket(a: string, b: string): boolean {
  const x = parseListenAddress(a);
  const y = parseListenAddress(b);
  if (typeof x === "string" || typeof y === "string" || x.port === 0 || x.port !== y.port) return false;
  const hx = normalizeIp(x.host);
  const hy = normalizeIp(y.host);
  return hx === hy || WILDCARDS.has(hx) || WILDCARDS.has(hy);
}
