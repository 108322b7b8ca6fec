/**
 * Budget alerts are recorded for calendar budgets only, as documented: a rolling window has
 * no period to alert once in. `record_budget_crossings` (migration 0010) skipped only the
 * window's anchor counter (period `-infinity`), not the hourly bucket a rolling budget's spend
 * goes to, so a rolling budget recorded an alert per hour bucket it crossed a threshold in, and
 * sent `budget.threshold` webhooks for it. Now a counter of a policy whose budget is rolling
 * records nothing. Signature and grants stay as migration 0010 made them (CREATE OR REPLACE
 * keeps both).
 */
export function noRollingBudgetAlertsMigration(): string {
  return `
create or replace function brigade.record_budget_crossings(p_reservation uuid)
  returns setof brigade.budget_alerts language sql as $$
  insert into brigade.budget_alerts
    (tenant_id, policy_id, subject_id, period_start, threshold, used, limit_value)
  select c.tenant_id, c.policy_id, c.subject_id, c.period_start, t.threshold, c.used, c.limit_value
    from brigade.budget_reservations r
   cross join jsonb_to_recordset(r.counters) as k("policyId" uuid, "subjectId" uuid, "periodStart" timestamptz)
    join brigade.limit_counters c
      on c.policy_id = k."policyId" and c.kind = 'budget' and c.subject_id = k."subjectId"
     and c.period_start = k."periodStart"
    join brigade.policies p
      on p.id = c.policy_id and (p.limits -> 'budget' ->> 'period') is distinct from 'rolling'
   cross join (values (50), (80), (100)) as t(threshold)
   where r.id = p_reservation and r.status in ('settled', 'orphaned') and c.limit_value > 0
     and k."periodStart" <> '-infinity'
     and (c.used - coalesce(r.cost, 0)) * 100 < t.threshold * c.limit_value
     and c.used * 100 >= t.threshold * c.limit_value
  on conflict do nothing
  returning * $$;
`;
}
