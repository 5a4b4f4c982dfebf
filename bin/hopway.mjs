#!/usr/bin/env node
// The `hopway` command. The CLI is TypeScript; tsx compiles it on the fly, so
// `npx hopway ...` works straight after `npm install` with no build step.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../src/cli/main.ts");
// exitCode, not exit(): a large --json answer written to a pipe must drain first.
process.exitCode = await main(process.argv.slice(2));
