import type { MigrationContext } from './migration-context.ts';

/**
 * A run remembers the trace of the request that created it. Runs are durable: one executes in
 * whichever process claims it, possibly much later, and again after a crash or an approval, so
 * the creating request's trace context cannot travel in memory. `trace_parent` holds it as a
 * W3C `traceparent` (`00-<trace id>-<span id>-<flags>`, nothing else), written by the create's
 * own insert (no round trip more), and every execution's `invoke_agent` span starts as a child
 * of it (see docs/decisions/0006-run-spans-join-the-creating-request.md).
 *
 * `create_run` gains the value as an eleventh parameter with a default, replacing the
 * ten-parameter function: a process of the previous version calling it with ten arguments
 * still creates runs (without a trace parent) during a rolling deploy.
 */
export function runTraceParentMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
alter table brigade.runs add column trace_parent text
  check (trace_parent ~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$');

drop function brigade.create_run(uuid, uuid, boolean, uuid, uuid, uuid, text, text, jsonb, int);

create function brigade.create_run(
  p_tenant uuid, p_user uuid, p_admin boolean, p_key uuid, p_thread uuid, p_agent uuid,
  p_strategy text, p_priority text, p_content jsonb, p_max_queued int,
  p_trace_parent text default null)
  returns setof brigade.runs language plpgsql volatile as $$
declare
  busy uuid;
  agent_ok boolean;
  queued int;
  verdict jsonb;
begin
  perform set_config('brigade.tenant_id', p_tenant::text, true),
          set_config('brigade.user_id', p_user::text, true),
          set_config('brigade.tenant_admin', case when p_admin then 'on' else '' end, true),
          set_config('brigade.tenant_queue', 'on', true);
  -- The thread's lock first, in a statement of its own: the checks below then run on a
  -- snapshot taken after it, which sees the run a create that held the lock just committed.
  perform 1 from brigade.threads t where t.id = p_thread for update of t;
  if not found then raise exception 'thread not found' using errcode = 'BRG11'; end if;
  select (select r.id from brigade.runs r
           where r.thread_id = p_thread and r.status in ('queued', 'running', 'requires_action')
           limit 1),
         exists (select 1 from brigade.agents a where a.id = p_agent),
         (select count(*) from (select 1 from brigade.run_queue q
           where q.tenant_id = p_tenant and q.state = 'queued' limit p_max_queued) d)::int
    into busy, agent_ok, queued;
  if not agent_ok then raise exception 'agent not found' using errcode = 'BRG12'; end if;
  if p_max_queued > 0 and queued >= p_max_queued then
    raise exception 'queue full' using errcode = 'BRG13', detail = queued::text;
  end if;
  if busy is not null and p_strategy <> 'enqueue' then
    raise exception 'thread busy' using errcode = 'BRG14', detail = busy::text;
  end if;
  verdict := brigade.reserve_limits('runs', 1, true, p_key, p_agent);
  if not (verdict ->> 'ok')::boolean then
    raise exception 'quota exceeded' using errcode = 'BRG15', detail = verdict::text;
  end if;
  return query
    with r as (
      insert into brigade.runs (tenant_id, user_id, thread_id, agent_id, strategy, priority,
                                api_key_id, trace_parent)
      values (p_tenant, p_user, p_thread, p_agent, p_strategy, p_priority, p_key, p_trace_parent)
      returning *),
    m as (
      insert into brigade.messages (tenant_id, user_id, thread_id, run_id, role, content, provenance)
      select r.tenant_id, r.user_id, r.thread_id, r.id, 'user', p_content, 'user'
        from r where p_content is not null),
    q as (
      insert into brigade.run_queue (run_id, tenant_id, user_id, thread_id, priority)
      select r.id, r.tenant_id, r.user_id, r.thread_id, r.priority from r),
    e as (
      insert into brigade.run_events (tenant_id, user_id, run_id, seq, type, data)
      select r.tenant_id, r.user_id, r.id, 1, 'run-queued',
             jsonb_build_object('runId', r.id, 'threadId', r.thread_id, 'agentId', r.agent_id)
        from r)
    select * from r;
end $$;

revoke all on function brigade.create_run(uuid, uuid, boolean, uuid, uuid, uuid, text, text, jsonb,
  int, text) from public;
grant execute on function brigade.create_run(uuid, uuid, boolean, uuid, uuid, uuid, text, text,
  jsonb, int, text) to ${role};
`;
}
