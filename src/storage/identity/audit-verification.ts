import { sql } from 'kysely';
import type { AuditVerifier } from '../../domain/audit/audit-signing.ts';
import type { ScopedDb } from '../postgres/database.ts';
import { type CheckpointFailure, checkCheckpoints } from './audit-checkpoint-checks.ts';
import { recomputedHash } from './audit-hash.ts';

/** One event as verification sees it: its hash, and whether it checks out. */
interface ChainRow {
  readonly seq: string;
  readonly position: string;
  readonly hash: Buffer;
  readonly hash_ok: boolean;
  readonly link_ok: boolean;
  readonly version_ok: boolean;
}

/** A row of the verification query: an event, or all nulls for a range without any. */
type NullableChainRow = { readonly [Key in keyof ChainRow]: ChainRow[Key] | null };

/** What one verification found: the first broken link (if any) and what it checked. */
export interface ChainVerification {
  /** Events read (those after `after`). */
  readonly checked: number;
  /** The newest event read, when there was one after `after`. */
  readonly last: { readonly seq: number; readonly hash: Buffer } | undefined;
  /** The first broken link, in sequence order; undefined when everything verifies. */
  readonly failure: CheckpointFailure | undefined;
  readonly checkpoints: { readonly checked: number; readonly latestSeq: number | null };
}

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
 * with the last event (`last`: its sequence number and hash): reported after the last event.
 */
function headFailure(
  head: { readonly seq: string; readonly hash: Buffer } | undefined,
  last: { readonly seq: number; readonly hash: Buffer | undefined },
): CheckpointFailure | undefined {
  if (head === undefined)
    return last.seq === 0
      ? undefined
      : { seq: last.seq + 1, reason: 'the chain head (brigade.audit_heads) is missing' };
  if (Number(head.seq) !== last.seq)
    return {
      seq: last.seq + 1,
      reason: `records after ${last.seq} are missing (the head says ${head.seq})`,
    };
  if (!head.hash.equals(last.hash ?? Buffer.alloc(0)))
    return {
      seq: last.seq + 1,
      reason: `the chain head (brigade.audit_heads) was altered: its hash is not record ${last.seq}'s, so the next record would link to the wrong hash`,
    };
  return undefined;
}

/**
 * Verifies a tenant's audit chain: the one check behind `verifyAudit` (`after` 0: the whole
 * chain) and behind signing a checkpoint (`after`: the newest checkpoint's event, so only the
 * events since are hashed again). It walks the events after `after` (each must match its
 * fields, link to the one before — the first to event `after` as stored — and follow it with
 * no gap), checks the head against the last event, and checks every signed checkpoint: its
 * signature (not when signing: `signatures: false`), and that the chain still holds its
 * (seq, hash). The earliest failure wins; at the
 * same event the chain's own reason. Run it in the tenant's scope.
 */
export async function verifyChain(
  db: ScopedDb,
  options: {
    readonly tenantId: string;
    readonly after: number;
    readonly verifier: AuditVerifier | undefined;
    /** False when signing: checkpoints' signatures are not checked again (see checkCheckpoints). */
    readonly signatures?: boolean;
  },
): Promise<ChainVerification> {
  const { tenantId, after } = options;
  // One statement, so the events and the head are read from one snapshot (an event appended
  // meanwhile is in both or in neither).
  const result = await sql<
    NullableChainRow & {
      head_seq: string | null;
      head_hash: Buffer | null;
      base_hash: Buffer | null;
      last_seq: string | null;
    }
  >`
    with base as (
      select hash from brigade.audit_events where tenant_id = ${tenantId} and seq = ${after}),
    chain as (
      select seq, hash, row_number() over (order by seq) + ${after} as position,
             coalesce(hash = ${recomputedHash}, false) as hash_ok,
             coalesce(prev_hash = coalesce(lag(hash) over (order by seq),
                                           case when ${after} = 0 then '\\x'::bytea
                                                else (select hash from base) end), false) as link_ok,
             hash_version >= coalesce(lag(hash_version) over (order by seq), 1) as version_ok
        from brigade.audit_events where tenant_id = ${tenantId} and seq > ${after})
    select chain.*, head.seq as head_seq, head.hash as head_hash,
           (select hash from base) as base_hash,
           (select max(seq) from brigade.audit_events where tenant_id = ${tenantId}) as last_seq
      from (select 1) as anchor
      left join brigade.audit_heads head on head.tenant_id = ${tenantId}
      left join chain on true
     order by chain.seq`.execute(db);
  const rows = result.rows.filter((row): row is typeof row & ChainRow => row.seq !== null);
  const first = result.rows[0];
  const head =
    first?.head_seq == null || first.head_hash === null
      ? undefined
      : { seq: first.head_seq, hash: first.head_hash };
  const lastRow = rows.at(-1);
  const last =
    lastRow === undefined
      ? { seq: after, hash: after === 0 ? undefined : (first?.base_hash ?? undefined) }
      : { seq: Number(lastRow.position), hash: lastRow.hash };
  const chainFailure = firstChainFailure(rows) ?? headFailure(head, last);
  const failures: CheckpointFailure[] = chainFailure === undefined ? [] : [chainFailure];
  const checkpoints = await db
    .selectFrom('brigade.audit_checkpoints')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .orderBy('seq')
    .execute();
  const hashes = new Map(rows.map((row) => [Number(row.seq), row.hash]));
  // The events the checkpoints name at or before `after` (those after it are in `rows`).
  const earlier = checkpoints.map((checkpoint) => checkpoint.seq).filter((seq) => +seq <= after);
  if (earlier.length > 0) {
    const stored = await sql<{ seq: string; hash: Buffer }>`
      select seq, hash from brigade.audit_events
       where tenant_id = ${tenantId} and seq = any(${earlier}::bigint[])`.execute(db);
    for (const row of stored.rows) hashes.set(Number(row.seq), row.hash);
  }
  failures.push(
    ...checkCheckpoints({
      tenantId,
      checkpoints,
      hashes,
      lastSeq: Number(first?.last_seq ?? 0),
      verifier: options.verifier,
      signatures: options.signatures !== false,
    }),
  );
  const earliest = failures.reduce<CheckpointFailure | undefined>(
    (found, failure) => (found === undefined || failure.seq < found.seq ? failure : found),
    undefined,
  );
  return {
    checked: rows.length,
    last: lastRow === undefined ? undefined : { seq: Number(lastRow.seq), hash: lastRow.hash },
    failure: earliest,
    checkpoints: {
      checked: checkpoints.length,
      latestSeq: checkpoints.length === 0 ? null : Number(checkpoints.at(-1)?.seq),
    },
  };
}
