import type { MigrationContext } from './migration-context.ts';

/**
 * Budget reservations and settlements in batches (group commit). Every model call reserves
 * before it and settles after it, and the calls of one user (or one tenant) all update the
 * same counter rows: under concurrency each transaction waited for the previous one's row
 * lock, held until its commit. The gateway benchmark at 16 concurrent requests spent 7.7 ms
 * per call waiting in `reserve_limits` and as long again in `resolve_reservation`.
 *
 * `reserve_calls` and `settle_calls` take the calls that queued up in one process while the
 * previous batch of their tenant was in flight, and run them one after another in one
 * transaction, each exactly as `reserve_call` and `settle_call` (which set the call's own
 * tenant and user scope first), so each call's check still sees every earlier one: the same
 * conditional updates, one commit and one round trip for all of them. The caller
 * (src/storage/guards/budget-store.ts) sorts a batch by user, key and agent so two processes'
 * batches lock counters in the same order; if a batch fails anyway (a deadlock), nothing of it
 * was written and its calls are made one by one.
 */
export function batchedBudgetCallsMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
-- p_calls: [{tenant, user, amount, key, agent, id, run, expires}, ...]; one row per call, in
-- order (ord from 1), as reserve_call returns it.
create function brigade.reserve_calls(p_calls jsonb)
  returns table (ord bigint, res jsonb, reservation_id uuid) language plpgsql volatile as $$
declare
  c record;
begin
  for c in select value as v, ordinality as n
             from jsonb_array_elements(p_calls) with ordinality loop
    return query
      select c.n, r.res, r.reservation_id
        from brigade.reserve_call((c.v ->> 'tenant')::uuid, (c.v ->> 'user')::uuid,
                                  (c.v ->> 'amount')::bigint, (c.v ->> 'key')::uuid,
                                  (c.v ->> 'agent')::uuid, (c.v ->> 'id')::uuid,
                                  (c.v ->> 'run')::uuid, (c.v ->> 'expires')::timestamptz) r;
  end loop;
end $$;

-- p_calls: [{tenant, user, reservation, cost, status, usage}, ...]; one row per call, in
-- order, with the number of budget thresholds it crossed, as settle_call returns it.
create function brigade.settle_calls(p_calls jsonb)
  returns table (ord bigint, crossed integer) language plpgsql volatile as $$
declare
  c record;
begin
  for c in select value as v, ordinality as n
             from jsonb_array_elements(p_calls) with ordinality loop
    ord := c.n;
    crossed := brigade.settle_call((c.v ->> 'tenant')::uuid, (c.v ->> 'user')::uuid,
                                   (c.v ->> 'reservation')::uuid, (c.v ->> 'cost')::bigint,
                                   c.v ->> 'status', c.v -> 'usage');
    return next;
  end loop;
end $$;

revoke all on function brigade.reserve_calls(jsonb) from public;
grant execute on function brigade.reserve_calls(jsonb) to ${role};
revoke all on function brigade.settle_calls(jsonb) from public;
grant execute on function brigade.settle_calls(jsonb) to ${role};
`;
}
