/**
 * A run's create locks its thread `for no key update` instead of `for update` (`create_run`,
 * and the full create in run-store.ts for a busy thread). Creates of one thread and the
 * thread's deletion still take turns (each of those locks conflicts with the other), but the
 * thread's runs, writing their messages meanwhile, are no longer held at the foreign-key check
 * (`key share` on the thread's row), which only `for update` blocks. Held there, an executor
 * that had locked its run's row met an `interrupt` or `rollback` create that held the thread and
 * waited for that run's row to cancel it: PostgreSQL broke the deadlock by rolling one back,
 * and the client got a 503 (test/run-lock-order-races.test.ts). A create that only enqueues
 * never waits for a run's row, but it held the thread's running run at its next message for as
 * long as it ran.
 *
 * The function is 0045's, with that one lock changed; CREATE OR REPLACE keeps its signature and
 * grants.
 */
export function createRunLockMigration(): string {
  return `
create or replace function brigade.create_run(
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
  -- No key update: the runs writing to the thread pass their foreign-key checks meanwhile.
  perform 1 from brigade.threads t where t.id = p_thread for no key update of t;
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
`;
}
