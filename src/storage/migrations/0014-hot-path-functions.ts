import type { MigrationContext } from './migration-context.ts';

/**
 * Hot-path functions (the gateway and runs benchmarks): the three statements every metered
 * model call makes — authenticating its key, reserving its budget, settling it with its usage
 * record — and a stream's read of a run's events, as PL/pgSQL functions called through named
 * prepared statements.
 *
 * Measured (bench/RESULTS.md, gateway): the same work sent as a multi-statement simple-protocol
 * message (`BEGIN; set_config…; statement…; COMMIT`) costs PostgreSQL 0.5–0.7 ms of CPU per
 * round trip, nearly all of it parsing and planning the row-level-security queries again each
 * time; a prepared call of a function whose plans are cached per session costs ~0.07 ms.
 *
 * Each function sets its own row-level-security scope first (`set_config(…, true)`, local to the
 * implicit transaction of the one statement that calls it), then runs the same statements as
 * before under that scope: they are SECURITY INVOKER, so every policy still applies. They take
 * only ids and numbers (the usage record as JSON), never SQL.
 */
export function hotPathFunctionsMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
-- The key with this SHA-256 (hex) and its user, role and tenant status; no rows for an unknown
-- key. The hash reveals only its own key row (api_keys policy), whose tenant then scopes the read.
create function brigade.key_identity(p_hash text)
  returns table (api_key jsonb, member jsonb) language plpgsql volatile as $$
declare
  k brigade.api_keys;
begin
  perform set_config('brigade.auth_key_hash', p_hash, true);
  select * into k from brigade.api_keys where key_hash = decode(p_hash, 'hex');
  if not found then return; end if;
  perform set_config('brigade.tenant_id', k.tenant_id::text, true);
  return query
    select to_jsonb(k) - 'key_hash',
           to_jsonb(u) || jsonb_build_object('role', m.role, 'tenant_status', t.status)
      from brigade.users u
      join brigade.memberships m on m.tenant_id = u.tenant_id and m.user_id = u.id
      join brigade.tenants t on t.id = u.tenant_id
     where u.id = k.user_id;
end $$;

-- Reserves p_amount nano-USD against every budget binding the caller (reserve_limits) and holds
-- it as reservation p_id; returns reserve_limits' verdict and the reservation's id (null when
-- refused or when no budget binds).
create function brigade.reserve_call(
  p_tenant uuid, p_user uuid, p_amount bigint, p_key uuid, p_agent uuid, p_id uuid,
  p_run uuid, p_expires timestamptz)
  returns table (res jsonb, reservation_id uuid) language plpgsql volatile as $$
declare
  verdict jsonb;
  held uuid;
begin
  perform set_config('brigade.tenant_id', p_tenant::text, true),
          set_config('brigade.user_id', p_user::text, true);
  verdict := brigade.reserve_limits('budget', p_amount, false, p_key, p_agent);
  if (verdict ->> 'ok')::boolean and jsonb_array_length(verdict -> 'counters') > 0 then
    insert into brigade.budget_reservations
      (id, tenant_id, user_id, run_id, amount, counters, expires_at)
    values (p_id, p_tenant, p_user, p_run, p_amount, verdict -> 'counters', p_expires)
    returning id into held;
  end if;
  return query select verdict, held;
end $$;

-- Settles reservation p_reservation (null: none was held) to p_cost and, only if this call
-- resolved it (a reservation taken over as orphaned keeps its orphan charge), records the
-- budget thresholds it crossed and writes the usage records in p_usage. Returns the number of
-- thresholds crossed.
create function brigade.settle_call(
  p_tenant uuid, p_user uuid, p_reservation uuid, p_cost bigint, p_status text, p_usage jsonb)
  returns integer language plpgsql volatile as $$
declare
  settled boolean := true;
  crossed integer := 0;
begin
  perform set_config('brigade.tenant_id', p_tenant::text, true),
          set_config('brigade.user_id', p_user::text, true);
  if p_reservation is not null then
    settled := coalesce(brigade.resolve_reservation(p_reservation, p_cost, p_status), false);
    if settled then
      select count(*) into crossed from brigade.record_budget_crossings(p_reservation);
    end if;
  end if;
  if settled then
    insert into brigade.usage_records
      (tenant_id, user_id, key_id, agent_id, run_id, source, route, provider, model,
       input_tokens, output_tokens, cached_tokens, estimated, cost, latency_ms, ttft_ms,
       status, error_code, reservation_id)
    select p_tenant, p_user, v.key_id, v.agent_id, v.run_id, v.source, v.route, v.provider,
           v.model, v.input_tokens, v.output_tokens, v.cached_tokens, v.estimated, v.cost,
           v.latency_ms, v.ttft_ms, v.status, v.error_code, p_reservation
      from jsonb_to_recordset(p_usage) as v(
        key_id uuid, agent_id uuid, run_id uuid, source text, route text, provider text,
        model text, input_tokens int, output_tokens int, cached_tokens int, estimated boolean,
        cost bigint, latency_ms int, ttft_ms int, status text, error_code text);
  end if;
  return crossed;
end $$;

-- A run's events after p_after (a stream's read), under the reading user's scope: the
-- run_events policies decide what the user (or a tenant admin) sees.
create function brigade.read_run_events(
  p_tenant uuid, p_user uuid, p_admin boolean, p_run uuid, p_after bigint, p_limit int)
  returns setof brigade.run_events language plpgsql volatile as $$
begin
  perform set_config('brigade.tenant_id', p_tenant::text, true),
          set_config('brigade.user_id', p_user::text, true),
          set_config('brigade.tenant_admin', case when p_admin then 'on' else '' end, true);
  return query
    select * from brigade.run_events
     where run_id = p_run and seq > p_after order by seq limit p_limit;
end $$;

revoke all on function brigade.read_run_events(uuid, uuid, boolean, uuid, bigint, int) from public;
grant execute on function brigade.read_run_events(uuid, uuid, boolean, uuid, bigint, int)
  to ${role};
revoke all on function brigade.key_identity(text) from public;
revoke all on function brigade.reserve_call(uuid, uuid, bigint, uuid, uuid, uuid, uuid, timestamptz)
  from public;
revoke all on function brigade.settle_call(uuid, uuid, uuid, bigint, text, jsonb) from public;
grant execute on function brigade.key_identity(text) to ${role};
grant execute on function brigade.reserve_call(uuid, uuid, bigint, uuid, uuid, uuid, uuid, timestamptz)
  to ${role};
grant execute on function brigade.settle_call(uuid, uuid, uuid, bigint, text, jsonb) to ${role};
`;
}
