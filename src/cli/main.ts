// `hopway <command> [flags]`: a small dispatcher. Each command lives in its own
// module under commands/ and is registered in commands/index.ts.
import { COMMANDS } from "./commands/index.ts";
import { type CliIo, EXIT_OK, EXIT_USAGE, printable, processIo } from "./edge-client.ts";

async function usage(): Promise<string> {
  const names = Object.keys(COMMANDS).sort();
  const width = Math.max(...names.map((n) => n.length));
  const lines = await Promise.all(
    names.map(async (name) => `  ${name.padEnd(width)}  ${(await COMMANDS[name]!()).summary}`),
  );
  return `usage: hopway <command> [flags]   (hopway <command> --help for its flags)\n\ncommands:\n${lines.join("\n")}\n`;
}

export async function main(argv: readonly string[], io: CliIo = processIo()): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined) {
    io.stderr(await usage());
    return EXIT_USAGE;
  }
  if (command === "help" || command === "--help" || command === "-h") {
    io.stdout(await usage());
    return EXIT_OK;
  }
  if (command.startsWith("-")) {
    io.stderr(`hopway: unknown flag ${printable(command)} (hopway --help lists the commands)\n`);
    return EXIT_USAGE;
  }
  if (!Object.hasOwn(COMMANDS, command)) {
    io.stderr(`hopway: unknown command '${command}'\n\n${await usage()}`);
    return EXIT_USAGE;
  }
  const module = await COMMANDS[command]!();
  return await module.run(rest, io);
}
