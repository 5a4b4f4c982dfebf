// `npm run dev`: the edge on this machine. Creates .dev.vars from
// .dev.vars.example on first run (the documented local admin token,
// dev-admin-token, and a local token-signing key), adds HOPWAY_TOKEN_KEY to a
// .dev.vars from before that key existed, then runs `wrangler dev` with Durable Object state kept in
// .wrangler/state so a restart keeps the realms. Extra arguments go to wrangler
// (e.g. `npm run dev -- --port 8788`).
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, copyFileSync, existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const vars = join(root, ".dev.vars");
if (!existsSync(vars)) {
  copyFileSync(join(root, ".dev.vars.example"), vars);
  console.log("dev: created .dev.vars from .dev.vars.example (admin token: dev-admin-token)");
} else if (!/^HOPWAY_TOKEN_KEY=/m.test(readFileSync(vars, "utf8"))) {
  appendFileSync(vars, `\nHOPWAY_TOKEN_KEY=${randomBytes(32).toString("hex")}\n`);
  console.log("dev: added a random HOPWAY_TOKEN_KEY to .dev.vars (realm tokens need it)");
}
const wrangler = join(root, "node_modules", "wrangler", "bin", "wrangler.js");
const extra = process.argv.slice(2);
// Keep state in .wrangler/state unless the user chose another place.
const persist = extra.some((a) => a === "--persist-to" || a.startsWith("--persist-to="))
  ? []
  : ["--persist-to", join(root, ".wrangler", "state")];
const args = [wrangler, "dev", ...persist, ...extra];
// Stay on this machine: no Request.cf download from workers.cloudflare.com, no telemetry, and no
// banner, whose update check asks the npm registry for wrangler's latest version (override by
// exporting them).
const env = {
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
  WRANGLER_SEND_METRICS: "false",
  WRANGLER_HIDE_BANNER: "true",
  ...process.env,
};
const child = spawn(process.execPath, args, { cwd: root, stdio: "inherit", env });
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => child.kill(signal));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
