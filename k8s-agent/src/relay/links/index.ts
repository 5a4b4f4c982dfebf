export { abortEnd, pipeLeg, type TunnelEnd } from "./legs.ts";
export { WindowBudget } from "./mux/window.ts";
export {
  DEFAULT_LINK_SETTINGS,
  LINK_FAILURES,
  type LinkFailure,
  type LinkObserver,
  type LinkSettings,
  type LinkSide,
} from "./options.ts";
export { type LinkOpen, LinkPool, type LinkPoolOptions, type LinkRequester } from "./pool.ts";
export { LinkServer, type LinkServerOptions } from "./server.ts";
export type {
  LinkClientSession,
  LinkHeaders,
  LinkOutgoingHeaders,
  LinkProtocol,
  LinkServerStream,
  LinkSession,
  LinkStream,
} from "./session.ts";
