import type { MigrationContext } from './migration-context.ts';

/**
 * A run's tool step is checkpointed with the budget reservation of the model call that follows
 * it, in one statement and so one transaction (one round trip fewer per tool call).
 * `reserve_call_after_step` is `reserve_call` (migration 0014) and `save_step` (0016: the step,
 * its events and audit event) for the same run and user. The step is saved whatever the
 * reservation's verdict (a refused reservation reserves nothing and raises nothing; the step
 * stays saved). The reservation goes first so the transaction takes the budget counters'
 * locks before the tenant's audit head, in the order a policy's deletion takes them (its
 * counters go with it, then its audit event), so the two cannot deadlock; the audit head, the
 * tenant's busiest lock, is also held for the shortest time. The step commits no later than
 * it did on its own: the reservation is the next thing the run sends (see
 * runtime/run-model.ts for the cases where the step goes alone).
 */
export function reserveAfterToolStepMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
create function brigade.reserve_call_after_step(
  p_tenant uuid, p_user uuid, p_run uuid, p_first_seq int, p_events jsonb,
  p_step_key text, p_kind text, p_output jsonb, p_input_tokens int, p_output_tokens int,
  p_audit jsonb, p_amount bigint, p_key uuid, p_agent uuid, p_id uuid, p_expires timestamptz)
  returns table (res jsonb, reservation_id uuid) language plpgsql volatile as $$
declare
  reserved record;
begin
  select r.res, r.reservation_id into reserved
    from brigade.reserve_call(p_tenant, p_user, p_amount, p_key, p_agent, p_id, p_run, p_expires) r;
  perform brigade.save_step(p_tenant, p_user, p_run, p_first_seq, p_events, p_step_key, p_kind,
    p_output, p_input_tokens, p_output_tokens, p_audit);
  return query select reserved.res, reserved.reservation_id;
end $$;
revoke all on function brigade.reserve_call_after_step(uuid, uuid, uuid, int, jsonb, text, text,
  jsonb, int, int, jsonb, bigint, uuid, uuid, uuid, timestamptz) from public;
grant execute on function brigade.reserve_call_after_step(uuid, uuid, uuid, int, jsonb, text, text,
  jsonb, int, int, jsonb, bigint, uuid, uuid, uuid, timestamptz) to ${role};
`;
}
