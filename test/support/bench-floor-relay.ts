// The least a Node.js CONNECT relay can do, for the benchmark's connection-rate floor:
// read one CONNECT head, connect to the one target it was started with, answer 200,
// and pipe both ways. No authentication, route table, hop signing, metrics, limits or
// timeouts. Whatever rate this reaches bounds what any relay written on Node's `net`
// can reach on the same machine and client. With `plain` it skips the CONNECT exchange
// and forwards at once, as HAProxy in TCP mode does: the difference between the two is
// what the exchange itself costs. With `handles` it forwards as `plain` does, but on libuv's TCP
// handles with no net.Socket (bench-handle-forwarder.ts): what a Node forwarder costs per
// connection below `net`. With `native` it accepts and dials with `net` as `plain` does and hands
// both sockets to the relay's native splice (k8s-agent/src/relay/native-splice.ts): what the
// listener's data path costs per request without the relay's admission, routing and metrics.
// Usage (forked with an IPC channel): bench-floor-relay.ts TARGET_PORT [plain|handles|native] → sends {port}.
import { connect, createServer, type Socket } from "node:net";
import { nativeSplicer, nativeSpliceStatus } from "../../k8s-agent/src/relay/native-splice.ts";
import { forwardOnHandles } from "./bench-handle-forwarder.ts";

const target = Number(process.argv[2]);
const mode = process.argv[3];
const plain = mode === "plain";

function tunnel(client: Socket, rest: Buffer): void {
  const up = connect({ host: "127.0.0.1", port: target, noDelay: true });
  up.on("error", () => client.destroy());
  up.once("connect", () => {
    if (!plain) client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    if (rest.length > 0) up.write(rest);
    client.pipe(up);
    up.pipe(client);
  });
}

const splicer = mode === "native" ? nativeSplicer() : undefined;
if (mode === "native" && splicer === undefined) throw new Error(`native splice: ${nativeSpliceStatus()}`);

function spliced(client: Socket): void {
  const s = splicer as NonNullable<typeof splicer>;
  // Stop reading before any byte arrives: the thread forwards everything from the first byte.
  const h = (client as Socket & { _handle: { readStop(): number; reading: boolean } })._handle;
  h.readStop();
  h.reading = true;
  const up = connect({ host: "127.0.0.1", port: target, noDelay: true });
  up.on("error", () => client.destroy());
  up.once("connect", () => {
    const id = s.attach(client, up, 0, (end) => {
      if (end.error === undefined) {
        client.destroy();
        up.destroy();
      } else {
        client.resetAndDestroy();
        up.resetAndDestroy();
      }
    });
    if (id === undefined) {
      client.destroy();
      up.destroy();
    }
  });
}

const server = createServer({ noDelay: true }, (client) => {
  client.on("error", () => client.destroy());
  if (splicer !== undefined) return spliced(client);
  if (plain) {
    client.pause();
    return tunnel(client, Buffer.alloc(0));
  }
  let head: Buffer = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
    const end = head.indexOf("\r\n\r\n");
    if (end < 0) {
      if (head.length > 8192) client.destroy();
      return;
    }
    client.off("data", onData);
    client.pause();
    if (!head.subarray(0, 8).equals(Buffer.from("CONNECT "))) return void client.destroy();
    tunnel(client, head.subarray(end + 4));
  };
  client.on("data", onData);
});
if (mode === "handles") process.send?.({ port: forwardOnHandles(target) });
else {
  server.listen(0, "127.0.0.1", () => {
    const a = server.address();
    process.send?.({ port: typeof a === "object" && a ? a.port : 0 });
  });
}
process.on("disconnect", () => process.exit(0));
