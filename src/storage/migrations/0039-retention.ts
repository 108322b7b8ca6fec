import type { MigrationContext } from './migration-context.ts';

/**
 * Retention of the bookkeeping rows nothing deleted: every budgeted model call left its
 * reservation (one row a call, kept after it settled), every budget period of every subject
 * its limit counter (a rolling window one per hour), every announced threshold its budget
 * alert and every webhook its deliveries. The maintenance sweep (`retention` settings) deletes
 * them in the scheduler's scope once they can no longer matter; this grants it `DELETE` and
 * indexes what it looks for.
 *
 * Only the scheduler scope may delete: a restrictive policy on the tables whose existing
 * policies are `for all` keeps a tenant's or user's scope from deleting its own rows, and the
 * counters get a delete policy for the scheduler alone. The usage ledger and the audit log are
 * not touched: they are kept.
 */
export function retentionMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
create index budget_reservations_resolved on brigade.budget_reservations (resolved_at)
  where status <> 'reserved';
create index limit_counters_period on brigade.limit_counters (period_start);
create index budget_alerts_announced on brigade.budget_alerts (period_start)
  where announced_at is not null;
create index webhook_deliveries_done on brigade.webhook_deliveries (created_at)
  where status <> 'pending';

create policy limit_counters_prune on brigade.limit_counters for delete
  using (brigade.is_scheduler());
create policy budget_reservations_prune on brigade.budget_reservations as restrictive
  for delete using (brigade.is_scheduler());
create policy budget_alerts_prune on brigade.budget_alerts as restrictive
  for delete using (brigade.is_scheduler());
create policy webhook_deliveries_prune on brigade.webhook_deliveries as restrictive
  for delete using (brigade.is_scheduler());

grant delete on brigade.budget_reservations, brigade.limit_counters, brigade.budget_alerts,
  brigade.webhook_deliveries to ${role};
`;
}
