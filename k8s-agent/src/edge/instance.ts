// The id this agent names itself with on its lease writes (`Hopway-Instance`, docs/agent.md "Two
// agents, one name"). In Kubernetes it is the pod's UID; elsewhere it is kept in data_dir, so that
// an agent restarted after a crash takes its own lease back at once instead of waiting for it to end.
import { randomUUID } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { InstanceIdSchema } from "@hopway/core/wire";
import type { Logger } from "../log.ts";

export const INSTANCE_FILE = "instance-id";

/** `podUid` when given; else the id in `dataDir`, made and kept there on first use. */
export async function agentInstance(podUid: string | undefined, dataDir: string, log?: Logger): Promise<string> {
  if (podUid !== undefined) return podUid;
  const file = join(dataDir, INSTANCE_FILE);
  try {
    const kept = (await readFile(file, "utf8")).trim();
    if (InstanceIdSchema.safeParse(kept).success) return kept;
    log?.warn("ignoring a malformed instance id; making a new one", { file });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
      log?.warn("cannot read the instance id; making a new one", { file, error: String(err) });
    }
  }
  const id = randomUUID();
  try {
    await mkdir(dataDir, { recursive: true });
    // Written aside and renamed, so a crash never leaves half an id behind.
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, `${id}\n`, { mode: 0o644 });
    await rename(tmp, file);
  } catch (err) {
    // Still usable for this run; a restart then waits for this run's lease to end (docs/agent.md).
    log?.warn("cannot keep the instance id in data_dir; a restart will wait for its lease", {
      file,
      error: String(err),
    });
  }
  return id;
}
