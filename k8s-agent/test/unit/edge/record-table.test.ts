// The record table's cases (test/core/record-table.cases.ts) in the agent: a `/changes` delta
// carrying the record, the replica file the records sync reloads at start, and the records the
// agent's config file declares for it to register.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describeIssues } from "@hopway/core/errors";
import { afterAll, describe, expect, it } from "vitest";
import { ZodError } from "zod";
import { fullRecord, RECORD_CASES } from "../../../../test/core/record-table.cases.ts";
import { ConfigError, parseConfig } from "../../../src/config.ts";
import { RecordsSync, SNAPSHOT_FILE, type SyncTransport } from "../../../src/edge/records-sync.ts";
import type { Logger } from "../../../src/log.ts";

const SELF = { name: "self1", gateway: [{ priority: 1, address: "ipv4://127.0.0.1:7000" }] };

function syncWith(answer: unknown, dataDir?: string): { sync: RecordsSync; warnings: string[] } {
  const warnings: string[] = [];
  const transport: SyncTransport = {
    request: async () =>
      new Response(JSON.stringify(answer), { status: 200, headers: { "content-type": "application/json" } }),
    setReachable: () => {},
    sleep: async () => {},
    backoff: () => 0,
    now: () => 0,
    setTimeout: (fn, ms) => setTimeout(fn, ms),
    clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
    random: () => 0.5,
    stopped: () => false,
  };
  const log: Logger = {
    log: () => {},
    debug: () => {},
    info: () => {},
    warn: (message) => warnings.push(message),
    error: () => {},
  };
  const sync = new RecordsSync(
    {
      node: SELF.name,
      waitSeconds: 0,
      dataDir,
      onTable: () => {},
      onConfirmed: () => {},
      log,
    },
    transport,
  );
  return { sync, warnings };
}

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const paths = (problems: ReadonlyArray<{ path: string }>): string[] => [...new Set(problems.map((p) => p.path))];

describe("the record table, field by field (agent records sync)", () => {
  for (const c of RECORD_CASES) {
    it(`${c.id}: a /changes delta, the replica file and the config agree with the table`, async () => {
      const name = typeof c.record.name === "string" && c.record.name !== "" ? c.record.name : fullRecord(c.kind).name;
      const delta = { kind: "delta", epoch: "a1", version: 2, changes: [{ name, record: c.record }] };
      const { sync } = syncWith(delta);
      const got = await sync.fetchChanges(0).then(
        () => null,
        (err: unknown) => err,
      );
      if (c.accept) expect(got).toBeNull();
      else {
        expect(got).toBeInstanceOf(ZodError);
        expect(paths(describeIssues(got as ZodError))).toEqual([`changes[0].record.${c.path}`]);
      }

      const dir = mkdtempSync(join(tmpdir(), "hopway-table-"));
      dirs.push(dir);
      const snapshot = { epoch: "a1", version: 2, saved_at: 0, records: [SELF, c.record] };
      writeFileSync(join(dir, SNAPSHOT_FILE), JSON.stringify(snapshot));
      const fromDisk = syncWith(null, dir);
      expect(await fromDisk.sync.loadPersisted()).toBe(c.accept);
      expect(fromDisk.warnings).toEqual(c.accept ? [] : ["persisted records snapshot unreadable; ignoring it"]);

      // YAML takes JSON as it is: the record exactly as the case writes it.
      const config = `edge: { url: "http://127.0.0.1:8787", realm: demo, token: "t0ken" }\nnode: self1\nrecords: ${JSON.stringify([c.record])}\n`;
      let problems: string[] = [];
      try {
        parseConfig(config, {});
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        problems = paths(err.problems);
      }
      expect(problems).toEqual(c.accept ? [] : [`records[0].${c.path}`]);
    });
  }
});
