import type { MigrationContext } from './migration-context.ts';

/**
 * A run's checkpoints as PL/pgSQL functions (the runs benchmark): starting a run, saving a
 * completed step and finishing a run each wrote the run's buffered events and its own rows in a
 * transaction of 4–6 round trips (`BEGIN` and the scope, the events, the step, the audit event,
 * `COMMIT`), and a tool call's quota check took 3. Each is now one prepared call in its own
 * implicit transaction: one round trip, and plans cached per session (see 0014 for why a
 * multi-statement simple-protocol message is not the cheaper answer).
 *
 * As in 0014, each function sets the run's user's row-level-security scope first
 * (`set_config(…, true)`, local to the one statement's transaction) and is SECURITY INVOKER, so
 * every policy applies to every row it writes. Events arrive as a JSON array of
 * `{type, data}` numbered from `p_first_seq`; audit events as one JSON object of the
 * `audit_events` columns the caller may set (the chain trigger assigns the rest).
 */
export function runCheckpointFunctionsMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
-- Inserts p_events (a JSON array of {type, data}) as the run's events p_first_seq, p_first_seq+1…
create function brigade.insert_run_events(
  p_tenant uuid, p_user uuid, p_run uuid, p_first_seq int, p_events jsonb)
  returns void language plpgsql volatile as $$
begin
  if jsonb_array_length(p_events) = 0 then return; end if;
  insert into brigade.run_events (tenant_id, user_id, run_id, seq, type, data)
  select p_tenant, p_user, p_run, p_first_seq + e.ord::int - 1, e.value ->> 'type',
         coalesce(e.value -> 'data', '{}'::jsonb)
    from jsonb_array_elements(p_events) with ordinality as e(value, ord);
end $$;

-- Marks the run running until p_deadline and writes its events (run-started or run-resumed).
create function brigade.start_run(
  p_tenant uuid, p_user uuid, p_run uuid, p_first_seq int, p_events jsonb,
  p_started_at timestamptz, p_deadline timestamptz)
  returns void language plpgsql volatile as $$
begin
  perform set_config('brigade.tenant_id', p_tenant::text, true),
          set_config('brigade.user_id', p_user::text, true);
  update brigade.runs
     set status = 'running', started_at = p_started_at, deadline_at = p_deadline,
         pending_action = null
   where id = p_run;
  perform brigade.insert_run_events(p_tenant, p_user, p_run, p_first_seq, p_events);
end $$;

-- Checkpoints a completed step (a step saved before, by a process that died after its commit,
-- is kept: on conflict do nothing), adds its usage to the run, writes the events buffered while
-- it ran and, for tool calls, its audit event.
create function brigade.save_step(
  p_tenant uuid, p_user uuid, p_run uuid, p_first_seq int, p_events jsonb,
  p_step_key text, p_kind text, p_output jsonb, p_input_tokens int, p_output_tokens int,
  p_audit jsonb)
  returns void language plpgsql volatile as $$
declare
  added int;
begin
  perform set_config('brigade.tenant_id', p_tenant::text, true),
          set_config('brigade.user_id', p_user::text, true);
  perform brigade.insert_run_events(p_tenant, p_user, p_run, p_first_seq, p_events);
  insert into brigade.run_steps (tenant_id, user_id, run_id, step_key, kind, output)
  values (p_tenant, p_user, p_run, p_step_key, p_kind, p_output)
  on conflict do nothing;
  get diagnostics added = row_count;
  update brigade.runs
     set step_count = step_count + added,
         input_tokens = input_tokens + p_input_tokens,
         output_tokens = output_tokens + p_output_tokens
   where id = p_run;
  if p_audit is not null then
    insert into brigade.audit_events
      (tenant_id, actor_kind, actor_user_id, actor_key_id, action, target_type, target_id,
       outcome, reason, data)
    select p_tenant, a.actor_kind, a.actor_user_id, a.actor_key_id, a.action, a.target_type,
           a.target_id, a.outcome, a.reason, coalesce(a.data, '{}'::jsonb)
      from jsonb_to_record(p_audit) as a(
        actor_kind text, actor_user_id uuid, actor_key_id uuid, action text, target_type text,
        target_id text, outcome text, reason text, data jsonb);
  end if;
end $$;

-- Moves the run to p_status unless it already ended (a completion also loses to a requested
-- cancel). When it moved: the answer p_text (if any) becomes the thread's assistant message,
-- the buffered events p_events and then p_terminal (with the run's usage added to its data)
-- are written, and the queue entry goes. When it did not: nothing is written, and the queue
-- entry goes unless this was a completion (whoever cancelled finishes the run). Returns the
-- run's usage and times, or null when it did not move.
create function brigade.finish_run(
  p_tenant uuid, p_user uuid, p_run uuid, p_first_seq int, p_events jsonb, p_status text,
  p_error_code text, p_error_message text, p_incomplete text, p_text text, p_terminal jsonb)
  returns jsonb language plpgsql volatile as $$
declare
  r brigade.runs;
  finished_at timestamptz := clock_timestamp();
begin
  perform set_config('brigade.tenant_id', p_tenant::text, true),
          set_config('brigade.user_id', p_user::text, true);
  update brigade.runs
     set status = p_status, completed_at = finished_at, error_code = p_error_code,
         error_message = p_error_message, incomplete_reason = p_incomplete
   where id = p_run and status in ('queued', 'running', 'requires_action')
     and (p_status <> 'completed' or cancel_requested_at is null)
  returning * into r;
  if not found then
    if p_status <> 'completed' then
      delete from brigade.run_queue where run_id = p_run;
    end if;
    return null;
  end if;
  if p_status = 'completed' and p_text is not null then
    insert into brigade.messages
      (tenant_id, user_id, thread_id, run_id, role, content, provenance, input_tokens,
       output_tokens, created_at)
    values (p_tenant, p_user, r.thread_id, p_run, 'assistant',
            jsonb_build_array(jsonb_build_object('type', 'text', 'text', p_text)), 'assistant',
            r.input_tokens, r.output_tokens, finished_at);
  end if;
  perform brigade.insert_run_events(p_tenant, p_user, p_run, p_first_seq,
    p_events || jsonb_build_array(jsonb_build_object(
      'type', p_terminal ->> 'type',
      'data', (p_terminal -> 'data') || jsonb_build_object('usage', jsonb_build_object(
        'inputTokens', r.input_tokens, 'outputTokens', r.output_tokens)))));
  delete from brigade.run_queue where run_id = p_run;
  return jsonb_build_object(
    'inputTokens', r.input_tokens, 'outputTokens', r.output_tokens,
    'createdAt', r.created_at, 'firstClaimedAt', r.first_claimed_at);
end $$;

-- Adds one unit to every binding daily quota of p_kind ('runs' or 'tool_calls'); returns
-- reserve_limits' verdict (nothing was counted when it refuses).
create function brigade.consume_quota(
  p_tenant uuid, p_user uuid, p_kind text, p_key uuid, p_agent uuid)
  returns jsonb language plpgsql volatile as $$
begin
  perform set_config('brigade.tenant_id', p_tenant::text, true),
          set_config('brigade.user_id', p_user::text, true);
  return brigade.reserve_limits(p_kind, 1, true, p_key, p_agent);
end $$;

-- The fair claim of src/storage/runs/run-claim.ts (the order and the caps are described there):
-- up to p_limit runs for executor p_executor, in the scheduler's scope, under the claim lock.
-- The lock is taken by a statement of its own, so the claim's snapshot (a volatile function's
-- statements each take a new one) sees every claim committed before the lock was granted. The
-- claim runs with a generic plan: planning it again each time was its largest cost.
create function brigade.claim_runs(
  p_executor text, p_limit int, p_stale interval, p_max_tenant int, p_max_user int)
  returns table (claimed_run uuid, claimed_tenant uuid, claimed_user uuid)
  language plpgsql volatile set plan_cache_mode = force_generic_plan as $$
begin
  perform set_config('brigade.scheduler', 'on', true);
  perform pg_advisory_xact_lock(7093848255832547689);
  return query
    with live as (
      select tenant_id, user_id from brigade.run_queue
       where state = 'claimed' and heartbeat_at >= clock_timestamp() - p_stale),
    tenant_running as (select tenant_id, count(*)::int as n from live group by tenant_id),
    user_running as (select user_id, count(*)::int as n from live group by user_id),
    -- concurrentRuns policies, read here so a change binds the next claim: platform and
    -- tenant policies cap a tenant, role and user policies each user; the tightest wins.
    waiting as (select distinct tenant_id, user_id from brigade.run_queue where state <> 'parked'),
    tenant_policy as (
      select w.tenant_id, min((p.limits ->> 'concurrentRuns')::int) as cap
        from (select distinct tenant_id from waiting) w
        join brigade.policies p
          on p.level = 'platform' or (p.level = 'tenant' and p.tenant_id = w.tenant_id)
       where p.limits ? 'concurrentRuns'
       group by w.tenant_id),
    user_policy as (
      select w.user_id, min((p.limits ->> 'concurrentRuns')::int) as cap
        from waiting w
        join brigade.memberships m on m.tenant_id = w.tenant_id and m.user_id = w.user_id
        join brigade.policies p
          on (p.tenant_id is null or p.tenant_id = w.tenant_id)
         and ((p.level = 'role' and p.role = m.role) or (p.level = 'user' and p.subject_id = w.user_id))
       where p.limits ? 'concurrentRuns'
       group by w.user_id),
    capped as (
      select c.run_id, c.tenant_id, c.user_id, c.thread_id, c.enqueued_at,
             c.priority = 'batch' as is_batch,
             coalesce(tr.n, 0) as tenant_running, coalesce(ur.n, 0) as user_running,
             brigade.tightest_cap(p_max_tenant, tp.cap) as tenant_cap,
             brigade.tightest_cap(p_max_user, up.cap) as user_cap
        from brigade.run_queue c
        left join tenant_running tr on tr.tenant_id = c.tenant_id
        left join user_running ur on ur.user_id = c.user_id
        left join tenant_policy tp on tp.tenant_id = c.tenant_id
        left join user_policy up on up.user_id = c.user_id
       where c.state = 'queued'
          or (c.state = 'claimed' and c.heartbeat_at < clock_timestamp() - p_stale)),
    -- Tenants and users at their cap drop out before the costlier thread check and ranking.
    candidates as (
      select * from capped c
       where (c.tenant_cap = 0 or c.tenant_running < c.tenant_cap)
         and (c.user_cap = 0 or c.user_running < c.user_cap)
         and not exists (
           select 1 from brigade.run_queue o
            where o.thread_id = c.thread_id and o.run_id <> c.run_id
              and (o.enqueued_at < c.enqueued_at
                   or (o.state = 'claimed' and o.heartbeat_at >= clock_timestamp() - p_stale)))),
    by_user as (
      select *, user_running + row_number() over (
               partition by user_id order by is_batch, enqueued_at, run_id) as user_slot
        from candidates),
    by_tenant as (
      select *, tenant_running + row_number() over (
               partition by tenant_id order by is_batch, user_slot, enqueued_at, run_id) as tenant_slot
        from by_user where user_cap = 0 or user_slot <= user_cap),
    ranked as (
      select run_id, tenant_slot, enqueued_at from by_tenant
       where tenant_cap = 0 or tenant_slot <= tenant_cap),
    claimed as (
      update brigade.run_queue q
         set state = 'claimed', executor_id = p_executor,
             heartbeat_at = clock_timestamp(),
             first_claimed_at = coalesce(q.first_claimed_at, clock_timestamp())
       where q.run_id in (
         select c.run_id from brigade.run_queue c join ranked r on r.run_id = c.run_id
          where c.state = 'queued'
             or (c.state = 'claimed' and c.heartbeat_at < clock_timestamp() - p_stale)
          order by r.tenant_slot, r.enqueued_at, r.run_id
          for update of c skip locked
          limit p_limit)
      returning q.run_id, q.tenant_id, q.user_id)
    select * from claimed;
end $$;

revoke all on function brigade.claim_runs(text, int, interval, int, int) from public;
grant execute on function brigade.claim_runs(text, int, interval, int, int) to ${role};

-- Creates a run on p_thread in the common case, in one call: the same checks and writes as the
-- transaction in src/storage/runs/run-store.ts (which it replaces unless the thread is busy and
-- the strategy is not 'enqueue'). Under the creating user's scope plus tenant_queue (to count
-- the tenant's queued runs). Refusals raise, so nothing is written:
--   BRG11 the thread is not the caller's or does not exist; BRG12 no such agent;
--   BRG13 the tenant's queue is full (detail: the queued count); BRG14 the thread has an active
--   run and the strategy is not 'enqueue' (detail: its id; the caller takes the full path);
--   BRG15 a daily runs quota is used up (detail: reserve_limits' verdict).
-- Returns the new run.
create function brigade.create_run(
  p_tenant uuid, p_user uuid, p_admin boolean, p_key uuid, p_thread uuid, p_agent uuid,
  p_strategy text, p_priority text, p_content jsonb, p_max_queued int)
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
  select (select r.id from brigade.runs r
           where r.thread_id = t.id and r.status in ('queued', 'running', 'requires_action')
           limit 1),
         exists (select 1 from brigade.agents a where a.id = p_agent),
         (select count(*) from (select 1 from brigade.run_queue q
           where q.tenant_id = p_tenant and q.state = 'queued' limit p_max_queued) d)::int
    into busy, agent_ok, queued
    from brigade.threads t where t.id = p_thread
     for update of t;
  if not found then raise exception 'thread not found' using errcode = 'BRG11'; end if;
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
                                api_key_id)
      values (p_tenant, p_user, p_thread, p_agent, p_strategy, p_priority, p_key)
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
  int) from public;
grant execute on function brigade.create_run(uuid, uuid, boolean, uuid, uuid, uuid, text, text,
  jsonb, int) to ${role};

revoke all on function brigade.consume_quota(uuid, uuid, text, uuid, uuid) from public;
grant execute on function brigade.consume_quota(uuid, uuid, text, uuid, uuid) to ${role};
revoke all on function brigade.insert_run_events(uuid, uuid, uuid, int, jsonb) from public;
revoke all on function brigade.start_run(uuid, uuid, uuid, int, jsonb, timestamptz, timestamptz)
  from public;
revoke all on function brigade.save_step(uuid, uuid, uuid, int, jsonb, text, text, jsonb, int, int,
  jsonb) from public;
revoke all on function brigade.finish_run(uuid, uuid, uuid, int, jsonb, text, text, text, text,
  text, jsonb) from public;
grant execute on function brigade.insert_run_events(uuid, uuid, uuid, int, jsonb) to ${role};
grant execute on function brigade.start_run(uuid, uuid, uuid, int, jsonb, timestamptz, timestamptz)
  to ${role};
grant execute on function brigade.save_step(uuid, uuid, uuid, int, jsonb, text, text, jsonb, int,
  int, jsonb) to ${role};
grant execute on function brigade.finish_run(uuid, uuid, uuid, int, jsonb, text, text, text, text,
  text, jsonb) to ${role};
`;
}
