import type { MigrationContext } from './migration-context.ts';

/**
 * Budget counters are locked in one order by every writer, and a carry moves reservations.
 *
 * A tenant's time-zone change (or a budget's period change) under traffic answered 503 to the
 * change and to other users' model calls: `carry_limit_counters` locked counters policy by
 * policy while a settlement (`resolve_reservation`) locked its reservation row and then its
 * counters in whatever order one UPDATE met them, so the two could wait on each other
 * (deadlock, 40P01). Now every writer takes counter locks in the order (policy, kind, subject,
 * period start) and reservation rows after them:
 * - `reserve_limits` already did (one counter per policy, binding policies in id order; a
 *   rolling window's anchor row, period `-infinity`, before its hour), and inserts the
 *   reservation after;
 * - `resolve_reservation` reads the reservation, locks its counters in that order, then
 *   resolves the reservation and updates the counters;
 * - `carry_limit_counters` locks each group's counters, old periods and the new one, in
 *   period order, and rewrites the open reservations once every counter is done.
 *
 * And a carry moves an open reservation as a reservation: it moved `used + reserved` into the
 * new period's `used`, so every call in flight was charged its worst case on top of its real
 * cost (a $0.50 call counted $7.20; toggling back and forth counted it again), `used` parted
 * from the usage ledger, and a user could be locked out with little spent. Now `used` moves to
 * `used` and `reserved` to `reserved`, and each open reservation that named a moved counter
 * names the new one, so its settlement releases the reservation and adds the real cost there.
 */
export function limitCounterLockOrderMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
create or replace function brigade.resolve_reservation(p_id uuid, p_cost bigint, p_status text)
  returns boolean language plpgsql as $$
declare
  r record;
begin
  select * into r from brigade.budget_reservations where id = p_id and status = 'reserved';
  if not found then return false; end if;
  -- Counters first, in the order every writer takes them; the reservation row after.
  perform 1
     from brigade.limit_counters c
     join jsonb_to_recordset(r.counters) as k("policyId" uuid, "subjectId" uuid, "periodStart" timestamptz)
       on c.policy_id = k."policyId" and c.kind = 'budget' and c.subject_id = k."subjectId"
      and c.period_start = k."periodStart"
    order by c.policy_id, c.kind, c.subject_id, c.period_start
      for update of c;
  update brigade.budget_reservations
     set status = p_status, cost = coalesce(p_cost, 0), resolved_at = now()
   where id = p_id and status = 'reserved'
  returning * into r;
  if not found then return false; end if;
  -- r is the row as resolved: a carry that committed meanwhile may have moved its counters.
  update brigade.limit_counters c
     set reserved = greatest(c.reserved - r.amount, 0),
         used = c.used + coalesce(p_cost, 0), updated_at = now()
    from jsonb_to_recordset(r.counters) as k("policyId" uuid, "subjectId" uuid, "periodStart" timestamptz)
   where c.policy_id = k."policyId" and c.kind = 'budget' and c.subject_id = k."subjectId"
     and c.period_start = k."periodStart";
  return true;
end $$;

create or replace function brigade.carry_limit_counters(p_tenant uuid, p_policy uuid,
                                                        p_old_zone text, p_old_period text)
  returns int language plpgsql as $$
declare
  saved_scheduler text := coalesce(current_setting('brigade.scheduler', true), '');
  saved_user text := coalesce(current_setting('brigade.user_id', true), '');
  g record;
  counter_user text;
  moved_used bigint;
  moved_reserved bigint;
  groups int := 0;
  moves jsonb := '[]'::jsonb;
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
                 then k.period_start <= now() - np.window_length
                      and old.ends > now() - np.window_length
                 else old.ends > now_period.period_start end)
       and (k.user_id is not null or p.level not in ('role', 'user', 'api_key'))
     group by 1, 2, 3, 4, 5, 6
     -- The order every writer locks counters in: policy, kind, subject (then period).
     order by 2, 3, 4
  loop
    continue when g.sources is null;
    counter_user := coalesce(g.user_id::text, '');
    perform set_config('brigade.user_id', counter_user, true);
    -- The group's counters, the new period's among them, locked in period order.
    perform 1 from brigade.limit_counters c
      where c.policy_id = g.policy_id and c.kind = g.kind and c.subject_id = g.subject_id
        and (c.period_start = any(g.sources) or c.period_start = g.target)
      order by c.period_start for update;
    select coalesce(sum(c.used), 0), coalesce(sum(c.reserved), 0)
      into moved_used, moved_reserved
      from brigade.limit_counters c
     where c.policy_id = g.policy_id and c.kind = g.kind and c.subject_id = g.subject_id
       and c.period_start = any(g.sources);
    update brigade.limit_counters c set used = 0, reserved = 0, updated_at = now()
     where c.policy_id = g.policy_id and c.kind = g.kind and c.subject_id = g.subject_id
       and c.period_start = any(g.sources);
    insert into brigade.limit_counters as c
      (tenant_id, policy_id, kind, subject_id, period_start, limit_value, used, reserved)
    values (g.tenant_id, g.policy_id, g.kind, g.subject_id, g.target, g.limit_value,
            moved_used, moved_reserved)
    on conflict (policy_id, kind, subject_id, period_start) do update
      set used = c.used + excluded.used, reserved = c.reserved + excluded.reserved,
          updated_at = now();
    if g.kind = 'budget' and moved_reserved > 0 then
      moves := moves || jsonb_build_array(jsonb_build_object(
        'tenant', g.tenant_id, 'policy', g.policy_id, 'subject', g.subject_id,
        'sources', to_jsonb(g.sources), 'target', g.target));
    end if;
    groups := groups + 1;
  end loop;
  -- Open reservations on a moved counter name the new one (after every counter lock, as a
  -- settlement takes them): their settlement releases the reservation there.
  if jsonb_array_length(moves) > 0 then
    update brigade.budget_reservations r
       set counters = (
         select jsonb_agg(
                  case when exists (
                         select 1 from jsonb_array_elements(moves) m
                          where (m ->> 'policy')::uuid = (e ->> 'policyId')::uuid
                            and (m ->> 'subject')::uuid = (e ->> 'subjectId')::uuid
                            and (e ->> 'periodStart')::timestamptz in (
                                  select s::timestamptz
                                    from jsonb_array_elements_text(m -> 'sources') s))
                       then jsonb_set(e, '{periodStart}', to_jsonb((
                         select (m ->> 'target')::timestamptz
                           from jsonb_array_elements(moves) m
                          where (m ->> 'policy')::uuid = (e ->> 'policyId')::uuid
                            and (m ->> 'subject')::uuid = (e ->> 'subjectId')::uuid
                          limit 1)))
                       else e end
                  order by n)
           from jsonb_array_elements(r.counters) with ordinality as x(e, n))
     where r.status = 'reserved'
       and r.tenant_id in (select (m ->> 'tenant')::uuid from jsonb_array_elements(moves) m)
       and exists (
         select 1 from jsonb_array_elements(r.counters) e, jsonb_array_elements(moves) m
          where (m ->> 'policy')::uuid = (e ->> 'policyId')::uuid
            and (m ->> 'subject')::uuid = (e ->> 'subjectId')::uuid
            and (e ->> 'periodStart')::timestamptz in (
                  select s::timestamptz from jsonb_array_elements_text(m -> 'sources') s));
  end if;
  perform set_config('brigade.scheduler', saved_scheduler, true);
  perform set_config('brigade.user_id', saved_user, true);
  return groups;
end $$;

revoke all on function brigade.resolve_reservation(uuid, bigint, text) from public;
revoke all on function brigade.carry_limit_counters(uuid, uuid, text, text) from public;
grant execute on function brigade.resolve_reservation(uuid, bigint, text) to ${role};
grant execute on function brigade.carry_limit_counters(uuid, uuid, text, text) to ${role};
`;
}
