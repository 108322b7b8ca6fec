import { sql } from 'kysely';
import type { ScopedDb } from '../postgres/database.ts';
import { type DatabaseScope, renderScopeSwitch } from '../postgres/scope.ts';
import { type ExpiringApproval, markApprovalExpired } from './approval-expiry.ts';
import { appendEvents, nextSeq } from './run-cancellation.ts';

/** The decision reason (and audit reason) of approvals expired because their agent went. */
export const agentDeletedReason = 'agent_deleted';

/** What {@link releaseParkedRunsOf} did: the runs requeued, the approvals it expired. */
export interface ReleasedRuns {
  readonly runs: number;
  /** Expired, not audited yet: the caller writes their `approval.expired` events last. */
  readonly approvals: readonly ExpiringApproval[];
}

/**
 * Inside the caller's transaction (an agent's deletion, which holds the agent's advisory lock
 * and writes its audit events after this): expires the pending approvals of the agent's runs
 * that wait for one (`approval-decided` appended, reason `agent_deleted`; the caller audits
 * them) and puts those runs back in the queue, so they end as the agent's queued runs do
 * (failed, `agent_not_found`, when next claimed) instead of asking their users to approve a call
 * that can no longer run. A parked run holds no claim, so nothing else would wake it before a
 * decision or the approval's expiry (24 h by default). A run still executing does not park
 * once the agent is gone (`parkOrRequeue` waits for the same advisory lock, then checks).
 *
 * Each user's runs are visible only in that user's scope: the users come from the tenant's
 * ids-only queue, then each user's parked runs are released under their own scope, their
 * approvals locked before the runs (the order every writer of both takes). `restore` (the
 * caller's scope) comes back at the end.
 */
export async function releaseParkedRunsOf(
  db: ScopedDb,
  target: { readonly tenantId: string; readonly agentId: string; readonly restore: DatabaseScope },
): Promise<ReleasedRuns> {
  const { tenantId, agentId } = target;
  await sql.raw(renderScopeSwitch({ tenantId, tenantQueue: true })).execute(db);
  const users = await sql<{ user_id: string }>`
    select distinct user_id from brigade.run_queue
     where tenant_id = ${tenantId} and state = 'parked'`.execute(db);
  let runs = 0;
  const approvals: ExpiringApproval[] = [];
  for (const { user_id: userId } of users.rows) {
    await sql.raw(renderScopeSwitch({ tenantId, userId })).execute(db);
    const released = await releaseUsersRuns(db, { tenantId, userId, agentId });
    runs += released.runs;
    approvals.push(...released.approvals);
  }
  await sql.raw(renderScopeSwitch(target.restore)).execute(db);
  return { runs, approvals };
}

async function releaseUsersRuns(
  db: ScopedDb,
  target: { readonly tenantId: string; readonly userId: string; readonly agentId: string },
): Promise<ReleasedRuns> {
  const parked = sql`
    select r.id from brigade.runs r
      join brigade.run_queue q on q.run_id = r.id and q.state = 'parked'
     where r.agent_id = ${target.agentId} and r.status = 'requires_action'`;
  const candidates = (await sql<{ id: string }>`${parked}`.execute(db)).rows.map((row) => row.id);
  if (candidates.length === 0) return { runs: 0, approvals: [] };
  const pending = await db
    .selectFrom('brigade.approvals')
    .selectAll()
    .where('run_id', 'in', candidates)
    .where('status', '=', 'pending')
    .orderBy('id')
    .forUpdate()
    .execute();
  // Locked now, and still parked (a decision may have requeued one meanwhile).
  const runs = await sql<{ id: string }>`
    ${parked} and r.id = any(${candidates}::uuid[]) order by r.id for update of r, q`.execute(db);
  const expired: ExpiringApproval[] = [];
  for (const { id: runId } of runs.rows) {
    const events = [];
    for (const approval of pending.filter((candidate) => candidate.run_id === runId)) {
      events.push(await markApprovalExpired(db, approval, agentDeletedReason));
      expired.push(approval);
    }
    const run = { tenantId: target.tenantId, userId: target.userId, runId };
    await appendEvents(db, { ...run, firstSeq: await nextSeq(db, runId) }, events);
    await db
      .updateTable('brigade.runs')
      .set({ status: 'queued', pending_action: null, deadline_at: null })
      .where('id', '=', runId)
      .execute();
    await db
      .updateTable('brigade.run_queue')
      .set({ state: 'queued', executor_id: null, heartbeat_at: null, wake_at: null })
      .where('run_id', '=', runId)
      .execute();
  }
  return { runs: runs.rows.length, approvals: expired };
}

/**
 * Takes the advisory lock of `agentId` (shared: a run's execution parking; exclusive: the
 * agent's deletion), in the caller's transaction: a run cannot park on an agent whose deletion
 * is in flight (it waits, then sees the agent gone), nor a deletion miss a run parking. Keyed
 * by the id's canonical text (a path may spell it in upper case).
 */
export async function lockAgent(
  db: ScopedDb,
  target: { readonly agentId: string; readonly shared: boolean },
): Promise<void> {
  await (target.shared
    ? sql`select pg_advisory_xact_lock_shared(hashtext('brigade.agent'), hashtext(${target.agentId}::uuid::text))`
    : sql`select pg_advisory_xact_lock(hashtext('brigade.agent'), hashtext(${target.agentId}::uuid::text))`
  ).execute(db);
}
