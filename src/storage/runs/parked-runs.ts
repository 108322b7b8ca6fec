import { sql } from 'kysely';
import type { ScopedDb } from '../postgres/database.ts';
import { type DatabaseScope, renderScopeSwitch } from '../postgres/scope.ts';

/**
 * Inside the caller's transaction (an agent's deletion): puts the runs of `agentId` that wait
 * for an approval back in the queue and expires their pending approvals, so they end as that
 * agent's queued runs do (failed, `agent_not_found`, when next claimed) instead of asking their
 * users to approve a call that can no longer run. A parked run holds no claim, so nothing else
 * would wake it before a decision or the approval's expiry (24 h by default).
 *
 * Each user's runs are visible only in that user's scope: the users come from the tenant's
 * ids-only queue, then each user's parked runs are released under their own scope, the run's row
 * locked before its queue entry (the order a cancel takes). An entry still claimed (an execution
 * finishing the calls beside the parked one) is left to that execution, which fails the run when
 * it queues it. `restore` (the caller's scope) comes back at the end. Returns how many runs.
 */
export async function releaseParkedRunsOf(
  db: ScopedDb,
  target: { readonly tenantId: string; readonly agentId: string; readonly restore: DatabaseScope },
): Promise<number> {
  const { tenantId, agentId } = target;
  await sql.raw(renderScopeSwitch({ tenantId, tenantQueue: true })).execute(db);
  const users = await sql<{ user_id: string }>`
    select distinct user_id from brigade.run_queue
     where tenant_id = ${tenantId} and state = 'parked'`.execute(db);
  let released = 0;
  for (const { user_id: userId } of users.rows) {
    await sql.raw(renderScopeSwitch({ tenantId, userId })).execute(db);
    const requeued = await sql<{ run_id: string }>`
      with parked as (
        select r.id from brigade.runs r
          join brigade.run_queue q on q.run_id = r.id and q.state = 'parked'
         where r.agent_id = ${agentId} and r.status = 'requires_action'
         order by r.id
           for update of r, q),
      expired as (
        update brigade.approvals a
           set status = 'expired', decided_at = now(), decision_reason = 'agent deleted'
         where a.run_id in (select id from parked) and a.status = 'pending')
      update brigade.run_queue q
         set state = 'queued', executor_id = null, heartbeat_at = null, wake_at = null
       where q.run_id in (select id from parked)
      returning q.run_id`.execute(db);
    released += requeued.rows.length;
  }
  await sql.raw(renderScopeSwitch(target.restore)).execute(db);
  return released;
}
