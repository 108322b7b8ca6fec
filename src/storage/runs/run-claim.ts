import { sql } from 'kysely';
import type { ScopedDb } from '../postgres/database.ts';

/** A queue entry one claim took: the run and whose it is. */
export interface ClaimedRun {
  readonly runId: string;
  readonly tenantId: string;
  readonly userId: string;
}

/**
 * Caps that replace the configured defaults for particular tenants or users: the seam through
 * which limit policies (`concurrentRuns`) reach the scheduler. Keys are tenant ids and user
 * ids; values are the most runs of that tenant (or user) claimed at once across all
 * processes, 0 meaning unlimited. Tenants and users not named keep the defaults. Role-level
 * or tenant-wide per-user policies must be resolved into user ids by whoever builds this.
 */
export interface RunCapOverrides {
  readonly perTenant?: Readonly<Record<string, number>> | undefined;
  readonly perUser?: Readonly<Record<string, number>> | undefined;
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
  readonly overrides?: RunCapOverrides | undefined;
}

/** Advisory lock key that serialises claims across processes (the ASCII of `brigclai`). */
const claimLockKey = '7093848255832547689';

function capsJson(caps: Readonly<Record<string, number>> | undefined): string {
  const valid: Record<string, number> = {};
  for (const [id, cap] of Object.entries(caps ?? {})) {
    if (!Number.isInteger(cap) || cap < 0) throw new Error(`invalid run cap for ${id}: ${cap}`);
    valid[id] = cap;
  }
  return JSON.stringify(valid);
}

/**
 * Claims up to `limit` runs fairly, in one statement (run it in the `{ scheduler: true }`
 * scope). The order:
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
 * Concurrency: claimers take a transaction-level advisory lock first, so claims (of every
 * process) run one after another and each ranks with every earlier claim committed: the caps
 * are exact. Ranking from a snapshot without it would let two claimers that rank a tenant's
 * candidates differently (a run finished or arrived between their snapshots and changed the
 * users' turns) together exceed a cap. The lock is held only for the claim statement (a few
 * milliseconds); `FOR UPDATE SKIP LOCKED` still skips rows that a cancel, a finish or a
 * requeue holds, and the recheck of step 1 drops rows that changed meanwhile. Stale claims
 * count as free (their process is presumed dead). Call it inside a transaction: the lock is
 * released at its end.
 */
export async function claimRuns(db: ScopedDb, options: ClaimRunsOptions): Promise<ClaimedRun[]> {
  const stale = `${Math.ceil(options.staleAfterMs / 1000)} seconds`;
  const tenantCaps = capsJson(options.overrides?.perTenant);
  const userCaps = capsJson(options.overrides?.perUser);
  // A separate statement: the claim below must take its snapshot after the lock is granted.
  // The claim is prepared per connection; a generic plan spares planning the whole statement
  // again on every claim (it was the costliest statement of a run to plan).
  await sql`select pg_advisory_xact_lock(${claimLockKey}::bigint),
                   set_config('plan_cache_mode', 'force_generic_plan', true)`.execute(db);
  const result = await sql<{ run_id: string; tenant_id: string; user_id: string }>`
    with live as (
      select tenant_id, user_id from brigade.run_queue
       where state = 'claimed' and heartbeat_at >= clock_timestamp() - ${stale}::interval),
    tenant_running as (select tenant_id, count(*)::int as n from live group by tenant_id),
    user_running as (select user_id, count(*)::int as n from live group by user_id),
    -- concurrentRuns policies, read here so a change binds the next claim: platform and
    -- tenant policies cap a tenant, role and user policies each user; the tightest wins.
    waiting as (select distinct tenant_id, user_id from brigade.run_queue where state <> 'parked'),
    tenant_policy as (
      select w.tenant_id, min((p.limits ->> 'concurrentRuns')::int) as cap
        from (select distinct tenant_id from waiting) w
        join brigade.policies p
          on p.level = 'platform' or (p.level = 'tenant' and p.tenant_id = w.tenant_id)
       where p.limits ? 'concurrentRuns'
       group by w.tenant_id),
    user_policy as (
      select w.user_id, min((p.limits ->> 'concurrentRuns')::int) as cap
        from waiting w
        join brigade.memberships m on m.tenant_id = w.tenant_id and m.user_id = w.user_id
        join brigade.policies p
          on (p.tenant_id is null or p.tenant_id = w.tenant_id)
         and ((p.level = 'role' and p.role = m.role) or (p.level = 'user' and p.subject_id = w.user_id))
       where p.limits ? 'concurrentRuns'
       group by w.user_id),
    capped as (
      select c.run_id, c.tenant_id, c.user_id, c.thread_id, c.enqueued_at,
             c.priority = 'batch' as is_batch,
             coalesce(tr.n, 0) as tenant_running, coalesce(ur.n, 0) as user_running,
             brigade.tightest_cap(
               coalesce((${tenantCaps}::jsonb ->> c.tenant_id::text)::int, ${options.maxPerTenant}::int),
               tp.cap) as tenant_cap,
             brigade.tightest_cap(
               coalesce((${userCaps}::jsonb ->> c.user_id::text)::int, ${options.maxPerUser}::int),
               up.cap) as user_cap
        from brigade.run_queue c
        left join tenant_running tr on tr.tenant_id = c.tenant_id
        left join user_running ur on ur.user_id = c.user_id
        left join tenant_policy tp on tp.tenant_id = c.tenant_id
        left join user_policy up on up.user_id = c.user_id
       where c.state = 'queued'
          or (c.state = 'claimed' and c.heartbeat_at < clock_timestamp() - ${stale}::interval)),
    -- Tenants and users at their cap drop out before the costlier thread check and ranking.
    candidates as (
      select * from capped c
       where (c.tenant_cap = 0 or c.tenant_running < c.tenant_cap)
         and (c.user_cap = 0 or c.user_running < c.user_cap)
         and not exists (
           select 1 from brigade.run_queue o
            where o.thread_id = c.thread_id and o.run_id <> c.run_id
              and (o.enqueued_at < c.enqueued_at
                   or (o.state = 'claimed' and o.heartbeat_at >= clock_timestamp() - ${stale}::interval)))),
    by_user as (
      select *, user_running + row_number() over (
               partition by user_id order by is_batch, enqueued_at, run_id) as user_slot
        from candidates),
    by_tenant as (
      select *, tenant_running + row_number() over (
               partition by tenant_id order by is_batch, user_slot, enqueued_at, run_id) as tenant_slot
        from by_user where user_cap = 0 or user_slot <= user_cap),
    ranked as (
      select run_id, tenant_slot, enqueued_at from by_tenant
       where tenant_cap = 0 or tenant_slot <= tenant_cap)
    update brigade.run_queue q
       set state = 'claimed', executor_id = ${options.executorId},
           heartbeat_at = clock_timestamp(),
           first_claimed_at = coalesce(q.first_claimed_at, clock_timestamp())
     where q.run_id in (
       select c.run_id from brigade.run_queue c join ranked r on r.run_id = c.run_id
        where c.state = 'queued'
           or (c.state = 'claimed' and c.heartbeat_at < clock_timestamp() - ${stale}::interval)
        order by r.tenant_slot, r.enqueued_at, r.run_id
        for update of c skip locked
        limit ${options.limit})
    returning q.run_id, q.tenant_id, q.user_id`.execute(db);
  return result.rows.map((row) => ({
    runId: row.run_id,
    tenantId: row.tenant_id,
    userId: row.user_id,
  }));
}
