// How the agent's container image starts node, read from k8s-agent/Dockerfile
// itself, so the relay benchmark measures the process exactly as the image runs
// it and the manifest tests catch drift between the image, the StatefulSet and
// bin/hopway-agent.mjs.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const DOCKERFILE = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "Dockerfile");

export interface ImageRuntime {
  /** ENTRYPOINT of the final stage (exec form). */
  entrypoint: string[];
  /** The node options in the entrypoint, between the node binary and the script. */
  nodeFlags: string[];
  /** The script node runs. */
  script: string;
  /** ENV of the final stage. */
  env: Record<string, string>;
}

/** Parses the final build stage: its ENV (KEY=VALUE form, with line continuations) and exec-form ENTRYPOINT. */
export function imageRuntime(text: string = readFileSync(DOCKERFILE, "utf8")): ImageRuntime {
  const instructions = text
    .replace(/\\\r?\n/g, " ")
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  const lastFrom = instructions.map((l) => /^FROM\s/i.test(l)).lastIndexOf(true);
  const stage = instructions.slice(lastFrom + 1);
  const env: Record<string, string> = {};
  let entrypoint: string[] | undefined;
  for (const line of stage) {
    const [op = "", ...rest] = line.split(/\s+/);
    const args = line.slice(op.length).trim();
    if (/^ENV$/i.test(op)) {
      for (const pair of rest) {
        const eq = pair.indexOf("=");
        if (eq <= 0) throw new Error(`Dockerfile: ENV needs KEY=VALUE pairs, got '${pair}'`);
        env[pair.slice(0, eq)] = pair.slice(eq + 1).replace(/^"(.*)"$/, "$1");
      }
    } else if (/^ENTRYPOINT$/i.test(op)) {
      const parsed: unknown = JSON.parse(args);
      if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === "string")) {
        throw new Error("Dockerfile: ENTRYPOINT must be in exec form (a JSON array of strings)");
      }
      entrypoint = parsed;
    }
  }
  if (entrypoint === undefined) throw new Error("Dockerfile: the final stage has no ENTRYPOINT");
  const scriptAt = entrypoint.findIndex((a, i) => i > 0 && !a.startsWith("-"));
  if (scriptAt < 0) throw new Error("Dockerfile: the ENTRYPOINT names no script for node");
  return {
    entrypoint,
    nodeFlags: entrypoint.slice(1, scriptAt),
    script: entrypoint[scriptAt] as string,
    env,
  };
}
