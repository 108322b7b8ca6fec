import type { MigrationContext } from './migration-context.ts';

/**
 * A run's `created_at` is the moment it is inserted (`clock_timestamp()`), not the start of
 * its transaction (`now()`). A run's creation waits for its thread's lock before inserting;
 * with `now()`, runs created at once on one thread got their creation times in the order
 * their transactions began, while their queue entries (`enqueued_at`, `clock_timestamp()`)
 * and so their execution followed the order they got the lock. A run's history
 * (`brigade.run_history`: the runs created before it) then disagreed with the order the runs
 * executed in: a run could be sent an earlier question without its answer and miss a finished
 * exchange. Both stamps are now taken after the lock, in lock order.
 */
export function runCreatedAfterLockMigration(_context: MigrationContext): string {
  return `
alter table brigade.runs alter column created_at set default clock_timestamp();
`;
}
