import type { MigrationContext } from './migration-context.ts';

/**
 * `brigade.run_history(run)`: the messages a run is loaded with — its own, and the thread's
 * earlier ones: of runs created before it (with their answers, even those written after this
 * run was queued) and of no run created before it; with the agent's `history_messages`, only
 * the newest that many + 1 (so the caller knows a cut happened). Newest first for the earlier
 * ones; the caller tells them apart by `run_id` and puts each run's messages together.
 *
 * A PL/pgSQL function so its statements are planned once per connection: as an ad hoc query in
 * the load script, planning (the run's row looked up in six sub-selects) cost more than
 * running it. The run's own messages are found through the thread's index, never by `run_id`
 * alone (no index: that would scan every message of the tenant). Runs under the caller's
 * row-level security like every other statement (`SECURITY INVOKER`).
 */
export function runHistoryMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
create function brigade.run_history(p_run uuid)
  returns setof brigade.messages language plpgsql stable as $$
declare
  r record;
  later uuid[];
  cap int;
begin
  select thread_id, created_at, agent_id into r from brigade.runs where id = p_run;
  if not found then
    return;
  end if;
  select coalesce(array_agg(id), '{}') into later from brigade.runs
   where thread_id = r.thread_id and created_at > r.created_at;
  select history_messages + 1 into cap from brigade.agents where id = r.agent_id;
  return query
    select m.* from brigade.messages m
     where m.thread_id = r.thread_id and m.run_id = p_run
     order by m.seq;
  return query
    select m.* from brigade.messages m
     where m.thread_id = r.thread_id and m.run_id is distinct from p_run
       and (m.run_id is not null or m.created_at <= r.created_at)
       and (m.run_id is null or m.run_id <> all (later))
     order by m.seq desc
     limit cap;
end $$;

revoke all on function brigade.run_history(uuid) from public;
grant execute on function brigade.run_history(uuid) to ${role};
`;
}
