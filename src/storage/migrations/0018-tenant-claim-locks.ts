import type { MigrationContext } from './migration-context.ts';

/**
 * Claim locks per tenant (the fairness benchmark). Claims used to serialise on one advisory
 * lock for every tenant, so a quiet tenant's claim on arrival (migration 0017) waited for
 * whatever `claim_runs` held it: under a noisy tenant's load, a claim over its whole backlog
 * every time one of its runs finished. The caps a claim must keep exact are per tenant (and
 * per user, and a user belongs to one tenant), so the exclusion can be per tenant too:
 *
 * - `claim_runs` still takes the global lock (claims of the schedulers run one at a time,
 *   as before), then the claim lock of each tenant it may claim for: the tenants with a
 *   claimable entry of a user below the default user cap that are below their tenant cap
 *   (the default, platform and tenant policies), oldest entry first, at most 256 (a bound on
 *   the locks one transaction takes). It claims only those tenants' entries; the others wait
 *   for the next claim (a finishing run sends a wake-up). Its snapshot is taken after the
 *   locks are granted, so it counts every claim committed before.
 * - `claim_on_arrival` takes only its tenant's lock (tried, then waited for up to 25 ms).
 *   Two arrivals of one tenant, or an arrival and a claim that includes its tenant, still run
 *   one after the other; an arrival of another tenant no longer waits.
 * - A create that joins its tenant's backlog (or a busy thread) answers 'capped' when the
 *   tenant or user is at a cap, as one without a backlog did: the caller then sends no
 *   wake-up, since only a finishing run (which sends its own) frees the slot it needs. Before,
 *   each of a noisy tenant's creates woke every scheduler into a claim that took nothing.
 *
 * `claim_runs` below is 0016's with three changes — the locks, the lock set, and the filter to
 * the locked tenants after the ranking; its cap joins are still the copy 0017 describes.
 *
 * No deadlock: a `claim_runs` waits for tenant locks only while holding the global lock, which
 * an arrival never takes, and an arrival holds one tenant lock and waits for nothing else.
 * Tenant locks use the two-key form (class 1651531, hashtext of the tenant id), so they never
 * collide with the one-key global lock; two tenants whose ids hash alike only share a lock.
 */
export function tenantClaimLocksMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
create or replace function brigade.lock_tenant_claims(p_tenant uuid, p_wait boolean)
  returns boolean language plpgsql volatile as $$
begin
  if pg_try_advisory_xact_lock(1651531, hashtext(p_tenant::text)) then return true; end if;
  if not p_wait then return false; end if;
  begin
    perform set_config('lock_timeout', '25ms', true);
    perform pg_advisory_xact_lock(1651531, hashtext(p_tenant::text));
    return true;
  exception when lock_not_available then
    return false;
  end;
end $$;

create or replace function brigade.claim_runs(
  p_executor text, p_limit int, p_stale interval, p_max_tenant int, p_max_user int)
  returns table (claimed_run uuid, claimed_tenant uuid, claimed_user uuid)
  language plpgsql volatile set plan_cache_mode = force_generic_plan as $$
declare
  locked uuid[];
  tenant uuid;
begin
  perform set_config('brigade.scheduler', 'on', true);
  perform pg_advisory_xact_lock(7093848255832547689);
  -- The tenants this claim may take runs of, each with a claimable entry of a user below the
  -- default user cap, below its own tenant cap (default, platform and tenant policies).
  -- Role and user policies and busy threads are left to the claim itself: a tenant they
  -- block only takes one of the 256 places until its runs finish.
  locked := array(
    with live as (
      select tenant_id, user_id from brigade.run_queue
       where state = 'claimed' and heartbeat_at >= clock_timestamp() - p_stale)
    select c.tenant_id from brigade.run_queue c
     where (c.state = 'queued'
            or (c.state = 'claimed' and c.heartbeat_at < clock_timestamp() - p_stale))
       -- (a hashed subplan: one probe per entry whatever the planner guesses of the queue)
       and (p_max_user = 0 or c.user_id not in (
             select l.user_id from live l group by l.user_id having count(*) >= p_max_user))
     group by c.tenant_id
    having (select count(*) from live l where l.tenant_id = c.tenant_id)
           < coalesce(nullif(brigade.tightest_cap(p_max_tenant,
               (select min((p.limits ->> 'concurrentRuns')::int) from brigade.policies p
                 where (p.level = 'platform' or (p.level = 'tenant' and p.tenant_id = c.tenant_id))
                   and p.limits ? 'concurrentRuns')), 0), 2147483647)
     order by min(c.enqueued_at) limit 256);
  if cardinality(locked) = 0 then return; end if;
  foreach tenant in array locked loop
    perform pg_advisory_xact_lock(1651531, hashtext(tenant::text));
  end loop;
  return query
    with live as (
      select tenant_id, user_id from brigade.run_queue
       where state = 'claimed' and heartbeat_at >= clock_timestamp() - p_stale),
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
             brigade.tightest_cap(p_max_tenant, tp.cap) as tenant_cap,
             brigade.tightest_cap(p_max_user, up.cap) as user_cap
        from brigade.run_queue c
        left join tenant_running tr on tr.tenant_id = c.tenant_id
        left join user_running ur on ur.user_id = c.user_id
        left join tenant_policy tp on tp.tenant_id = c.tenant_id
        left join user_policy up on up.user_id = c.user_id
       where c.state = 'queued'
          or (c.state = 'claimed' and c.heartbeat_at < clock_timestamp() - p_stale)),
    -- Tenants and users at their cap drop out before the costlier thread check and ranking.
    candidates as (
      select * from capped c
       where (c.tenant_cap = 0 or c.tenant_running < c.tenant_cap)
         and (c.user_cap = 0 or c.user_running < c.user_cap)
         and not exists (
           select 1 from brigade.run_queue o
            where o.thread_id = c.thread_id and o.run_id <> c.run_id
              and (o.enqueued_at < c.enqueued_at
                   or (o.state = 'claimed' and o.heartbeat_at >= clock_timestamp() - p_stale)))),
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
       where tenant_cap = 0 or tenant_slot <= tenant_cap),
    claimed as (
      update brigade.run_queue q
         set state = 'claimed', executor_id = p_executor,
             heartbeat_at = clock_timestamp(),
             first_claimed_at = coalesce(q.first_claimed_at, clock_timestamp())
       where q.run_id in (
         select c.run_id from brigade.run_queue c join ranked r on r.run_id = c.run_id
          where (c.state = 'queued'
                 or (c.state = 'claimed' and c.heartbeat_at < clock_timestamp() - p_stale))
            -- Only the tenants locked above. Filtered here, after the ranking, which is per
            -- tenant and per user, so other tenants' entries change no rank; filtering the
            -- candidates instead made the claim a third slower.
            and c.tenant_id = any(locked)
          order by r.tenant_slot, r.enqueued_at, r.run_id
          for update of c skip locked
          limit p_limit)
      returning q.run_id, q.tenant_id, q.user_id)
    select * from claimed;
end $$;

create or replace function brigade.claim_on_arrival(
  p_run uuid, p_executor text, p_stale interval, p_max_tenant int, p_max_user int)
  returns text language plpgsql volatile as $$
declare
  entry brigade.run_queue;
  caps record;
  behind boolean;
begin
  perform set_config('brigade.scheduler', 'on', true);
  select * into entry from brigade.run_queue where run_id = p_run and state = 'queued';
  if not found then return 'queued'; end if;
  behind := p_executor is null
    or exists (select 1 from brigade.run_queue o
                where o.thread_id = entry.thread_id and o.run_id <> p_run)
    or exists (select 1 from brigade.run_queue o
                where o.tenant_id = entry.tenant_id and o.state = 'queued'
                  and o.run_id <> p_run);
  caps := brigade.run_caps(entry.tenant_id, entry.user_id, p_max_tenant, p_max_user);
  if brigade.at_run_cap(entry, p_stale, caps.tenant_cap, caps.user_cap) then return 'capped'; end if;
  if behind then return 'queued'; end if;
  if not brigade.lock_tenant_claims(entry.tenant_id, true) then return 'queued'; end if;
  -- Held: every claim of this tenant committed before it is visible from here on.
  if brigade.at_run_cap(entry, p_stale, caps.tenant_cap, caps.user_cap) then return 'capped'; end if;
  update brigade.run_queue
     set state = 'claimed', executor_id = p_executor, heartbeat_at = clock_timestamp(),
         first_claimed_at = clock_timestamp()
   where run_id = p_run;
  return 'claimed';
end $$;

revoke all on function brigade.lock_tenant_claims(uuid, boolean) from public;
grant execute on function brigade.lock_tenant_claims(uuid, boolean) to ${role};
`;
}
