import type { MigrationContext } from './migration-context.ts';

/**
 * Graceful degradation and budget alerts: an agent can switch to a cheaper model past a share
 * of its budget and answer with what it has at its deadline; budgets report crossing 50, 80
 * and 100 % once per period, to signed webhooks that are retried from an outbox.
 */
export function degradationWebhooksMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
alter table brigade.agents
  add column degrade_at_percent int check (degrade_at_percent between 1 and 100),
  add column degrade_model text,
  add column on_deadline text not null default 'fail' check (on_deadline in ('fail', 'partial')),
  add constraint agents_degrade_pair check ((degrade_at_percent is null) = (degrade_model is null));
alter table brigade.runs
  add column incomplete_reason text,
  add column degraded boolean not null default false;

-- The largest share (0–1) of any budget binding the current user that is used or reserved.
create or replace function brigade.budget_utilization(p_key uuid, p_agent uuid)
  returns double precision language sql stable as $$
  select coalesce(max((coalesce(c.used, 0) + coalesce(c.reserved, 0))::double precision
                      / nullif(b.limit_value, 0)), 0)
    from brigade.binding_limits('budget', p_key, p_agent) b
   cross join lateral brigade.limit_period(
     b.period, (select time_zone from brigade.tenants where id = brigade.current_tenant_id()),
     b.window_hours) per
    left join lateral (
      select sum(c.used) as used, sum(c.reserved) as reserved from brigade.limit_counters c
       where c.policy_id = b.policy_id and c.kind = 'budget' and c.subject_id = b.subject_id
         and (case when b.period = 'rolling'
                   then c.period_start > now() - make_interval(hours => b.window_hours)
                   else c.period_start = per.period_start end)) c on true $$;

-- One row per budget, subject, period and threshold crossed: alerts are sent once.
create table brigade.budget_alerts (
  tenant_id uuid not null references brigade.tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  policy_id uuid not null references brigade.policies (id) on delete cascade,
  subject_id uuid not null,
  period_start timestamptz not null,
  threshold int not null check (threshold in (50, 80, 100)),
  used bigint not null,
  limit_value bigint not null,
  created_at timestamptz not null default now(),
  -- Set once the delivery worker queued its webhooks.
  announced_at timestamptz,
  primary key (tenant_id, id),
  unique (policy_id, subject_id, period_start, threshold)
);
create index budget_alerts_unannounced on brigade.budget_alerts (created_at) where announced_at is null;
alter table brigade.budget_alerts enable row level security;
alter table brigade.budget_alerts force row level security;
create policy budget_alerts_tenant on brigade.budget_alerts for all
  using (tenant_id = (select brigade.current_tenant_id()) or brigade.is_scheduler())
  with check (tenant_id = (select brigade.current_tenant_id()) or brigade.is_scheduler());
grant select, insert, update on brigade.budget_alerts to ${role};

-- After a reservation settled: the thresholds its cost made a calendar budget cross, recorded
-- once (the unique key), returned for the caller to announce.
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
   cross join (values (50), (80), (100)) as t(threshold)
   where r.id = p_reservation and r.status in ('settled', 'orphaned') and c.limit_value > 0
     and k."periodStart" <> '-infinity'
     and (c.used - coalesce(r.cost, 0)) * 100 < t.threshold * c.limit_value
     and c.used * 100 >= t.threshold * c.limit_value
  on conflict do nothing
  returning * $$;

create table brigade.webhook_endpoints (
  tenant_id uuid not null references brigade.tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  url text not null check (char_length(url) <= 2000),
  events text[] not null,
  secret text not null,
  description text,
  enabled boolean not null default true,
  created_by_user_id uuid,
  created_at timestamptz not null default now(),
  primary key (tenant_id, id),
  unique (id)
);
alter table brigade.webhook_endpoints enable row level security;
alter table brigade.webhook_endpoints force row level security;
-- Admins manage their tenant's endpoints; the delivery worker (scheduler scope) reads them.
create policy webhook_endpoints_admin on brigade.webhook_endpoints for all
  using (tenant_id = (select brigade.current_tenant_id()) and brigade.is_tenant_admin())
  with check (tenant_id = (select brigade.current_tenant_id()) and brigade.is_tenant_admin());
create policy webhook_endpoints_worker on brigade.webhook_endpoints for select
  using (brigade.is_scheduler());
grant select, insert, update, delete on brigade.webhook_endpoints to ${role};

-- The outbox: one row per event and endpoint, retried until delivered or given up.
create table brigade.webhook_deliveries (
  tenant_id uuid not null references brigade.tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  endpoint_id uuid not null references brigade.webhook_endpoints (id) on delete cascade,
  event_type text not null,
  payload jsonb not null,
  status text not null default 'pending' check (status in ('pending', 'delivered', 'failed')),
  attempts int not null default 0,
  next_attempt_at timestamptz not null default now(),
  last_status int,
  last_error text,
  created_at timestamptz not null default now(),
  delivered_at timestamptz,
  primary key (tenant_id, id),
  unique (id)
);
create index webhook_deliveries_due on brigade.webhook_deliveries (next_attempt_at)
  where status = 'pending';
alter table brigade.webhook_deliveries enable row level security;
alter table brigade.webhook_deliveries force row level security;
create policy webhook_deliveries_tenant on brigade.webhook_deliveries for all
  using ((tenant_id = (select brigade.current_tenant_id()) and brigade.is_tenant_admin())
         or brigade.is_scheduler())
  with check ((tenant_id = (select brigade.current_tenant_id()) and brigade.is_tenant_admin())
         or brigade.is_scheduler());
grant select, insert, update on brigade.webhook_deliveries to ${role};

-- Only these two: a blanket grant would also hand out functions earlier migrations withheld
-- (the audit chain's SECURITY DEFINER trigger function).
revoke all on function brigade.budget_utilization(uuid, uuid) from public;
revoke all on function brigade.record_budget_crossings(uuid) from public;
grant execute on function brigade.budget_utilization(uuid, uuid) to ${role};
grant execute on function brigade.record_budget_crossings(uuid) to ${role};
`;
}
