// The command line: `hopway-agent --config FILE`. Validates the configuration
// before loading the rest of the agent, so a bad file fails fast with exit 2.
import { type AgentConfig, ConfigError, loadConfig } from "./config.ts";
import { createLogger } from "./log.ts";

/** CLI entry: `hopway-agent --config FILE`. Exit 2 on a bad configuration. */
export async function main(argv: string[]): Promise<void> {
  const i = argv.indexOf("--config");
  const file = i >= 0 ? argv[i + 1] : process.env.HOPWAY_CONFIG;
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write("usage: hopway-agent --config FILE   (environment overrides: see k8s-agent/src/config.ts)\n");
    return;
  }
  if (!file) {
    process.stderr.write("hopway-agent: --config FILE is required\n");
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
