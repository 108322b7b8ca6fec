import type { MigrationContext } from './migration-context.ts';

/**
 * Fair queueing: run priorities, the time a run was first claimed, the index the fair claim
 * and the queue-depth check read, and a read-only view of one tenant's queue for admission.
 *
 * - `priority` (`interactive` before `batch` inside a tenant) is stored on the run (the
 *   resource) and copied to its queue entry (what the scheduler sees).
 * - `run_queue.first_claimed_at` is set by the first claim and kept by takeovers and
 *   requeues. When the executor first marks the run started (`started_at` null → set, in the
 *   user's scope), a trigger copies it to `runs.first_claimed_at`, so the run reports its queue
 *   wait without the scheduler (which sees only `run_queue`) ever touching `runs`.
 * - `run_queue_tenant_depth` lets a transaction that sets `brigade.tenant_queue` read (never
 *   change) its own tenant's queue entries, which are ids and timing only: creating a run
 *   counts the tenant's queued runs to refuse one beyond `runs.maxQueuedPerTenant`.
 */
export function fairQueueMigration(_context: MigrationContext): string {
  return `
alter table brigade.runs
  add column priority text not null default 'interactive' check (priority in ('interactive', 'batch')),
  add column first_claimed_at timestamptz;

alter table brigade.run_queue
  add column priority text not null default 'interactive' check (priority in ('interactive', 'batch')),
  add column first_claimed_at timestamptz;

create index run_queue_tenant_state on brigade.run_queue (tenant_id, state, user_id);

create policy run_queue_tenant_depth on brigade.run_queue for select
  using (coalesce(current_setting('brigade.tenant_queue', true), '') = 'on'
         and tenant_id = (select brigade.current_tenant_id()));

create function brigade.record_first_claim() returns trigger
  language plpgsql
  as $$
begin
  new.first_claimed_at := coalesce(
    new.first_claimed_at,
    (select q.first_claimed_at from brigade.run_queue q where q.run_id = new.id),
    new.started_at);
  return new;
end
$$;
revoke all on function brigade.record_first_claim() from public;
create trigger runs_first_claim before update of started_at on brigade.runs
  for each row when (old.started_at is null and new.started_at is not null)
  execute function brigade.record_first_claim();
`;
}
