import type { MigrationContext } from './migration-context.ts';

/**
 * A limit's counter is keyed by the start of its period, which depends on the tenant's time
 * zone and the policy's period. Changing either started a new, empty counter: a tenant owner
 * could lift an operator's daily budget or run quota by changing the tenant's time zone (each
 * change gave a fresh day), and a budget changed from `day` to `month` forgot the month's spend.
 *
 * `carry_limit_counters` is called in the transaction that makes such a change. For every
 * counter affected, the counter of the current period under the new settings gets at least
 * what was used and reserved in every counter whose period (under the old settings) overlaps
 * it: spent money and taken quota carry into the new period, never less. Partial overlaps
 * count whole (a change can only make limits stricter for the period it happens in), and a
 * reservation still open counts as spent (its settlement goes to its old counter).
 *
 * - `p_old_zone` (a tenant's time zone changed): every calendar counter of the tenant (`day`,
 *   `week`, `month`; rolling windows do not depend on the zone).
 * - `p_old_period` (a budget policy's period changed; the policy row already has the new one):
 *   the budget counters of `p_policy`, in every tenant it binds.
 *
 * It reads and writes counters of every user of the tenant, so it runs under the scheduler's
 * scope, and under each user's own scope for a user's counter (the owner trigger of migration
 * 0029 refuses to create one otherwise); the caller's settings are restored before it returns.
 * Calls in flight at the moment of the change that reserve afterwards under the old settings
 * still count on the old counter (at most those calls).
 */
export function carryLimitCountersMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
-- When the period that began at p_start ends (tenant-local calendar; hours for rolling).
create or replace function brigade.limit_period_end(p_start timestamptz, p_period text, p_tz text)
  returns timestamptz language sql stable as $$
  select case p_period
           when 'day' then ((p_start at time zone p_tz) + interval '1 day') at time zone p_tz
           when 'week' then ((p_start at time zone p_tz) + interval '1 week') at time zone p_tz
           when 'month' then ((p_start at time zone p_tz) + interval '1 month') at time zone p_tz
           else p_start + interval '1 hour'
         end $$;

create or replace function brigade.carry_limit_counters(p_tenant uuid, p_policy uuid,
                                                        p_old_zone text, p_old_period text)
  returns int language plpgsql as $$
declare
  saved_scheduler text := coalesce(current_setting('brigade.scheduler', true), '');
  saved_user text := coalesce(current_setting('brigade.user_id', true), '');
  g record;
  counter_user text;
  carried int := 0;
begin
  perform set_config('brigade.scheduler', 'on', true);
  for g in
    select k.tenant_id, k.policy_id, k.kind, k.subject_id, k.user_id, now_period.period_start as target,
           sum(k.used + k.reserved) as total, max(k.limit_value) as limit_value
      from brigade.limit_counters k
      join brigade.policies p on p.id = k.policy_id
      join brigade.tenants t on t.id = k.tenant_id
      cross join lateral (
        select case k.kind when 'budget' then p.limits -> 'budget' ->> 'period' else 'day' end as period
      ) np
      cross join lateral brigade.limit_period(np.period, t.time_zone, null) now_period
     where (p_tenant is null or k.tenant_id = p_tenant)
       and (p_policy is null or k.policy_id = p_policy)
       and (case when p_old_period is not null then k.kind = 'budget'
                 else np.period <> 'rolling' end)
       and k.period_start <= now()
       and brigade.limit_period_end(k.period_start, coalesce(p_old_period, np.period),
                                    coalesce(p_old_zone, t.time_zone)) > now_period.period_start
     group by 1, 2, 3, 4, 5, 6
  loop
    counter_user := coalesce(g.user_id::text, '');
    perform set_config('brigade.user_id', counter_user, true);
    insert into brigade.limit_counters as c
      (tenant_id, policy_id, kind, subject_id, period_start, limit_value, used)
    values (g.tenant_id, g.policy_id, g.kind, g.subject_id, g.target, g.limit_value, g.total)
    on conflict (policy_id, kind, subject_id, period_start) do update
      set used = greatest(c.used, excluded.used - c.reserved), updated_at = now();
    carried := carried + 1;
  end loop;
  perform set_config('brigade.scheduler', saved_scheduler, true);
  perform set_config('brigade.user_id', saved_user, true);
  return carried;
end $$;

revoke all on function brigade.limit_period_end(timestamptz, text, text) from public;
revoke all on function brigade.carry_limit_counters(uuid, uuid, text, text) from public;
grant execute on function brigade.limit_period_end(timestamptz, text, text) to ${role};
grant execute on function brigade.carry_limit_counters(uuid, uuid, text, text) to ${role};
`;
}
