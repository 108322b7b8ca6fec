import { sql } from 'kysely';
import type { AuditSigner } from '../../domain/audit/audit-signing.ts';
import { AppError } from '../../domain/errors.ts';
import type { Principal } from '../../domain/identity/principal.ts';
import type { Database } from '../postgres/database.ts';
import { verifyChain } from './audit-verification.ts';
import { scopeFor, systemScope } from './scope-for.ts';

/** A signed checkpoint of a tenant's audit chain, as the API shows it. */
export interface AuditCheckpoint {
  readonly tenantId: string;
  readonly seq: number;
  /** Chain hash of event `seq`, hex. */
  readonly hash: string;
  readonly signedAt: Date;
  readonly keyId: string;
  /** Ed25519 signature over `checkpointMessage(...)`, base64. */
  readonly signature: string;
}

/** When a tenant is due a checkpoint: this many uncovered events, or this long since the last. */
export interface CheckpointDue {
  readonly everyEvents: number;
  readonly intervalSeconds: number;
}

function toCheckpoint(row: {
  tenant_id: string;
  seq: string;
  hash: Buffer;
  signed_at: Date;
  key_id: string;
  signature: Buffer;
}): AuditCheckpoint {
  return {
    tenantId: row.tenant_id,
    seq: Number(row.seq),
    hash: row.hash.toString('hex'),
    signedAt: row.signed_at,
    keyId: row.key_id,
    signature: row.signature.toString('base64'),
  };
}

/**
 * Reads and writes signed audit checkpoints. `signer` is undefined when no signing key is
 * configured: then nothing is written. Before signing, the chain is verified from the previous
 * checkpoint on by `verifyAudit`'s own check (audit-verification.ts), so a chain it finds
 * broken is never vouched for, and the refusal names the event `verifyAudit` names.
 */
export function createAuditCheckpointStore(database: Database, signer: AuditSigner | undefined) {
  return {
    /** Whether checkpoints are written at all. */
    enabled: signer !== undefined,
    /** The public half of the signing key, published for offline verification. */
    publicKey: signer?.publicKey,
    list(
      principal: Principal,
      options: { tenantId: string; after: number; limit: number },
    ): Promise<AuditCheckpoint[]> {
      return database.withScope(scopeFor(principal, options.tenantId), async (db) => {
        const rows = await db
          .selectFrom('brigade.audit_checkpoints')
          .selectAll()
          .where('tenant_id', '=', options.tenantId)
          .where('seq', '>', String(options.after))
          .orderBy('seq')
          .limit(options.limit)
          .execute();
        return rows.map(toCheckpoint);
      });
    },
    /** Tenants whose chain advanced past their last checkpoint and are due one. */
    due(options: CheckpointDue): Promise<string[]> {
      return database.withScope({ operator: true }, async (db) => {
        const result = await sql<{ tenant_id: string }>`
          select h.tenant_id from brigade.audit_heads h
            left join lateral (
              select c.seq, c.signed_at from brigade.audit_checkpoints c
               where c.tenant_id = h.tenant_id order by c.seq desc limit 1) c on true
           where h.seq > coalesce(c.seq, 0)
             and (h.seq - coalesce(c.seq, 0) >= ${options.everyEvents}
                  or coalesce(c.signed_at, '-infinity') <
                       now() - make_interval(secs => ${options.intervalSeconds}))
           order by h.tenant_id`.execute(db);
        return result.rows.map((row) => row.tenant_id);
      });
    },
    /**
     * Signs a checkpoint at the tenant's newest event when the chain advanced since the last
     * one. Returns it, or undefined when there was nothing new (or no key). Throws `conflict`
     * when the chain does not verify (see above), with the first broken event and its reason.
     */
    checkpoint(tenantId: string): Promise<AuditCheckpoint | undefined> {
      const key = signer;
      if (key === undefined) return Promise.resolve(undefined);
      return database.withScope(systemScope(tenantId), async (db) => {
        const last = await db
          .selectFrom('brigade.audit_checkpoints')
          .select(['seq'])
          .where('tenant_id', '=', tenantId)
          .orderBy('seq', 'desc')
          .limit(1)
          .executeTakeFirst();
        const after = Number(last?.seq ?? 0);
        // verifyAudit's own check, from the newest checkpoint on: the same first broken event.
        // Checkpoints' signatures are not checked again here (verifyAudit does): an Ed25519
        // check of every stored checkpoint on every signing grew without bound, and after a
        // signing-key change no tenant could be signed again.
        const verified = await verifyChain(db, {
          tenantId,
          after,
          verifier: key,
          signatures: false,
        });
        if (verified.failure !== undefined)
          throw new AppError(
            'conflict',
            `The audit chain does not verify at event ${verified.failure.seq} (${verified.failure.reason}); no checkpoint was signed.`,
          );
        // The newest event the verification read (one appended since is left to the next).
        const newest = verified.last;
        if (newest === undefined) return undefined;
        const fields = {
          tenantId,
          seq: Number(newest.seq),
          hash: newest.hash.toString('hex'),
          signedAt: new Date(),
        };
        const { keyId, signature } = key.sign(fields);
        const row = {
          tenant_id: tenantId,
          seq: String(newest.seq),
          hash: newest.hash,
          signed_at: fields.signedAt,
          key_id: keyId,
          signature,
        };
        await db
          .insertInto('brigade.audit_checkpoints')
          .values(row)
          .onConflict((conflict) => conflict.columns(['tenant_id', 'seq']).doNothing())
          .execute();
        return toCheckpoint(row);
      });
    },
  };
}

/** The checkpoint store's interface. */
export type AuditCheckpointStore = ReturnType<typeof createAuditCheckpointStore>;
