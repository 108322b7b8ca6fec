import type { MigrationContext } from './migration-context.ts';

/**
 * Guard rails: limit policies (platform, tenant, role, user, API key, agent), the counters
 * that make budgets and quotas exact under concurrency, budget reservations, and the usage
 * ledger (one record per model call).
 *
 * Exactness (DESIGN.md invariant 7) lives in `brigade.reserve_limits`: it finds every policy
 * that applies to the caller, and for each one adds the amount to its counter for the current
 * period with a conditional upsert (`used + reserved + amount <= limit`), under the counter's
 * row lock. If one counter has no room, every change of the call is undone (a savepoint) and
 * the refusal names the policy, what is left and when the period resets. Nothing is cached:
 * a policy change applies to the next call in every process.
 */
export function guardRailsMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
alter table brigade.runs add column api_key_id uuid;

create or replace function brigade.is_scheduler() returns boolean
  language sql stable parallel safe
  as $$ select coalesce(current_setting('brigade.scheduler', true), '') = 'on' $$;

create table brigade.policies (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid references brigade.tenants (id) on delete cascade,
  level text not null check (level in ('platform', 'tenant', 'role', 'user', 'api_key', 'agent')),
  role text check (role in ('owner', 'admin', 'member', 'viewer')),
  subject_id uuid,
  name text check (name is null or char_length(name) between 1 and 200),
  limits jsonb not null,
  managed_by text not null check (managed_by in ('operator', 'tenant')),
  created_by_user_id uuid,
  version int not null default 1,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  check (case level
    when 'platform' then tenant_id is null and role is null and subject_id is null
    when 'tenant' then tenant_id is not null and role is null and subject_id is null
    when 'role' then role is not null and subject_id is null
    else tenant_id is not null and role is null and subject_id is not null end)
);
create unique index policies_target on brigade.policies (
  coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid), level,
  coalesce(role, ''), coalesce(subject_id, '00000000-0000-0000-0000-000000000000'::uuid));
alter table brigade.policies enable row level security;
alter table brigade.policies force row level security;
-- Everyone in a tenant reads the policies that bind them (platform ones included); the API
-- shows the full list to admins only. The operator reads and writes every policy; in a
-- tenant, admins manage the policies admins made, never those the operator made.
create policy policies_read on brigade.policies for select
  using (tenant_id is null or tenant_id = (select brigade.current_tenant_id()) or brigade.is_operator());
create policy policies_write on brigade.policies for all
  using (brigade.is_operator()
      or (tenant_id = (select brigade.current_tenant_id()) and brigade.is_tenant_admin()
          and managed_by = 'tenant'))
  with check (brigade.is_operator()
      or (tenant_id = (select brigade.current_tenant_id()) and brigade.is_tenant_admin()
          and managed_by = 'tenant'));
-- The run scheduler reads concurrentRuns limits (and users' roles) to cap claims; both are
-- limits, never content.
create policy policies_scheduler on brigade.policies for select using (brigade.is_scheduler());
create policy memberships_scheduler on brigade.memberships for select using (brigade.is_scheduler());
grant select, insert, update, delete on brigade.policies to ${role};

-- One counter per policy, kind, subject (the tenant, user, key or agent it binds) and period.
-- Amounts: budgets in nano-USD, quotas in units.
create table brigade.limit_counters (
  tenant_id uuid not null references brigade.tenants (id) on delete cascade,
  policy_id uuid not null references brigade.policies (id) on delete cascade,
  kind text not null check (kind in ('budget', 'runs', 'tool_calls')),
  subject_id uuid not null,
  period_start timestamptz not null,
  limit_value bigint not null,
  used bigint not null default 0 check (used >= 0),
  reserved bigint not null default 0 check (reserved >= 0),
  updated_at timestamptz not null default now(),
  primary key (policy_id, kind, subject_id, period_start)
);
create index limit_counters_tenant on brigade.limit_counters (tenant_id);
alter table brigade.limit_counters enable row level security;
alter table brigade.limit_counters force row level security;
create policy limit_counters_tenant on brigade.limit_counters for all
  using (tenant_id = (select brigade.current_tenant_id()) or brigade.is_scheduler())
  with check (tenant_id = (select brigade.current_tenant_id()) or brigade.is_scheduler());
grant select, insert, update on brigade.limit_counters to ${role};

create table brigade.budget_reservations (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references brigade.tenants (id) on delete cascade,
  user_id uuid not null,
  run_id uuid,
  amount bigint not null check (amount >= 0),
  counters jsonb not null,
  status text not null default 'reserved'
    check (status in ('reserved', 'settled', 'released', 'orphaned')),
  cost bigint,
  expires_at timestamptz not null,
  created_at timestamptz not null default now(),
  resolved_at timestamptz
);
create index budget_reservations_open on brigade.budget_reservations (expires_at)
  where status = 'reserved';
create index budget_reservations_run on brigade.budget_reservations (run_id)
  where status = 'reserved';
alter table brigade.budget_reservations enable row level security;
alter table brigade.budget_reservations force row level security;
create policy budget_reservations_owner on brigade.budget_reservations for all
  using ((tenant_id = (select brigade.current_tenant_id()) and user_id = (select brigade.current_user_id()))
         or brigade.is_scheduler())
  with check ((tenant_id = (select brigade.current_tenant_id()) and user_id = (select brigade.current_user_id()))
         or brigade.is_scheduler());
grant select, insert, update on brigade.budget_reservations to ${role};

-- The usage ledger: append-only for the runtime role (no UPDATE, no DELETE).
create table brigade.usage_records (
  tenant_id uuid not null references brigade.tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  user_id uuid not null,
  key_id uuid,
  agent_id uuid,
  run_id uuid,
  source text not null check (source in ('run', 'api')),
  route text,
  provider text not null,
  model text not null,
  input_tokens int not null default 0,
  output_tokens int not null default 0,
  cached_tokens int not null default 0,
  estimated boolean not null default false,
  cost bigint not null default 0,
  latency_ms int,
  ttft_ms int,
  status text not null check (status in ('ok', 'error', 'cancelled', 'orphaned')),
  error_code text,
  reservation_id uuid,
  created_at timestamptz not null default now(),
  primary key (tenant_id, id)
);
create index usage_records_time on brigade.usage_records (tenant_id, created_at);
create index usage_records_user on brigade.usage_records (tenant_id, user_id, created_at);
alter table brigade.usage_records enable row level security;
alter table brigade.usage_records force row level security;
create policy usage_records_read on brigade.usage_records for select
  using (tenant_id = (select brigade.current_tenant_id())
         and (user_id = (select brigade.current_user_id()) or brigade.is_tenant_admin()));
create policy usage_records_insert on brigade.usage_records for insert
  with check ((tenant_id = (select brigade.current_tenant_id()) and user_id = (select brigade.current_user_id()))
              or brigade.is_scheduler());
grant select, insert on brigade.usage_records to ${role};

-- The tighter of two concurrency caps where 0 (or null) means unlimited.
create or replace function brigade.tightest_cap(a int, b int) returns int
  language sql immutable parallel safe as $$
  select case when coalesce(a, 0) = 0 then coalesce(b, 0)
              when coalesce(b, 0) = 0 then a
              else least(a, b) end $$;

-- The start of the period containing now (tenant-local calendar), and when it ends.
create or replace function brigade.limit_period(p_period text, p_tz text, p_window_hours int,
                                                out period_start timestamptz, out resets_at timestamptz)
  language sql stable as $$
  select case p_period
           when 'day' then date_trunc('day', now() at time zone p_tz) at time zone p_tz
           when 'week' then date_trunc('week', now() at time zone p_tz) at time zone p_tz
           when 'month' then date_trunc('month', now() at time zone p_tz) at time zone p_tz
           when 'rolling' then date_trunc('hour', now())
         end,
         case p_period
           when 'day' then (date_trunc('day', now() at time zone p_tz) + interval '1 day') at time zone p_tz
           when 'week' then (date_trunc('week', now() at time zone p_tz) + interval '1 week') at time zone p_tz
           when 'month' then (date_trunc('month', now() at time zone p_tz) + interval '1 month') at time zone p_tz
           when 'rolling' then date_trunc('hour', now()) + interval '1 hour'
         end $$;

-- The policies binding the current user (scope settings) for one kind, with the subject each
-- one counts against and its limit. Budget amounts are stored in nano-USD.
create or replace function brigade.binding_limits(p_kind text, p_key uuid, p_agent uuid)
  returns table (policy_id uuid, level text, subject_id uuid, limit_value bigint,
                 period text, window_hours int)
  language sql stable as $$
  select p.id, p.level,
         case when p.level in ('platform', 'tenant') then brigade.current_tenant_id()
              when p.level in ('role', 'user') then brigade.current_user_id()
              when p.level = 'api_key' then p_key
              else p_agent end,
         case p_kind when 'budget' then (p.limits -> 'budget' ->> 'amountNanos')::bigint
                     when 'runs' then (p.limits ->> 'runsPerDay')::bigint
                     else (p.limits ->> 'toolCallsPerDay')::bigint end,
         case p_kind when 'budget' then p.limits -> 'budget' ->> 'period' else 'day' end,
         case p_kind when 'budget' then coalesce((p.limits -> 'budget' ->> 'windowHours')::int, 24) else 24 end
    from brigade.policies p
   where (p.tenant_id is null or p.tenant_id = brigade.current_tenant_id())
     and p.limits ? (case p_kind when 'budget' then 'budget' when 'runs' then 'runsPerDay' else 'toolCallsPerDay' end)
     and (p.level in ('platform', 'tenant')
          or (p.level = 'role' and p.role = (select m.role from brigade.memberships m
                                              where m.tenant_id = brigade.current_tenant_id()
                                                and m.user_id = brigade.current_user_id()))
          or (p.level = 'user' and p.subject_id = brigade.current_user_id())
          or (p.level = 'api_key' and p.subject_id = p_key)
          or (p.level = 'agent' and p.subject_id = p_agent))
   order by p.id $$;

-- Adds p_amount to every binding counter of p_kind for the current period: to 'reserved'
-- (p_settle false: a budget reservation, settled later) or straight to 'used' (a quota).
-- All or nothing. Returns {"ok":true,"counters":[...]} or {"ok":false,...the refusing policy}.
create or replace function brigade.reserve_limits(p_kind text, p_amount bigint, p_settle boolean,
                                                  p_key uuid, p_agent uuid)
  returns jsonb language plpgsql as $$
declare
  tz text;
  b record;
  per record;
  counters jsonb := '[]'::jsonb;
  taken bigint;
  refused jsonb;
begin
  select t.time_zone into tz from brigade.tenants t where t.id = brigade.current_tenant_id();
  if tz is null then raise exception 'no tenant in scope'; end if;
  begin
    for b in select * from brigade.binding_limits(p_kind, p_key, p_agent) loop
      if b.subject_id is null then continue; end if;
      select * into per from brigade.limit_period(b.period, tz, b.window_hours);
      if b.period = 'rolling' then
        -- Rolling windows: the policy's anchor row serialises callers; the window's hourly
        -- buckets are summed under that lock.
        insert into brigade.limit_counters (tenant_id, policy_id, kind, subject_id, period_start, limit_value)
        values (brigade.current_tenant_id(), b.policy_id, p_kind, b.subject_id, '-infinity', b.limit_value)
        on conflict (policy_id, kind, subject_id, period_start)
          do update set limit_value = excluded.limit_value;
        perform 1 from brigade.limit_counters c
         where c.policy_id = b.policy_id and c.kind = p_kind and c.subject_id = b.subject_id
           and c.period_start = '-infinity' for update;
        select coalesce(sum(c.used + c.reserved), 0) into taken from brigade.limit_counters c
         where c.policy_id = b.policy_id and c.kind = p_kind and c.subject_id = b.subject_id
           and c.period_start > now() - make_interval(hours => b.window_hours);
        if taken + p_amount > b.limit_value then
          refused := jsonb_build_object('ok', false, 'policyId', b.policy_id, 'level', b.level,
            'limit', b.limit_value, 'taken', taken, 'period', b.period,
            'resetsAt', (select min(c.period_start) + make_interval(hours => b.window_hours)
                           from brigade.limit_counters c
                          where c.policy_id = b.policy_id and c.kind = p_kind and c.subject_id = b.subject_id
                            and c.period_start > now() - make_interval(hours => b.window_hours)
                            and c.used + c.reserved > 0));
          raise exception using errcode = 'BRG01';
        end if;
        insert into brigade.limit_counters as c
          (tenant_id, policy_id, kind, subject_id, period_start, limit_value, used, reserved)
        values (brigade.current_tenant_id(), b.policy_id, p_kind, b.subject_id, per.period_start,
                b.limit_value, case when p_settle then p_amount else 0 end,
                case when p_settle then 0 else p_amount end)
        on conflict (policy_id, kind, subject_id, period_start) do update
          set used = c.used + excluded.used, reserved = c.reserved + excluded.reserved,
              limit_value = excluded.limit_value, updated_at = now();
      else
        insert into brigade.limit_counters as c
          (tenant_id, policy_id, kind, subject_id, period_start, limit_value, used, reserved)
        select brigade.current_tenant_id(), b.policy_id, p_kind, b.subject_id, per.period_start,
               b.limit_value, case when p_settle then p_amount else 0 end,
               case when p_settle then 0 else p_amount end
         where p_amount <= b.limit_value
        on conflict (policy_id, kind, subject_id, period_start) do update
          set used = c.used + excluded.used, reserved = c.reserved + excluded.reserved,
              limit_value = excluded.limit_value, updated_at = now()
          where c.used + c.reserved + p_amount <= excluded.limit_value
        returning c.used + c.reserved into taken;
        if not found then
          select c.used + c.reserved into taken from brigade.limit_counters c
           where c.policy_id = b.policy_id and c.kind = p_kind and c.subject_id = b.subject_id
             and c.period_start = per.period_start;
          refused := jsonb_build_object('ok', false, 'policyId', b.policy_id, 'level', b.level,
            'limit', b.limit_value, 'taken', coalesce(taken, 0), 'period', b.period,
            'resetsAt', per.resets_at, 'subjectId', b.subject_id, 'periodStart', per.period_start);
          raise exception using errcode = 'BRG01';
        end if;
      end if;
      counters := counters || jsonb_build_array(jsonb_build_object(
        'policyId', b.policy_id, 'subjectId', b.subject_id, 'periodStart', per.period_start));
    end loop;
  exception when sqlstate 'BRG01' then
    -- The block is a savepoint: every counter it changed is back as it was.
    return refused;
  end;
  return jsonb_build_object('ok', true, 'counters', counters);
end $$;

-- Settles (p_cost not null) or releases (p_cost null) an open reservation: its amount leaves
-- 'reserved', the cost enters 'used'. Returns false when it was already resolved.
create or replace function brigade.resolve_reservation(p_id uuid, p_cost bigint, p_status text)
  returns boolean language plpgsql as $$
declare
  r record;
begin
  update brigade.budget_reservations
     set status = p_status, cost = coalesce(p_cost, 0), resolved_at = now()
   where id = p_id and status = 'reserved'
  returning * into r;
  if not found then return false; end if;
  update brigade.limit_counters c
     set reserved = greatest(c.reserved - r.amount, 0),
         used = c.used + coalesce(p_cost, 0), updated_at = now()
    from jsonb_to_recordset(r.counters) as k("policyId" uuid, "subjectId" uuid, "periodStart" timestamptz)
   where c.policy_id = k."policyId" and c.kind = 'budget' and c.subject_id = k."subjectId"
     and c.period_start = k."periodStart";
  return true;
end $$;

revoke all on all functions in schema brigade from public;
grant execute on all functions in schema brigade to ${role};
`;
}
