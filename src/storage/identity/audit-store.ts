import type { AuditPublicKey, AuditVerifier } from '../../domain/audit/audit-signing.ts';
import type { Principal } from '../../domain/identity/principal.ts';
import type { Database } from '../postgres/database.ts';
import { hashedOccurredAt } from './audit-hash.ts';
import { verifyChain } from './audit-verification.ts';
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
        const verified = await verifyChain(db, { tenantId, after: 0, verifier: options.verifier });
        return {
          ok: verified.failure === undefined,
          checked: verified.checked,
          firstBrokenSeq: verified.failure?.seq ?? null,
          reason: verified.failure?.reason ?? null,
          checkpoints: verified.checkpoints,
          publicKey: options.verifier?.publicKey ?? null,
        };
      });
    },
  };
}

/** The audit store's interface. */
export type AuditStore = ReturnType<typeof createAuditStore>;
