#!/usr/bin/env node
// Runs the agent's TypeScript sources directly (development, tests). The
// container image runs the esbuild bundle, dist/hopway-agent.mjs, instead.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../src/main.ts");
await main(process.argv.slice(2));
