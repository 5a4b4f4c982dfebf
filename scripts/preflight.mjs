// Checks what the repository's entry points need before they start, and stops
// at once with one message that says how to get it, instead of failing later
// with an error about something else.
//
//   node scripts/preflight.mjs           Node >= 22.12 (npm install, dev, demo)
//   node scripts/preflight.mjs --system  also the programs the tests run as real peers (npm test)
//
// Plain JavaScript with only node: builtins, so that it runs on the old Node it
// is there to refuse.
import { accessSync, constants, existsSync } from "node:fs";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";

export const MIN_NODE = [22, 12];

/** One line that says how to get a Node new enough, or undefined when this one is. */
export function nodeProblem(version = process.versions.node) {
  const [major, minor] = version.split(".").map(Number);
  if (major > MIN_NODE[0] || (major === MIN_NODE[0] && minor >= MIN_NODE[1])) return undefined;
  return (
    `hopway: Node ${version} is too old; Node >= ${MIN_NODE.join(".")} is needed. ` +
    "Run `source .ci/ensure-node.sh` (it puts Node 24 first on PATH for this shell, installing it into .tools/ once), then run the command again."
  );
}

/**
 * The programs the tests talk to as real peers, each with the Debian package that provides it
 * (the same table as .ci/system-deps.sh). Chromium is looked for where the topology-page test
 * launches it.
 */
export const SYSTEM_PROGRAMS = [
  { program: "prometheus", pkg: "prometheus" },
  { program: "promtool", pkg: "prometheus" },
  { program: "redis-server", pkg: "redis-server" },
  { program: "redis-benchmark", pkg: "redis-tools" },
  { program: "curl", pkg: "curl" },
  { program: "ncat", pkg: "ncat" },
  { program: "/usr/bin/chromium", pkg: "chromium" },
  { program: "openssl", pkg: "openssl" },
  // The relay's native splice is compiled at `npm install` (k8s-agent/native/build.mjs) and tested.
  { program: "cc", pkg: "gcc libc6-dev" },
  // `kubectl kustomize` builds the deploy manifests their tests validate (.ci/system-deps.sh says
  // which version; Debian's own package is the fallback).
  { program: "kubectl", pkg: "kubernetes-client" },
];

/** Whether `program` (a name looked up on PATH, or an absolute path) can be run. */
export function runnable(program, path = process.env.PATH ?? "") {
  const candidates = program.startsWith("/")
    ? [program]
    : path
        .split(delimiter)
        .filter(Boolean)
        .map((d) => join(d, program));
  return candidates.some((file) => {
    try {
      accessSync(file, constants.X_OK);
      return existsSync(file);
    } catch {
      return false;
    }
  });
}

/** The Debian packages missing for the tests, each once, in a stable order. */
export function missingPackages(isRunnable = (p) => runnable(p)) {
  const missing = [];
  for (const { program, pkg } of SYSTEM_PROGRAMS) if (!isRunnable(program) && !missing.includes(pkg)) missing.push(pkg);
  return missing;
}

/** One message naming every missing package and the one command that installs them. */
export function systemProblem(missing) {
  if (missing.length === 0) return undefined;
  return (
    `hopway: the tests need programs from these missing packages: ${missing.join(", ")}. ` +
    `Install them with \`sudo bash .ci/system-deps.sh\` (Debian/Ubuntu; the same as ` +
    `\`sudo apt-get install -y --no-install-recommends ${missing.join(" ")}\`), then run npm test again.`
  );
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const problems = [nodeProblem()];
  if (process.argv.includes("--system")) problems.push(systemProblem(missingPackages()));
  const found = problems.filter((p) => p !== undefined);
  for (const p of found) process.stderr.write(`${p}\n`);
  process.exit(found.length > 0 ? 1 : 0);
}
