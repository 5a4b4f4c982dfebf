// Entry point of the bundled agent (dist/hopway-agent.mjs).
import { main } from "./cli.ts";

await main(process.argv.slice(2));
