import type { MigrationContext } from './migration-context.ts';

/**
 * A claimed run is loaded and started in one round trip. The executor read everything a run
 * needs in one scoped script (src/runtime/run-loader.ts) and then started it with a call of
 * `start_run` (0016): two round trips before the first model call. `start_loaded_run` goes at
 * the end of the same script, so the reads see the run as it was claimed (queued, or left
 * running by a dead process) and the start commits with them.
 *
 * It starts the run only where the executor would have: the run is still live (queued,
 * running or requires_action), its agent exists and the agent's core is one this process has
 * (`p_cores`). Otherwise it writes nothing and returns null, and the executor ends the run
 * as before (agent_not_found, core_not_found, or only its queue entry for a run that ended).
 * When it starts the run it writes what `start_run` wrote: status running, `started_at` kept
 * from an earlier start, the deadline kept or set to `p_now` plus the agent's timeout, no
 * pending action, and the event run-started (or run-resumed after an earlier start) after the
 * run's last event. Returns that event's seq and type and the deadline.
 */
export function startOnLoadMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
create function brigade.start_loaded_run(
  p_tenant uuid, p_user uuid, p_run uuid, p_cores text[], p_now timestamptz)
  returns jsonb language plpgsql volatile as $$
declare
  r brigade.runs;
  core text;
  timeout_ms int;
  next_seq int;
  kind text;
  deadline timestamptz;
begin
  perform set_config('brigade.tenant_id', p_tenant::text, true),
          set_config('brigade.user_id', p_user::text, true);
  select * into r from brigade.runs where id = p_run;
  if not found or r.status not in ('queued', 'running', 'requires_action') then
    return null;
  end if;
  select a.core_id, a.run_timeout_ms into core, timeout_ms
    from brigade.agents a where a.id = r.agent_id;
  if not found or not (core = any(p_cores)) then return null; end if;
  select coalesce(max(e.seq), 0) + 1 into next_seq from brigade.run_events e where e.run_id = p_run;
  kind := case when r.started_at is null then 'run-started' else 'run-resumed' end;
  deadline := coalesce(r.deadline_at, p_now + timeout_ms * interval '1 millisecond');
  update brigade.runs
     set status = 'running', started_at = coalesce(r.started_at, p_now), deadline_at = deadline,
         pending_action = null
   where id = p_run;
  perform brigade.insert_run_events(p_tenant, p_user, p_run, next_seq,
    jsonb_build_array(jsonb_build_object('type', kind, 'data', jsonb_build_object('runId', p_run))));
  return jsonb_build_object('seq', next_seq, 'type', kind, 'deadline', deadline);
end $$;

revoke all on function brigade.start_loaded_run(uuid, uuid, uuid, text[], timestamptz) from public;
grant execute on function brigade.start_loaded_run(uuid, uuid, uuid, text[], timestamptz)
  to ${role};
`;
}
