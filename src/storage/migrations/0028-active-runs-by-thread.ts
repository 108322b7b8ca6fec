/**
 * Whether a thread has an active run is asked at every run's creation (`create_run`, and the
 * store's transaction path). With only `runs_thread` (tenant, thread, created_at) that check
 * walked every run the thread ever had, oldest first, so creating a run grew slower with the
 * thread's length. This partial index holds only the active runs, so it finds the one there is.
 */
export function activeRunsByThreadMigration(): string {
  return `
create index runs_thread_active on brigade.runs (tenant_id, thread_id)
  where status in ('queued', 'running', 'requires_action');
`;
}
