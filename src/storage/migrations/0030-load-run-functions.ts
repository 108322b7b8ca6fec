import type { MigrationContext } from './migration-context.ts';

/**
 * The reads of the script that loads a claimed run (src/runtime/run-loader.ts) as PL/pgSQL
 * functions, so each is planned once per connection instead of at every load: as ad hoc
 * statements they were parsed, rewritten with their row-level-security policies and planned
 * on every run, and planning took longer than running them (~0.6 ms of planning against
 * ~0.25 ms of execution per load, measured with `EXPLAIN (ANALYZE, SUMMARY)` on a 30-run
 * thread). Same statements, same `SECURITY INVOKER` row-level security, same results; the
 * script stays one round trip (run_history, migration 0027, is the same idea).
 */
export function loadRunFunctionsMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
create function brigade.load_run_row(p_run uuid)
  returns setof brigade.runs language plpgsql stable as $$
begin
  return query select r.* from brigade.runs r where r.id = p_run;
end $$;

create function brigade.load_run_agent(p_run uuid)
  returns setof brigade.agents language plpgsql stable as $$
begin
  return query select a.* from brigade.agents a
    where a.id = (select r.agent_id from brigade.runs r where r.id = p_run);
end $$;

-- The run's completed steps (replayed on resume).
create function brigade.load_run_steps(p_run uuid)
  returns table (step_key text, output jsonb) language plpgsql stable as $$
begin
  return query select s.step_key, s.output from brigade.run_steps s where s.run_id = p_run;
end $$;

-- One row: the run's last event seq (0 without events), the user's role in the tenant in
-- scope, and the tools switched off for the run's agent or tenant-wide.
create function brigade.load_run_context(p_run uuid, p_user uuid)
  returns table (last_seq int, member_role text, blocked text[]) language plpgsql stable as $$
begin
  return query select
    (select coalesce(max(e.seq), 0) from brigade.run_events e where e.run_id = p_run),
    (select m.role from brigade.memberships m
      where m.tenant_id = brigade.current_tenant_id() and m.user_id = p_user),
    (select coalesce(array_agg(b.tool_name), '{}') from brigade.tool_blocks b
      where b.agent_id is null
         or b.agent_id = (select r.agent_id from brigade.runs r where r.id = p_run));
end $$;

-- The tenant's own tools (row-level security keeps them to the tenant in scope).
create function brigade.load_tenant_tools()
  returns table (tool_name text, tool_definition jsonb) language plpgsql stable as $$
begin
  return query select t.name, t.definition from brigade.tools t;
end $$;

revoke all on function brigade.load_run_row(uuid) from public;
revoke all on function brigade.load_run_agent(uuid) from public;
revoke all on function brigade.load_run_steps(uuid) from public;
revoke all on function brigade.load_run_context(uuid, uuid) from public;
revoke all on function brigade.load_tenant_tools() from public;
grant execute on function brigade.load_run_row(uuid) to ${role};
grant execute on function brigade.load_run_agent(uuid) to ${role};
grant execute on function brigade.load_run_steps(uuid) to ${role};
grant execute on function brigade.load_run_context(uuid, uuid) to ${role};
grant execute on function brigade.load_tenant_tools() to ${role};
`;
}
