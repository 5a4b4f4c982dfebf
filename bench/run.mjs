// `npm run bench [name ...]`: runs bench/*.bench.ts one after another (each in its own
// Node process, so one benchmark's heap and sockets do not skew the next) and
// stops at the first that fails. Each benchmark prints its own figures and ratios.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const wanted = process.argv.slice(2);
const files = readdirSync(here)
  .filter((f) => f.endsWith(".bench.ts"))
  .filter((f) => wanted.length === 0 || wanted.some((w) => f.startsWith(w)))
  .sort();
if (files.length === 0) {
  console.error(`bench: nothing matches ${wanted.join(" ") || "bench/*.bench.ts"}`);
  process.exit(2);
}
for (const file of files) {
  console.log(`\n=== bench/${file}`);
  const r = spawnSync(process.execPath, ["--import", "tsx", "--expose-gc", join(here, file)], { stdio: "inherit" });
  if (r.status !== 0) {
    console.error(`bench: ${file} failed (exit ${r.status ?? r.signal})`);
    process.exit(1);
  }
}
