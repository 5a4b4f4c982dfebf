// The Hopway edge Worker: the HTTP API (src/edge/app.ts) in front of one
// RealmObject Durable Object per realm, plus the operator's topology page.
import { ALLOW_HEADER, createApp, methodNotAllowed } from "./edge/app.ts";
import { ui } from "./edge/ui.ts";

export { DirectoryObject } from "../durable-objects/directory.ts";
export { RealmObject } from "../durable-objects/realm.ts";

const app = createApp();
app.route("/", ui);

const encoder = new TextEncoder();

/**
 * workerd hands an HTTP CONNECT to the `connect` handler instead of `fetch`;
 * without one every CONNECT was a 500. The edge is no proxy: answer the same
 * 405 as for any other method it does not take, on the raw socket, and close.
 */
async function refuseConnect(socket: Socket): Promise<void> {
  const body = JSON.stringify(methodNotAllowed("CONNECT"));
  const head = [
    "HTTP/1.1 405 Method Not Allowed",
    "Content-Type: application/json; charset=utf-8",
    `Content-Length: ${encoder.encode(body).byteLength}`,
    `Allow: ${ALLOW_HEADER}`,
    "Connection: close",
  ].join("\r\n");
  const writer = socket.writable.getWriter();
  try {
    await writer.write(encoder.encode(`${head}\r\n\r\n${body}`));
    await writer.close();
  } finally {
    await socket.close().catch(() => {});
  }
}

export default {
  fetch: app.fetch,
  connect: refuseConnect,
} satisfies ExportedHandler<Env>;
