// `npm run soak`: the long versions of the hardening checks, too slow for every
// `npm test` but the real thing before a release.
//   1. the relay CONNECT fuzzer, 100,000 seeded cases (CI runs a 20,000 slice);
//   2. the edge-outage fault test with a real-minutes outage and production backoff
//      (30 s cap) instead of the compressed 8 s / 1 s cap of CI.
// Knobs: HOPWAY_SOAK_FUZZ_CASES, HOPWAY_FUZZ_SEED, HOPWAY_SOAK_OUTAGE_MS, HOPWAY_SOAK_BACKOFF_CAP_MS,
// HOPWAY_SOAK_SKIP (comma list of "fuzz", "outage").
import { spawnSync } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { runFuzz, summarize } from "../k8s-agent/test/unit/hardening/fuzz.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const skip = new Set((process.env.HOPWAY_SOAK_SKIP ?? "").split(",").filter(Boolean));
let failed = false;

if (!skip.has("fuzz")) {
  const seed = Number(process.env.HOPWAY_FUZZ_SEED ?? 0x5eed_2026);
  const cases = Number(process.env.HOPWAY_SOAK_FUZZ_CASES ?? 100_000);
  const r = await runFuzz({ seed, cases });
  console.log(summarize(r, seed));
  if (r.violations.length > 0 || r.openAfter !== 0 || r.tunnelsAfter !== 0 || r.echoAccepted !== r.tunnels) {
    failed = true;
    const kinds = new Map<string, number>();
    for (const v of r.violations) {
      const k = v.replace(/^#\d+ /, "").replace(/\(status \d+\)/, "");
      kinds.set(k, (kinds.get(k) ?? 0) + 1);
    }
    console.error([...kinds].map(([k, n]) => `${n} × ${k}`).join("\n"));
    console.error(r.violations.slice(0, 30).join("\n"));
  }
}

if (!skip.has("outage")) {
  const outage = process.env.HOPWAY_SOAK_OUTAGE_MS ?? String(3 * 60_000);
  const cap = process.env.HOPWAY_SOAK_BACKOFF_CAP_MS ?? "30000";
  console.log(`edge outage soak: ${Number(outage) / 1000} s outage, backoff cap ${Number(cap) / 1000} s`);
  const run = spawnSync(
    process.execPath,
    [
      join(ROOT, "node_modules", "vitest", "vitest.mjs"),
      "run",
      "--project",
      "e2e",
      "k8s-agent/test/e2e/faults.test.ts",
    ],
    {
      cwd: ROOT,
      stdio: "inherit",
      env: {
        ...process.env,
        HOPWAY_FAULTS_OUTAGE_MS: outage,
        HOPWAY_FAULTS_BACKOFF_CAP_MS: cap,
        HOPWAY_FAULTS_BACKOFF_BASE_MS: "500",
      },
    },
  );
  if (run.status !== 0) failed = true;
}

process.exit(failed ? 1 : 0);
