import { sql } from 'kysely';
import type { Database, ScopedDb } from '../postgres/database.ts';

/** A queue entry one claim took: the run and whose it is. */
export interface ClaimedRun {
  readonly runId: string;
  readonly tenantId: string;
  readonly userId: string;
}

/** Options of {@link claimRuns}. */
export interface ClaimRunsOptions {
  /** Stored on the claimed entries; heartbeats and hand-backs match on it. */
  readonly executorId: string;
  /** Most runs to claim in this batch (the process's free slots). */
  readonly limit: number;
  /** A claim whose heartbeat is older than this holds no slot and is taken over. */
  readonly staleAfterMs: number;
  /** Default cap on runs of one tenant claimed at once across all processes; 0 = unlimited. */
  readonly maxPerTenant: number;
  /** Default cap on runs of one user claimed at once across all processes; 0 = unlimited. */
  readonly maxPerUser: number;
}

/** The claim: one prepared call of `brigade.claim_runs` (migration 0016). */
const claimStatement = {
  name: 'brigade_claim_runs',
  text: 'select claimed_run, claimed_tenant, claimed_user from brigade.claim_runs($1, $2, $3, $4, $5)',
};

/**
 * Claims up to `limit` runs fairly, in one call (it sets the `{ scheduler: true }` scope
 * itself, in its own transaction). The order:
 *
 * 1. Only entries that are queued, or claimed by a process whose heartbeat went stale, and
 *    only the oldest entry of a thread with no live claim (one run per thread at a time).
 *    Parked entries (waiting for an approval) hold no slot and are not candidates.
 * 2. Each candidate gets a *user slot*: its user's live claims plus its rank among that user's
 *    candidates (interactive first, then oldest); candidates beyond the user's cap drop out.
 * 3. The rest get a *tenant slot*: the tenant's live claims plus the rank among the tenant's
 *    candidates by (batch last, user slot, age); candidates beyond the tenant's cap drop out.
 *    Inside a tenant, interactive runs come first and users take turns.
 * 4. The batch is taken by (tenant slot, age): the tenant with the fewest running goes first,
 *    and a batch of several alternates between tenants (round robin), not one tenant's FIFO.
 *
 * Concurrency: claimers take transaction-level advisory locks first — the schedulers' global
 * lock, then the claim lock of each tenant the claim may take runs of (migration 0018; a
 * create claiming its own run on arrival takes only its tenant's) — so the claims touching a
 * tenant run one after another and each ranks with every earlier one committed: the caps
 * (per tenant, and per user inside a tenant) are exact. Ranking from a snapshot without them
 * would let two claimers that rank a tenant's candidates differently (a run finished or
 * arrived between their snapshots and changed the users' turns) together exceed a cap. The
 * locks are held only for the claim statement (a few milliseconds); `FOR UPDATE SKIP LOCKED`
 * still skips rows that a cancel, a finish or a requeue holds, and the recheck of step 1 drops
 * rows that changed meanwhile. Stale claims count as free (their process is presumed dead).
 * The locks are released when the call's transaction ends.
 */
export async function claimRuns(
  database: Pick<Database, 'callPrepared'>,
  options: ClaimRunsOptions,
): Promise<ClaimedRun[]> {
  const rows = await database.callPrepared(claimStatement, claimArguments(options));
  return rows.map((row) => ({
    runId: String(row['claimed_run']),
    tenantId: String(row['claimed_tenant']),
    userId: String(row['claimed_user']),
  }));
}

/** `claim_runs`' arguments (also `finish_run_claim`'s last five, migration 0024). */
export function claimArguments(options: ClaimRunsOptions): unknown[] {
  return [
    options.executorId,
    options.limit,
    `${Math.ceil(options.staleAfterMs / 1000)} seconds`,
    options.maxPerTenant,
    options.maxPerUser,
  ];
}

/**
 * What the run scheduler offers a run being created: a free executor slot of this process,
 * held so the create can claim the run on arrival (`brigade.claim_on_arrival`, migration 0017),
 * or none. Exactly one of `launch` and `release` is called.
 */
export interface ArrivalSlot {
  /** Null when this process holds no slot for the run: it is queued. */
  readonly executorId: string | null;
  /**
   * This process alone runs as many of the tenant's or user's runs as a default cap allows, so
   * no process can claim the run before one of those finishes (which wakes the schedulers).
   */
  readonly atCap: boolean;
  /** The scheduler's default caps, as passed to {@link claimRuns}. */
  readonly maxPerTenant: number;
  readonly maxPerUser: number;
  /** The create claimed the run: execute it in this process. */
  launch(claimed: ClaimedRun): void;
  /** The run was queued, or not created: the slot is free again. */
  release(): void;
}

/**
 * A claim as its execution holds it: the run, and the scheduler that claimed it (undefined for
 * a run executed without one, whose writes are not fenced).
 */
export type HeldClaim = ClaimedRun & { readonly executorId?: string | undefined };

/**
 * SQLSTATE of `brigade.assert_claim` (migration 0042): the run's queue entry is gone or held by
 * another executor, and the write that asked wrote nothing.
 */
export const claimLostCode = 'BRG17';

/** Whether `error` is the claim fence's refusal ({@link claimLostCode}). */
export function isClaimLost(error: unknown): boolean {
  return (error as { code?: unknown } | undefined)?.code === claimLostCode;
}

/**
 * The claim fence in a scoped transaction, before its writes: raises {@link claimLostCode}
 * (and the transaction rolls back) unless the run's queue entry is still held by
 * `claim.executorId`. Nothing is sent for a claim without an executor id.
 */
export async function assertClaim(db: ScopedDb, claim: HeldClaim): Promise<void> {
  if (claim.executorId === undefined) return;
  await sql`select brigade.assert_claim(${claim.tenantId}, ${claim.userId}, ${claim.runId}, ${claim.executorId})`.execute(
    db,
  );
}

/**
 * Deletes a run's queue entry (the run ended, or is gone): only while `claim.executorId`
 * holds it, so an execution that lost its claim cannot drop the entry of the one that resumed
 * the run.
 */
export async function dropQueueEntry(database: Database, claim: HeldClaim): Promise<void> {
  await database.withScope(claim, (db) => {
    const entry = db.deleteFrom('brigade.run_queue').where('run_id', '=', claim.runId);
    return (
      claim.executorId === undefined ? entry : entry.where('executor_id', '=', claim.executorId)
    ).execute();
  });
}

/**
 * Whether another process holds the run's queue entry now. A process whose claim went stale
 * while it still executed the run (it missed heartbeats for `staleAfterMs`: a database outage
 * that long, a stalled event loop) loses the run to whichever process resumed it, and must
 * stop without recording an outcome, or a run another process is executing would end
 * `failed`. False when the entry is gone (the run ended or was deleted) or the claim carries
 * no executor id.
 */
export async function claimTakenOver(database: Database, claim: HeldClaim): Promise<boolean> {
  if (claim.executorId === undefined) return false;
  const row = await database.withScope(claim, (db) =>
    db
      .selectFrom('brigade.run_queue')
      .select('executor_id')
      .where('run_id', '=', claim.runId)
      .executeTakeFirst(),
  );
  return row !== undefined && row.executor_id !== claim.executorId;
}

/** Whether a claimed run still exists (deleting its thread deletes it). */
export async function runExists(database: Database, claim: ClaimedRun): Promise<boolean> {
  const row = await database.withScope(claim, (db) =>
    db.selectFrom('brigade.runs').select('id').where('id', '=', claim.runId).executeTakeFirst(),
  );
  return row !== undefined;
}
