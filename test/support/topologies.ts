// The reference topologies (test/fixtures/topologies) as records, and the record the
// shared-namespaces tests add to them, for tests that run under Node.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type HopwayRecord, parseTopologyText } from "../../src/core/index.ts";

const FIXTURES = join(import.meta.dirname, "../fixtures/topologies");

/** The records of one reference topology file; throws on a problem, which would be the fixture's. */
export function topologyRecords(file: string): HopwayRecord[] {
  const parsed = parseTopologyText(readFileSync(join(FIXTURES, file), "utf8"));
  if (!parsed.ok) throw new Error(`${file}: ${JSON.stringify(parsed.problems)}`);
  return parsed.records;
}

/**
 * A tenant's node dressed as a regional relay of the cross-region topology, with the cheapest
 * gateway any node may use (docs/contract/records.md §2.3). Route computation only: nothing
 * dials this address.
 */
export const IMPOSTOR_RELAY: HopwayRecord = {
  type: "node",
  name: "aaa-impostor",
  metadata: { namespace_name: "tenant_4", kind: "relay", labels: { "area.region": "any" } },
  gateway: [{ priority: 0, address: "ipv4://10.66.0.1:1234" }],
  advertise_relay: { metadata: { kind: "relay", labels: { "area.region": "any" } } },
};
