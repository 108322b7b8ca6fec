import type { MigrationContext } from './migration-context.ts';

/**
 * A run's model call is settled in the transaction that checkpoints it. The executor settled
 * each model call (`settle_call`, 0014, alone or in its tenant's batch, 0019) and then
 * checkpointed the step (`save_step`, 0016): two round trips, two commits. `save_step_settled`
 * does both in one: the checkpoint first, then the settlement, so the budget counters the
 * settlement updates stay locked only until the commit that follows at once.
 *
 * Paying and recording now commit together: a crash can no longer leave a model call settled
 * but not checkpointed (replayed on resume and paid a second time in the budget) or
 * checkpointed but not settled (its reservation held until the orphan sweep). A settlement
 * whose reservation was already resolved (taken over as orphaned while the process stalled)
 * changes nothing, as in `settle_call`. `p_settle` carries `settle_call`'s arguments but the
 * tenant and user: `{reservation, cost, status, usage}`. Returns the budget alert thresholds
 * the settlement crossed.
 */
export function settleWithStepMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
create function brigade.save_step_settled(
  p_tenant uuid, p_user uuid, p_run uuid, p_first_seq int, p_events jsonb,
  p_step_key text, p_kind text, p_output jsonb, p_input_tokens int, p_output_tokens int,
  p_audit jsonb, p_settle jsonb)
  returns integer language plpgsql volatile as $$
begin
  perform brigade.save_step(p_tenant, p_user, p_run, p_first_seq, p_events, p_step_key, p_kind,
    p_output, p_input_tokens, p_output_tokens, p_audit);
  return brigade.settle_call(p_tenant, p_user, (p_settle ->> 'reservation')::uuid,
    (p_settle ->> 'cost')::bigint, p_settle ->> 'status', p_settle -> 'usage');
end $$;

revoke all on function brigade.save_step_settled(uuid, uuid, uuid, int, jsonb, text, text, jsonb,
  int, int, jsonb, jsonb) from public;
grant execute on function brigade.save_step_settled(uuid, uuid, uuid, int, jsonb, text, text,
  jsonb, int, int, jsonb, jsonb) to ${role};
`;
}
