// Types shared by the Worker and the RealmObject Durable Object: the RPC
// surface between them. Results are plain data (never thrown errors) because
// Workers RPC keeps only an error's message, and the Worker must map each
// failure to a stable code and HTTP status.
import type { ErrorCode } from "../core/errors.ts";
import type { WorkloadScaling } from "../core/scaling.ts";
import type { HopwayRecord, ScalingReport } from "../core/schema.ts";

/** Who is calling. The Worker checks the admin secret itself; scoped tokens live in the realm, hashed. */
export type Caller = { kind: "admin" } | { kind: "token"; hash: string };

export type Role = "admin" | "agent" | "reader";

export interface Principal {
  role: Role;
  /** Namespaces an agent may write; null = any (admin). */
  namespaces: string[] | null;
  tokenId: string | null;
}

export interface Failure {
  ok: false;
  error: { code: ErrorCode; message: string; status: number; path?: string; retry_after_seconds?: number };
}
export type Result<T> = ({ ok: true } & T) | Failure;

/** What a Worker isolate needs to bring its cached copy of a realm up to date. */
export type Changes =
  | { kind: "current"; epoch: string; version: number }
  | { kind: "delta"; epoch: string; version: number; changes: RecordChange[] }
  /** The caller's copy is too old (changelog pruned), from another epoch, or too far behind: reload by pages. */
  | { kind: "reset"; epoch: string; version: number };

/**
 * A Changes answer as the realm object gives it: with the relay trust bundle (docs/identity.md) and
 * the shared namespaces (docs/contract/records.md §2.3; null: every namespace) at that version.
 */
export type ChangesWithTrust = Changes & { trust_bundle: string[]; shared_namespaces: string[] | null };

export interface RecordChange {
  name: string;
  /** null = the record was removed. */
  record: HopwayRecord | null;
}

export interface RecordPage {
  epoch: string;
  version: number;
  records: HopwayRecord[];
  /** Pass as `after` for the next page; null at the end. */
  next: string | null;
}

/** A page as the realm object gives it: with the relay trust bundle and shared namespaces at the page's version. */
export type RecordPageWithTrust = RecordPage & { trust_bundle: string[]; shared_namespaces: string[] | null };

export interface WriteResult {
  version: number;
}

export interface PutResult extends WriteResult {
  created: boolean;
  /** false when the record was byte-for-byte the stored one: the lease was renewed, the version not bumped. */
  changed: boolean;
  expires_at: string | null;
}

export interface HeartbeatResult extends WriteResult {
  expires_at: string | null;
  scaling?: WorkloadScaling;
}

export interface WorkloadView {
  version: number;
  /** The namespace whose pods' reports these are (null: records without one). */
  namespace: string | null;
  scaling: WorkloadScaling;
  pods: { node: string; report: ScalingReport; reported_at: string }[];
}

// Answers the edge passes on as the object gives them: one definition each, in the core's wire schemas.
export type {
  CaAuthorityInfo,
  CaStatus,
  CertificateAnswer as IssuedCertificate,
  LinkStatus,
  NodeAnswer as StoredRecord,
  TokenInfo,
  TrustBundleAnswer as TrustBundle,
} from "../core/wire.ts";
