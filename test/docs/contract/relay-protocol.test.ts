// docs/contract/relay-protocol.md §1.4 is the relay's refusal table and §3.1 names the link's
// ALPN ids: both read against the agent's code, so a new refusal or protocol id needs its contract text.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ACCEPT_ALPN as ALPN } from "../../../k8s-agent/src/relay/links/tls.ts";
import { FAILURE_REASONS, STATUS_FOR } from "../../../k8s-agent/src/relay/protocol.ts";
import { ROOT, section, tableRows } from "../../support/markdown.ts";

const PAGE = readFileSync(join(ROOT, "docs/contract/relay-protocol.md"), "utf8");

describe("docs/contract/relay-protocol.md", () => {
  it("§1.4 gives every refusal code with the status the relay answers, and no other", () => {
    const rows = tableRows(section(PAGE, "1.4")).map((r) => [(r[1] ?? "").replace(/`/g, ""), Number(r[0])]);
    expect(Object.fromEntries(rows)).toEqual(STATUS_FOR);
    expect(rows).toHaveLength(FAILURE_REASONS.length);
  });

  it("§3 and §4 name every ALPN id a link negotiates", () => {
    expect(ALPN.length).toBeGreaterThan(0);
    const links = `${section(PAGE, "3")}\n${section(PAGE, "4")}`;
    for (const id of ALPN) expect(links).toContain(`\`${id}\``);
  });
});
