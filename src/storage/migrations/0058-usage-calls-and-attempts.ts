/**
 * Usage records tell calls from attempts. A routed call that retried or fell back wrote a record
 * per failed attempt (cost 0, its failure class) besides the call's own record, and a report
 * counted them all as requests and errors: two successful calls after six failed attempts read
 * as eight requests and six errors. `kind` says which a record is (`call`: the call's own record,
 * its final status, total latency and cost; `attempt`: a failed attempt before it), and a
 * call's record counts the deployments it tried in `attempts`. Existing records are calls (the
 * attempt records before this migration cannot be told apart: they stay counted as calls).
 * `settle_call` reads both from its usage JSON; its signature and grants stay as migration 0014
 * made them (CREATE OR REPLACE keeps both).
 */
export function usageCallsAndAttemptsMigration(): string {
  return `
alter table brigade.usage_records
  add column kind text not null default 'call' check (kind in ('call', 'attempt')),
  add column attempts smallint check (attempts is null or attempts >= 0);

create or replace function brigade.settle_call(
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
       status, error_code, reservation_id, kind, attempts)
    select p_tenant, p_user, v.key_id, v.agent_id, v.run_id, v.source, v.route, v.provider,
           v.model, v.input_tokens, v.output_tokens, v.cached_tokens, v.estimated, v.cost,
           v.latency_ms, v.ttft_ms, v.status, v.error_code, p_reservation,
           coalesce(v.kind, 'call'), v.attempts
      from jsonb_to_recordset(p_usage) as v(
        key_id uuid, agent_id uuid, run_id uuid, source text, route text, provider text,
        model text, input_tokens int, output_tokens int, cached_tokens int, estimated boolean,
        cost bigint, latency_ms int, ttft_ms int, status text, error_code text, kind text,
        attempts smallint);
  end if;
  return crossed;
end $$;
`;
}
