// The command line: `hopway-agent --config FILE`. Validates the configuration
// before loading the rest of the agent, so a bad file fails fast with exit 2.
import { parseArgs } from "node:util";
import { type AgentConfig, ConfigError, loadConfig } from "./config.ts";
import { createLogger } from "./log.ts";

const USAGE = "usage: hopway-agent --config FILE";

/**
 * The flags, or a one-line reason they are wrong. A mistyped flag is named: an
 * answer about the flag the user did not type (--config) sends them looking in the wrong place.
 */
export function parseAgentArgs(argv: readonly string[]): { help: boolean; config?: string } | { error: string } {
  let values: { config?: string; help?: boolean };
  try {
    values = parseArgs({
      args: [...argv],
      options: { config: { type: "string" }, help: { type: "boolean", short: "h" } },
      allowPositionals: false,
      strict: true,
    }).values;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const code = (err as { code?: unknown }).code;
    const quoted = /'([^']*)'/.exec(message)?.[1];
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") return { error: `unknown flag ${quoted} (${USAGE})` };
    if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") return { error: `unexpected argument '${quoted}' (${USAGE})` };
    if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") return { error: `--config needs a FILE (${USAGE})` };
    return { error: message.split(". ")[0] ?? message };
  }
  return { help: values.help === true, ...(values.config !== undefined ? { config: values.config } : {}) };
}

/** CLI entry: `hopway-agent --config FILE`. Exit 2 on bad flags or a bad configuration. */
export async function main(argv: string[]): Promise<void> {
  const args = parseAgentArgs(argv);
  if ("error" in args) {
    process.stderr.write(`hopway-agent: ${args.error}\n`);
    process.exit(2);
  }
  if (args.help) {
    process.stdout.write(`${USAGE}   (environment overrides: see k8s-agent/src/config.ts)\n`);
    return;
  }
  const file = args.config ?? process.env.HOPWAY_CONFIG;
  if (!file) {
    process.stderr.write("hopway-agent: --config FILE is required (or HOPWAY_CONFIG)\n");
    process.exit(2);
  }
  let config: AgentConfig;
  try {
    config = loadConfig(file);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`hopway-agent: invalid configuration in ${file}:\n${err.message.replace(/^/gm, "  ")}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.log_level, { node: config.node });
  const { startAgent } = await import("./main.ts");
  let agent: Awaited<ReturnType<typeof startAgent>>;
  try {
    agent = await startAgent(config, log);
  } catch (err) {
    log.error("startup failed", { error: String(err) });
    process.exit(1);
  }
  const onSignal = (sig: NodeJS.Signals) => {
    agent.shutdown(sig).then(
      () => process.exit(0),
      (err: unknown) => {
        log.error("shutdown failed", { error: String(err) });
        process.exit(1);
      },
    );
  };
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);
}
