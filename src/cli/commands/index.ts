// The one place where commands are registered: add a command with one line.
// Modules load lazily, so `hopway routes` never pays for the edge client and
// a remote command never pays for the resolver.
import type { CliIo } from "../edge-client.ts";

export interface CommandModule {
  /** One line for `hopway help`. */
  summary: string;
  /** Runs the command; resolves to the exit status. */
  run(argv: readonly string[], io?: CliIo): Promise<number> | number;
}

export const COMMANDS: Readonly<Record<string, () => Promise<CommandModule>>> = {
  routes: () => import("./routes.ts"),
  import: () => import("./import.ts"),
  route: () => import("./route.ts"),
  nodes: () => import("./nodes.ts"),
};
