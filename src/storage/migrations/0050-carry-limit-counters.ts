import type { MigrationContext } from './migration-context.ts';

/**
 * A limit's counter is keyed by the start of its period, which depends on the tenant's time
 * zone and the policy's period. Changing either started a new, empty counter: a tenant owner
 * could lift an operator's daily budget or run quota by changing the tenant's time zone (each
 * change gave a fresh day), and a budget changed from `day` to `month` forgot the month's spend.
 *
 * `carry_limit_counters` is called in the transaction that makes such a change. For every
 * counter affected, what was used and reserved in every counter whose period (under the old
 * settings) overlaps the current period under the new settings is *moved* into that period's
 * counter: the old counters are zeroed, so a later change (a zone toggled back, a period
 * changed twice) moves each spend on once and never counts it twice. Partial overlaps count
 * whole (a change can only make the period it happens in stricter), and a reservation still
 * open counts as spent (its settlement later lands on its old counter, which a further change
 * would move again: an in-flight call's cost can be counted twice, never missed). A rolling
 * window's sum reads every counter that starts inside the window, so for a rolling target only
 * counters that start before the window and reach into it are moved (into the current hour's).
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
  moved bigint;
  groups int := 0;
begin
  perform set_config('brigade.scheduler', 'on', true);
  for g in
    select k.tenant_id, k.policy_id, k.kind, k.subject_id, k.user_id,
           now_period.period_start as target,
           array_agg(k.period_start) filter (where k.period_start <> now_period.period_start)
             as sources,
           max(k.limit_value) as limit_value
      from brigade.limit_counters k
      join brigade.policies p on p.id = k.policy_id
      join brigade.tenants t on t.id = k.tenant_id
      cross join lateral (
        select case k.kind when 'budget' then p.limits -> 'budget' ->> 'period' else 'day' end
                 as period,
               make_interval(hours => coalesce((p.limits -> 'budget' ->> 'windowHours')::int, 24))
                 as window_length
      ) np
      cross join lateral brigade.limit_period(np.period, t.time_zone, null) now_period
      cross join lateral (
        select brigade.limit_period_end(k.period_start, coalesce(p_old_period, np.period),
                                        coalesce(p_old_zone, t.time_zone)) as ends
      ) old
     where (p_tenant is null or k.tenant_id = p_tenant)
       and (p_policy is null or k.policy_id = p_policy)
       and (case when p_old_period is not null then k.kind = 'budget'
                 else np.period <> 'rolling' end)
       and k.period_start > '-infinity' and k.period_start <= now()
       and (case when np.period = 'rolling'
                 -- The window's sum reads every counter that starts inside it: moved are
                 -- those that start before it and reach into it.
                 then k.period_start <= now() - np.window_length
                      and old.ends > now() - np.window_length
                 else old.ends > now_period.period_start end)
       -- A user's counter without its user (a key gone before migration 0029) is skipped.
       and (k.user_id is not null or p.level not in ('role', 'user', 'api_key'))
     group by 1, 2, 3, 4, 5, 6
     -- The order reserve_limits locks counters in (policy id first).
     order by 2, 3, 4
  loop
    continue when g.sources is null;
    counter_user := coalesce(g.user_id::text, '');
    perform set_config('brigade.user_id', counter_user, true);
    select coalesce(sum(s.used + s.reserved), 0) into moved
      from (select c.used, c.reserved from brigade.limit_counters c
             where c.policy_id = g.policy_id and c.kind = g.kind and c.subject_id = g.subject_id
               and c.period_start = any(g.sources)
             order by c.period_start for update) s;
    update brigade.limit_counters c set used = 0, reserved = 0, updated_at = now()
     where c.policy_id = g.policy_id and c.kind = g.kind and c.subject_id = g.subject_id
       and c.period_start = any(g.sources);
    insert into brigade.limit_counters as c
      (tenant_id, policy_id, kind, subject_id, period_start, limit_value, used)
    values (g.tenant_id, g.policy_id, g.kind, g.subject_id, g.target, g.limit_value, moved)
    on conflict (policy_id, kind, subject_id, period_start) do update
      set used = c.used + excluded.used, updated_at = now();
    groups := groups + 1;
  end loop;
  perform set_config('brigade.scheduler', saved_scheduler, true);
  perform set_config('brigade.user_id', saved_user, true);
  return groups;
end $$;

revoke all on function brigade.limit_period_end(timestamptz, text, text) from public;
revoke all on function brigade.carry_limit_counters(uuid, uuid, text, text) from public;
grant execute on function brigade.limit_period_end(timestamptz, text, text) to ${role};
grant execute on function brigade.carry_limit_counters(uuid, uuid, text, text) to ${role};
`;
}
