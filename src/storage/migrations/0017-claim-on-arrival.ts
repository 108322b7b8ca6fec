import type { MigrationContext } from './migration-context.ts';

/**
 * Claim on arrival (the fairness benchmark): a run created while the creating process has a free
 * executor slot is claimed by that process in the transaction that creates it, instead of being
 * queued and then claimed by the next `claim_runs` a wake-up triggers. Such a run never waits in
 * the queue, however long other tenants' queues are.
 *
 * `claim_on_arrival` makes the checks `claim_runs` makes for this one entry, under the same
 * advisory lock, so the caps stay exact across processes; it only *tries* the lock, and when a
 * claim holds it the run is queued as before. It claims only a run whose tenant has no other
 * queued entry and whose thread has no other entry, so the order inside a tenant (interactive
 * first, users taking turns, one run per thread) is still the scheduler's. Called in the same
 * statement as `create_run` (see src/storage/runs/run-store.ts), so it is one round trip and
 * one transaction with it.
 */
export function claimOnArrivalMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
-- The concurrentRuns caps of a tenant and of one of its users, as claim_runs computes them:
-- the configured defaults (0 = unlimited) and the policies, the tightest winning. claim_runs
-- keeps its own set-based copy of these joins: calling this per waiting (tenant, user) pair
-- made its claim three times slower on the fairness benchmark's backlog (12 -> 36 ms), so a
-- change to how caps are read must be made in both (test/policies.test.ts caps claims by a
-- concurrentRuns policy, test/fair-scheduling.test.ts caps arrivals by one).
create function brigade.run_caps(
  p_tenant uuid, p_user uuid, p_max_tenant int, p_max_user int,
  out tenant_cap int, out user_cap int)
  language sql stable as $$
  select brigade.tightest_cap(p_max_tenant,
           (select min((p.limits ->> 'concurrentRuns')::int) from brigade.policies p
             where (p.level = 'platform' or (p.level = 'tenant' and p.tenant_id = p_tenant))
               and p.limits ? 'concurrentRuns')),
         brigade.tightest_cap(p_max_user,
           (select min((p.limits ->> 'concurrentRuns')::int)
              from brigade.memberships m
              join brigade.policies p
                on (p.tenant_id is null or p.tenant_id = m.tenant_id)
               and ((p.level = 'role' and p.role = m.role)
                    or (p.level = 'user' and p.subject_id = m.user_id))
             where m.tenant_id = p_tenant and m.user_id = p_user
               and p.limits ? 'concurrentRuns'))
$$;

-- Whether the tenant or the user of a queue entry has as many live claims as its cap.
create function brigade.at_run_cap(p_entry brigade.run_queue, p_stale interval,
                                   p_tenant_cap int, p_user_cap int)
  returns boolean language sql stable as $$
  select (p_tenant_cap > 0
          and (select count(*) from brigade.run_queue o
                where o.tenant_id = p_entry.tenant_id and o.state = 'claimed'
                  and o.heartbeat_at >= clock_timestamp() - p_stale) >= p_tenant_cap)
      or (p_user_cap > 0
          and (select count(*) from brigade.run_queue o
                where o.tenant_id = p_entry.tenant_id and o.user_id = p_entry.user_id
                  and o.state = 'claimed'
                  and o.heartbeat_at >= clock_timestamp() - p_stale) >= p_user_cap)
$$;

-- Claims the just-created run p_run for p_executor when nothing would make claim_runs pass it
-- over or queue it behind another entry. Returns what happened, which also tells the caller
-- whether a claim elsewhere could take the run now (a wake-up is worth sending):
--   'claimed'  claimed for p_executor;
--   'capped'   its tenant or user is at a concurrency cap: only a finishing run frees a slot;
--   'queued'   anything else (no free slot here, a backlog, a busy thread, the claim lock).
-- The cheap refusals come before the claim lock, so the creates of a tenant at its cap or with
-- a backlog never take it; the caps are checked again once it is held. The lock is waited for
-- briefly (a claim holds it for a few milliseconds), not only tried: under load it is rarely
-- free at the very moment a create asks.
create function brigade.claim_on_arrival(
  p_run uuid, p_executor text, p_stale interval, p_max_tenant int, p_max_user int)
  returns text language plpgsql volatile as $$
declare
  entry brigade.run_queue;
  caps record;
begin
  if p_executor is null then return 'queued'; end if;
  perform set_config('brigade.scheduler', 'on', true);
  select * into entry from brigade.run_queue where run_id = p_run and state = 'queued';
  if not found then return 'queued'; end if;
  if exists (select 1 from brigade.run_queue o
              where o.thread_id = entry.thread_id and o.run_id <> p_run)
     or exists (select 1 from brigade.run_queue o
                 where o.tenant_id = entry.tenant_id and o.state = 'queued'
                   and o.run_id <> p_run) then
    return 'queued';
  end if;
  caps := brigade.run_caps(entry.tenant_id, entry.user_id, p_max_tenant, p_max_user);
  if brigade.at_run_cap(entry, p_stale, caps.tenant_cap, caps.user_cap) then return 'capped'; end if;
  if not pg_try_advisory_xact_lock(7093848255832547689) then
    begin
      perform set_config('lock_timeout', '25ms', true);
      perform pg_advisory_xact_lock(7093848255832547689);
    exception when lock_not_available then
      return 'queued';
    end;
  end if;
  -- Held: every claim committed before it is visible to the statements from here on.
  if brigade.at_run_cap(entry, p_stale, caps.tenant_cap, caps.user_cap) then return 'capped'; end if;
  update brigade.run_queue
     set state = 'claimed', executor_id = p_executor, heartbeat_at = clock_timestamp(),
         first_claimed_at = clock_timestamp()
   where run_id = p_run;
  return 'claimed';
end $$;

revoke all on function brigade.run_caps(uuid, uuid, int, int) from public;
grant execute on function brigade.run_caps(uuid, uuid, int, int) to ${role};
revoke all on function brigade.at_run_cap(brigade.run_queue, interval, int, int) from public;
grant execute on function brigade.at_run_cap(brigade.run_queue, interval, int, int) to ${role};
revoke all on function brigade.claim_on_arrival(uuid, text, interval, int, int) from public;
grant execute on function brigade.claim_on_arrival(uuid, text, interval, int, int) to ${role};
`;
}
