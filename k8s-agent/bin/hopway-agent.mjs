#!/usr/bin/env -S node --max-semi-space-size=2
// Runs the agent's TypeScript sources directly (development, tests). The
// container image runs the esbuild bundle, dist/hopway-agent.mjs, instead, with the same flag:
// a 2 MB young generation keeps each idle tunnel's cost near its ~6 KB of live objects
// (V8's default lets the young generation alone grow by tens of MB).
import { register } from "tsx/esm/api";

register();
const { main } = await import("../src/cli.ts");
await main(process.argv.slice(2));
