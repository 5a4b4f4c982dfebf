// A loopback TLS 1.3 pair made as a link's is: the accepting side verifies the dialler's
// certificate, and the dialling side reads with the relay's `onread` (LINK_ONREAD), as the link
// pool dials. For tests that need real link sockets without a relay.
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { connect, createServer, type TLSSocket } from "node:tls";
import { testPki } from "../../../../../test/support/identity.ts";
import { MuxSession, type MuxSettings, type MuxStream } from "../../../../src/relay/links/mux/session.ts";
import { LINK_ONREAD } from "../../../../src/relay/links/reads.ts";

const pki = testPki("link-pair");
const a = pki.issue("a");
const b = pki.issue("b");

/** Opens the pair; each socket and the server go into `cleanups`. */
export async function linkTlsPair(cleanups: Array<() => unknown>): Promise<{ client: TLSSocket; server: TLSSocket }> {
  let accepted: (s: TLSSocket) => void = () => {};
  const got = new Promise<TLSSocket>((r) => {
    accepted = r;
  });
  const srv = createServer(
    { key: a.key, cert: a.certChain, ca: a.trustBundle, requestCert: true, minVersion: "TLSv1.3" },
    (s) => accepted(s),
  );
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  cleanups.push(() => srv.close());
  // tls.connect takes `onread`; @types/node does not declare it.
  const options = {
    host: "127.0.0.1",
    port: (srv.address() as AddressInfo).port,
    key: b.key,
    cert: b.certChain,
    ca: b.trustBundle,
    checkServerIdentity: () => undefined,
    onread: LINK_ONREAD,
  };
  const client = connect(options);
  cleanups.push(() => client.destroy());
  await once(client, "secureConnect");
  const server = await got;
  cleanups.push(() => server.destroy());
  return { client, server };
}

/**
 * hopway-mux/1 sessions over `linkTlsPair` (the accepting side reads as a relay's accepted link
 * does) and one stream the dialling side opened: `sender` is its dialling end, `received` the
 * end the accepting session handed over. Sessions and sockets go into `cleanups`.
 */
export async function muxStreamOverTls(
  cleanups: Array<() => unknown>,
  settings: MuxSettings,
  authority: string,
): Promise<{ sender: MuxStream; received: MuxStream }> {
  const { client: tls, server: accepted } = await linkTlsPair(cleanups);
  const streams: MuxStream[] = [];
  const server = new MuxSession(accepted, "server", settings);
  server.on("error", () => {});
  server.on("stream", (st: MuxStream) => streams.push(st));
  const client = new MuxSession(tls, "client", settings);
  client.on("error", () => {});
  cleanups.push(() => client.destroy());
  cleanups.push(() => server.destroy());
  const sender = client.request({ ":authority": authority });
  for (let i = 0; i < 200 && streams.length === 0; i++) await new Promise((r) => setTimeout(r, 2));
  const received = streams[0];
  if (received === undefined) throw new Error("the accepting session got no stream");
  return { sender, received };
}
