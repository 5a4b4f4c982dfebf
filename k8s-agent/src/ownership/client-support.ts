// Shapes and batching for the typed client's ownership calls (k8s-agent/src/client).

import { MembershipSchema, OwnershipSchema } from "@hopway/core/ownership";
import { z } from "zod";

export const LocalOwnersSchema = MembershipSchema.extend({
  /** `edge`: confirmed by the edge; `disk`: loaded at start and not confirmed since. */
  source: z.enum(["edge", "disk"]),
  confirmed_at: z.string().nullable(),
  owners: z.array(OwnershipSchema),
});
export type LocalOwners = z.infer<typeof LocalOwnersSchema>;

/** The agent's default body limit is 16 KiB; stay under it with JSON overhead. */
const PART_BYTES = 12 * 1024;

/** Splits keys into request-sized parts and joins the answers; retries (bounded) when the epoch moved between parts. */
export async function ownersInParts(
  keys: readonly string[],
  ask: (part: string[]) => Promise<LocalOwners>,
): Promise<LocalOwners> {
  const parts: string[][] = [];
  let part: string[] = [];
  let size = 0;
  for (const k of keys) {
    const n = JSON.stringify(k).length + 1;
    if (part.length > 0 && size + n > PART_BYTES) {
      parts.push(part);
      part = [];
      size = 0;
    }
    part.push(k);
    size += n;
  }
  if (part.length > 0 || parts.length === 0) parts.push(part);
  for (let attempt = 0; ; attempt++) {
    const answers: LocalOwners[] = [];
    for (const p of parts) answers.push(await ask(p));
    const first = answers[0] as LocalOwners;
    if (answers.every((a) => a.epoch === first.epoch) || attempt >= 4) {
      return { ...first, owners: answers.flatMap((a) => a.owners) };
    }
  }
}
