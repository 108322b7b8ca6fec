import type { MigrationContext } from './migration-context.ts';

/**
 * A finishing run claims the runs that follow it in the transaction that ends it. The executor
 * ended a run (`finish_run`, 0016), and the scheduler, woken by the freed slot, then claimed
 * (`claim_runs`, 0018): two round trips and two commits for every run with work queued behind
 * it, and one wasted claim for every run with none. `finish_run_claim` ends the run and then,
 * with `p_limit` above zero, claims as `claim_runs` does for the slots the run frees.
 *
 * The claim sees the run's own queue entry gone, so the next run queued on the same thread is
 * a candidate at once. It takes the schedulers' locks after the finish's row locks; no claim or
 * arrival waits for a finish's rows while holding a lock a claim waits for (see 0018), and a
 * claim that fails anyway (a deadlock the server broke) is undone on its own, in a
 * subtransaction, and the run still ends: the claims are then empty and the scheduler's poll
 * takes the queued runs instead. Returns `{finished, claims}`: `finish_run`'s result (null when
 * the run had already ended) and the claimed runs as `[run, tenant, user]` triples.
 */
export function claimWithFinishMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
create function brigade.finish_run_claim(
  p_tenant uuid, p_user uuid, p_run uuid, p_first_seq int, p_events jsonb, p_status text,
  p_error_code text, p_error_message text, p_incomplete text, p_text text, p_terminal jsonb,
  p_executor text, p_limit int, p_stale interval, p_max_tenant int, p_max_user int)
  returns jsonb language plpgsql volatile as $$
declare
  finished jsonb;
  claims jsonb := '[]';
begin
  finished := brigade.finish_run(p_tenant, p_user, p_run, p_first_seq, p_events, p_status,
    p_error_code, p_error_message, p_incomplete, p_text, p_terminal);
  if p_limit > 0 then
    begin
      select coalesce(jsonb_agg(jsonb_build_array(c.claimed_run, c.claimed_tenant,
                                                  c.claimed_user)), '[]')
        into claims
        from brigade.claim_runs(p_executor, p_limit, p_stale, p_max_tenant, p_max_user) c;
    exception when others then
      claims := '[]';
    end;
  end if;
  return jsonb_build_object('finished', finished, 'claims', claims);
end $$;

revoke all on function brigade.finish_run_claim(uuid, uuid, uuid, int, jsonb, text, text, text,
  text, text, jsonb, text, int, interval, int, int) from public;
grant execute on function brigade.finish_run_claim(uuid, uuid, uuid, int, jsonb, text, text,
  text, text, text, jsonb, text, int, interval, int, int) to ${role};
`;
}
