import { sql } from 'kysely';
import type { AuditPublicKey, AuditVerifier } from '../../domain/audit/audit-signing.ts';
import type { Principal } from '../../domain/identity/principal.ts';
import type { Database } from '../postgres/database.ts';
import { type CheckpointFailure, checkCheckpoints } from './audit-checkpoint-checks.ts';
import { scopeFor } from './scope-for.ts';

/** An audit event as the API shows it. */
export interface AuditEvent {
  readonly seq: number;
  readonly id: string;
  readonly occurredAt: Date;
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

/** The hash the trigger computed, recomputed from a row's fields (must match 0007-accountability). */
export const recomputedHash = sql`sha256(prev_hash || convert_to(concat_ws('|',
  tenant_id::text, seq::text, id::text,
  to_char(occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
  actor_kind, coalesce(actor_user_id::text, ''), coalesce(actor_key_id::text, ''),
  action, coalesce(target_type, ''), coalesce(target_id, ''), outcome,
  coalesce(reason, ''), data::text), 'UTF8'))`;

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
          .where('tenant_id', '=', options.tenantId)
          .where('seq', '>', String(options.after))
          .orderBy('seq')
          .limit(options.limit)
          .execute();
        return rows.map((row) => ({
          seq: Number(row.seq),
          id: row.id,
          occurredAt: row.occurred_at,
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
        const checks = await sql<{
          seq: string;
          position: string;
          hash: Buffer;
          hash_ok: boolean;
          link_ok: boolean;
        }>`
          select seq, hash, row_number() over (order by seq) as position,
                 hash = ${recomputedHash} as hash_ok,
                 prev_hash = coalesce(lag(hash) over (order by seq), '\\x'::bytea) as link_ok
            from brigade.audit_events where tenant_id = ${tenantId} order by seq`.execute(db);
        const checked = checks.rows.length;
        const failures: CheckpointFailure[] = [];
        for (const row of checks.rows) {
          const seq = Number(row.seq);
          const failure =
            seq !== Number(row.position)
              ? { seq: Number(row.position), reason: `record ${row.position} is missing` }
              : !row.hash_ok
                ? { seq, reason: 'record was modified' }
                : !row.link_ok
                  ? { seq, reason: 'chain link is broken' }
                  : undefined;
          if (failure !== undefined) {
            failures.push(failure);
            break;
          }
        }
        const head = await db
          .selectFrom('brigade.audit_heads')
          .select('seq')
          .where('tenant_id', '=', tenantId)
          .executeTakeFirst();
        if (failures.length === 0 && head !== undefined && Number(head.seq) !== checked) {
          failures.push({
            seq: checked + 1,
            reason: `records after ${checked} are missing (the head says ${head.seq})`,
          });
        }
        const checkpoints = await db
          .selectFrom('brigade.audit_checkpoints')
          .selectAll()
          .where('tenant_id', '=', tenantId)
          .orderBy('seq')
          .execute();
        const hashes = new Map(checks.rows.map((row) => [Number(row.seq), row.hash]));
        failures.push(
          ...checkCheckpoints({
            tenantId,
            checkpoints,
            hashes,
            lastSeq: Number(checks.rows.at(-1)?.seq ?? 0),
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
