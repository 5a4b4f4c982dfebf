// Writes worker-configuration.d.ts (the Env bindings and the Workers runtime types the edge is
// type-checked against) from wrangler.toml and the committed .dev.vars.example. Bare
// `wrangler types` takes the secrets' names from an untracked .dev.vars, so on a clean checkout
// it drops HOPWAY_ADMIN_TOKEN and HOPWAY_TOKEN_KEY and the type-check fails; naming the env file
// makes the output the same on every checkout (a developer's .dev.vars or .env is not read).
//
//   node scripts/cf-typegen.mjs          regenerate the file      (npm run cf-typegen)
//   node scripts/cf-typegen.mjs --check  exit 1 when it is stale   (npm test)
//
// Needs no network: the runtime types come from the installed workerd, and metrics are off.
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const check = process.argv.includes("--check");
const args = ["types", "--env-file", ".dev.vars.example", ...(check ? ["--check"] : [])];
const run = spawnSync(process.execPath, [join(root, "node_modules", "wrangler", "bin", "wrangler.js"), ...args], {
  cwd: root,
  encoding: "utf8",
  env: {
    ...process.env,
    WRANGLER_SEND_METRICS: "false",
    CLOUDFLARE_CF_FETCH_ENABLED: "false",
    WRANGLER_HIDE_BANNER: "true",
  },
});
if (run.status === 0) {
  console.log(
    check ? "cf-typegen: worker-configuration.d.ts is up to date" : "cf-typegen: wrote worker-configuration.d.ts",
  );
  process.exit(0);
}
process.stderr.write(`${run.stdout ?? ""}${run.stderr ?? ""}${run.error ? `${run.error.message}\n` : ""}`);
console.error(
  check
    ? "cf-typegen: worker-configuration.d.ts differs from what wrangler.toml and .dev.vars.example generate; run `npm run cf-typegen` and commit the result"
    : "cf-typegen: wrangler types failed (output above)",
);
process.exit(1);
