import type { MigrationContext } from './migration-context.ts';

/**
 * Spans past `tracing.retentionHours` are deleted at last. The pruner deletes in the
 * scheduler's scope (`spans_pruner`, migration 0011), but a DELETE reads the rows its WHERE
 * clause selects, and PostgreSQL applies the SELECT policies to them: `spans_read` admits only
 * the tenant's users, so the scheduler saw no span and every prune deleted nothing. Every span
 * ever written stayed, prompts and answers included where content capture is on, although
 * the documentation promised 72 hours.
 *
 * The scheduler may now read spans too, as it reads the other tables its background jobs
 * sweep; it runs only Brigade's own jobs, never a request's queries.
 */
export function spanPruningMigration(_context: MigrationContext): string {
  return `
create policy spans_pruner_read on brigade.spans for select using (brigade.is_scheduler());
`;
}
