import type { MigrationContext } from './migration-context.ts';

/**
 * A run's writes are fenced with its claim. A process that missed its heartbeats for
 * `runs.staleAfterMs` (a database outage that long, a stalled event loop) loses its runs to
 * other processes, which resume them from the last checkpoint; the old execution noticed only
 * at its next heartbeat, and a checkpoint it wrote meanwhile (events numbered by `seq`, a
 * step, a settlement, even `finish_run`) still reached the database: its events took numbers
 * the new execution then failed to write, and its finish could end a run another process was
 * executing.
 *
 * `assert_claim` is called by every write of an executing run (its start, its checkpoints,
 * its event batches) in the same statement, or the same transaction, before it writes
 * anything: it raises `BRG17` unless the run's queue entry exists and is held by
 * `p_executor` (a null executor, a run executed without a scheduler, always passes). So the
 * old execution writes nothing once another process took the run over, and nothing once the
 * run ended or went (its entry goes with it).
 *
 * The check is exact, not a snapshot: the entry is locked `FOR KEY SHARE`, and a takeover
 * (`claim_runs`, with `FOR UPDATE SKIP LOCKED`) skips an entry locked so, so a takeover commits
 * either before the check, which then sees it, or after the write commits, and the new
 * execution's load then sees what was written. Locks follow the order the other writers take
 * (the run's row, then its queue entry: `finish_run`, a thread's deletion, a user's erasure),
 * so the run's row is locked first, as the checkpoints that update it would lock it anyway;
 * checkpoints of one run serialise on it before they reach the entry.
 *
 * SECURITY INVOKER like the checkpoint functions (the runtime role may execute no SECURITY
 * DEFINER function): it sets the run's user's scope first, under which the run's row and its
 * ids-only queue entry are visible (policy `run_queue_scheduler`).
 */
export function claimFenceMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
create function brigade.assert_claim(p_tenant uuid, p_user uuid, p_run uuid, p_executor text)
  returns void language plpgsql volatile as $$
begin
  if p_executor is null then return; end if;
  perform set_config('brigade.tenant_id', p_tenant::text, true),
          set_config('brigade.user_id', p_user::text, true);
  perform 1 from brigade.runs where id = p_run for no key update;
  perform 1 from brigade.run_queue where run_id = p_run and executor_id = p_executor
    for key share;
  if not found then
    raise exception 'run % is no longer claimed by executor %', p_run, p_executor
      using errcode = 'BRG17';
  end if;
end $$;

revoke all on function brigade.assert_claim(uuid, uuid, uuid, text) from public;
grant execute on function brigade.assert_claim(uuid, uuid, uuid, text) to ${role};
`;
}
