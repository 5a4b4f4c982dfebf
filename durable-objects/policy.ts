// The realm's gateway address policy in SQLite (schema v3). Read once per
// object start and on every change, so a write checks against memory.
import { type AddressPolicy, type AddressRules, canonicalShared } from "../src/core/address-policy.ts";
import type { Sql } from "./migrations.ts";

const NS = "ns:";
/** The row of the shared namespaces (docs/contract/records.md §2.3): a JSON list; no row = every namespace. */
const SHARED = "shared_namespaces";

export class PolicyStore {
  private cached: AddressPolicy;

  constructor(private readonly sql: Sql) {
    this.cached = this.load();
  }

  private load(): AddressPolicy {
    const policy: AddressPolicy = {};
    const rows = this.sql.exec<{ scope: string; rules: string }>("SELECT scope, rules FROM address_policy").toArray();
    for (const row of rows) {
      const value: unknown = JSON.parse(row.rules);
      const rules = value as AddressRules;
      if (row.scope === SHARED) policy.shared_namespaces = value as string[];
      else if (row.scope === "default") policy.default = rules;
      else if (row.scope.startsWith(NS)) {
        policy.namespaces ??= {};
        policy.namespaces[row.scope.slice(NS.length)] = rules;
      }
    }
    return policy;
  }

  get policy(): AddressPolicy {
    return this.cached;
  }

  /**
   * The realm's shared namespaces, sorted and without duplicates as `replace` stores them; null:
   * every namespace. Read with every record page and change answer, so it is not recomputed.
   */
  get shared(): string[] | null {
    return this.cached.shared_namespaces ?? null;
  }

  /** Replaces the whole policy. The caller runs it inside a transaction. */
  replace(policy: AddressPolicy): void {
    this.sql.exec("DELETE FROM address_policy");
    if (policy.default !== undefined) {
      this.sql.exec("INSERT INTO address_policy (scope, rules) VALUES ('default', ?)", JSON.stringify(policy.default));
    }
    for (const [ns, rules] of Object.entries(policy.namespaces ?? {})) {
      this.sql.exec("INSERT INTO address_policy (scope, rules) VALUES (?, ?)", NS + ns, JSON.stringify(rules));
    }
    const shared = canonicalShared(policy.shared_namespaces);
    if (shared !== null) {
      this.sql.exec("INSERT INTO address_policy (scope, rules) VALUES (?, ?)", SHARED, JSON.stringify(shared));
    }
    this.cached = this.load();
  }
}
