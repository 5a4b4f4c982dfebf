#!/usr/bin/env node
// Builds the relay's native splice (splice.c, docs/relay.md "Native splice") into
// build/hopway-splice.node with the C compiler and the Node-API headers of the Node that runs
// this script. Runs after `npm install` and in the image's build stage. It is Linux only (epoll);
// elsewhere, or without a compiler, the relay keeps its JavaScript path, and this says so.
// `--require` makes a failed build an error (the image build, CI).
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "build", "hopway-splice.node");
const required = process.argv.includes("--require");

function skip(why) {
  const line = `hopway-splice: not built (${why}); the relay moves tunnel bytes in JavaScript`;
  if (required) {
    console.error(line);
    process.exit(1);
  }
  console.log(line);
  process.exit(0);
}

if (process.platform !== "linux") skip(`${process.platform} has no epoll`);
// Node's own headers: every Node build ships them beside its binary (include/node).
const include = join(dirname(process.execPath), "..", "include", "node");
if (!existsSync(join(include, "node_api.h"))) skip(`no node_api.h under ${include}`);
const cc = process.env.CC ?? "cc";
mkdirSync(dirname(out), { recursive: true });
// A failed build must not leave an older library behind for the relay to load.
rmSync(out, { force: true });
const args = [
  "-std=c11",
  "-O2",
  "-Wall",
  "-Wextra",
  "-Werror",
  "-fPIC",
  "-shared",
  "-pthread",
  "-fvisibility=hidden",
  "-DNAPI_VERSION=8",
  "-DNODE_GYP_MODULE_NAME=hopway_splice",
  `-I${include}`,
  join(here, "splice.c"),
  join(here, "listen.c"),
  "-o",
  out,
];
const r = spawnSync(cc, args, { stdio: "inherit" });
if (r.error) skip(`${cc}: ${r.error.message}`);
if (r.status !== 0) skip(`${cc} exited with ${r.status}`);
console.log(`hopway-splice: built ${out}`);
