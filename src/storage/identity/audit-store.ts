import { sql } from 'kysely';
import type { AuditPublicKey, AuditVerifier } from '../../domain/audit/audit-signing.ts';
import type { Principal } from '../../domain/identity/principal.ts';
import type { Database } from '../postgres/database.ts';
import { type CheckpointFailure, checkCheckpoints } from './audit-checkpoint-checks.ts';
import { hashedOccurredAt, recomputedHash } from './audit-hash.ts';
import { scopeFor } from './scope-for.ts';

/** An audit event as the API shows it. */
export interface AuditEvent {
  readonly seq: number;
  readonly id: string;
  /** UTC with microseconds (`YYYY-MM-DDTHH:MM:SS.ffffffZ`), exactly as the hash covers it. */
  readonly occurredAt: string;
  readonly actorKind: 'operator' | 'user' | 'system';
  readonly actorUserId: string | null;
  readonly actorKeyId: string | null;
  readonly action: string;
  readonly targetType: string | null;
  readonly targetId: string | null;
  readonly outcome: 'success' | 'failure' | 'denied';
  readonly reason: string | null;
  readonly data: Readonly<Record<string, unknown>>;
  readonly hash: string;
  /** The hash's encoding: 1 for events written before migration 0043, 2 since. */
  readonly hashVersion: number;
}

/** The outcome of checking a tenant's hash chain. */
export interface AuditVerification {
  readonly ok: boolean;
  readonly checked: number;
  /** Sequence number of the first record that does not verify (null when all do). */
  readonly firstBrokenSeq: number | null;
  readonly reason: string | null;
  /** Signed checkpoints checked: each signature, and that the chain still holds its (seq, hash). */
  readonly checkpoints: { readonly checked: number; readonly latestSeq: number | null };
  /** The key checkpoints were checked with (null when none is configured). */
  readonly publicKey: AuditPublicKey | null;
}

/** One event as verification sees it: its hash, and whether it checks out. */
interface ChainRow {
  readonly seq: string;
  readonly position: string;
  readonly hash: Buffer;
  readonly hash_ok: boolean;
  readonly link_ok: boolean;
  readonly version_ok: boolean;
}

/** A row of the verification query: an event, or all nulls for a chain without any. */
type NullableChainRow = { readonly [Key in keyof ChainRow]: ChainRow[Key] | null };

/** The first event (in sequence order) that is missing, edited, out of version or unlinked. */
function firstChainFailure(rows: readonly ChainRow[]): CheckpointFailure | undefined {
  for (const row of rows) {
    const seq = Number(row.seq);
    if (seq !== Number(row.position))
      return { seq: Number(row.position), reason: `record ${row.position} is missing` };
    if (!row.hash_ok) return { seq, reason: 'record was modified' };
    if (!row.version_ok)
      return { seq, reason: 'record was modified (hash version 1 after a version 2 record)' };
    if (!row.link_ok)
      return {
        seq,
        reason: `chain link is broken: record ${seq} does not link to record ${seq - 1} (record ${seq - 1} was rewritten, or the chain head was altered before record ${seq} was written)`,
      };
  }
  return undefined;
}

/**
 * Whether the chain's head (`brigade.audit_heads`, which the next event will link to) agrees
 * with the last event: same sequence number, same hash. Reported after the last event.
 */
function headFailure(
  head: { readonly seq: string; readonly hash: Buffer } | undefined,
  rows: readonly ChainRow[],
): CheckpointFailure | undefined {
  const last = rows.at(-1);
  const checked = rows.length;
  if (head === undefined)
    return last === undefined
      ? undefined
      : { seq: checked + 1, reason: 'the chain head (brigade.audit_heads) is missing' };
  if (Number(head.seq) !== checked)
    return {
      seq: checked + 1,
      reason: `records after ${checked} are missing (the head says ${head.seq})`,
    };
  const expected = last?.hash ?? Buffer.alloc(0);
  if (!head.hash.equals(expected))
    return {
      seq: checked + 1,
      reason: `the chain head (brigade.audit_heads) was altered: its hash is not record ${checked}'s, so the next record would link to the wrong hash`,
    };
  return undefined;
}

/**
 * Reads and verifies a tenant's append-only, hash-chained audit log. `verifier` checks the
 * signed checkpoints; without it a tenant that has checkpoints does not verify.
 */
export function createAuditStore(
  database: Database,
  options: { readonly verifier?: AuditVerifier | undefined } = {},
) {
  return {
    list(
      principal: Principal,
      options: { tenantId: string; after: number; limit: number },
    ): Promise<AuditEvent[]> {
      return database.withScope(scopeFor(principal, options.tenantId), async (db) => {
        const rows = await db
          .selectFrom('brigade.audit_events')
          .selectAll()
          .select(hashedOccurredAt.as('occurred_at_text'))
          .where('tenant_id', '=', options.tenantId)
          .where('seq', '>', String(options.after))
          .orderBy('seq')
          .limit(options.limit)
          .execute();
        return rows.map((row) => ({
          seq: Number(row.seq),
          id: row.id,
          occurredAt: row.occurred_at_text,
          actorKind: row.actor_kind,
          actorUserId: row.actor_user_id,
          actorKeyId: row.actor_key_id,
          action: row.action,
          targetType: row.target_type,
          targetId: row.target_id,
          outcome: row.outcome,
          reason: row.reason,
          data: row.data as Record<string, unknown>,
          hash: row.hash.toString('hex'),
          hashVersion: row.hash_version,
        }));
      });
    },
    /**
     * Walks the chain in sequence order and reports the first record that was edited (its
     * hash no longer matches its fields), removed or reordered (its link to the previous
     * record or its sequence number is wrong), or a truncated tail (the head disagrees).
     */
    verify(principal: Principal, tenantId: string): Promise<AuditVerification> {
      return database.withScope(scopeFor(principal, tenantId), async (db) => {
        // One statement, so the events and the head are read from one snapshot (an event
        // appended meanwhile is in both or in neither).
        const result = await sql<
          NullableChainRow & { head_seq: string | null; head_hash: Buffer | null }
        >`
          with chain as (
            select seq, hash, row_number() over (order by seq) as position,
                   coalesce(hash = ${recomputedHash}, false) as hash_ok,
                   prev_hash = coalesce(lag(hash) over (order by seq), '\\x'::bytea) as link_ok,
                   hash_version >= coalesce(lag(hash_version) over (order by seq), 1) as version_ok
              from brigade.audit_events where tenant_id = ${tenantId})
          select chain.*, head.seq as head_seq, head.hash as head_hash
            from (select 1) as anchor
            left join brigade.audit_heads head on head.tenant_id = ${tenantId}
            left join chain on true
           order by chain.seq`.execute(db);
        const rows = result.rows.filter((row): row is typeof row & ChainRow => row.seq !== null);
        const headRow = result.rows[0];
        const head =
          headRow?.head_seq == null || headRow.head_hash === null
            ? undefined
            : { seq: headRow.head_seq, hash: headRow.head_hash };
        const checked = rows.length;
        const chainFailure = firstChainFailure(rows) ?? headFailure(head, rows);
        const failures: CheckpointFailure[] = chainFailure === undefined ? [] : [chainFailure];
        const checkpoints = await db
          .selectFrom('brigade.audit_checkpoints')
          .selectAll()
          .where('tenant_id', '=', tenantId)
          .orderBy('seq')
          .execute();
        const hashes = new Map(rows.map((row) => [Number(row.seq), row.hash]));
        failures.push(
          ...checkCheckpoints({
            tenantId,
            checkpoints,
            hashes,
            lastSeq: Number(rows.at(-1)?.seq ?? 0),
            verifier: options.verifier,
          }),
        );
        // The first broken link wins; at the same sequence number the chain's own reason.
        const first = failures.reduce<CheckpointFailure | undefined>(
          (earliest, failure) =>
            earliest === undefined || failure.seq < earliest.seq ? failure : earliest,
          undefined,
        );
        return {
          ok: first === undefined,
          checked,
          firstBrokenSeq: first?.seq ?? null,
          reason: first?.reason ?? null,
          checkpoints: {
            checked: checkpoints.length,
            latestSeq: checkpoints.length === 0 ? null : Number(checkpoints.at(-1)?.seq),
          },
          publicKey: options.verifier?.publicKey ?? null,
        };
      });
    },
  };
}

/** The audit store's interface. */
export type AuditStore = ReturnType<typeof createAuditStore>;
