import { sql } from 'kysely';
import { AppError } from '../../domain/errors.ts';
import type { ScopedDb } from '../postgres/database.ts';
import type { ArrivalSlot } from './run-claim.ts';

/** Admission limits of the run store (`createRunStore`). */
export interface RunAdmissionOptions {
  /** Queued (not yet claimed) runs one tenant may have; 0 = unlimited (`runs.maxQueuedPerTenant`). */
  readonly maxQueuedPerTenant?: number | undefined;
  /** A claim whose heartbeat is older than this no longer counts as running (`runs.staleAfterMs`). */
  readonly staleAfterMs?: number | undefined;
  /**
   * A free executor slot of this process for the run being created, so the create claims it on
   * arrival (migration 0017); absent or undefined: the run is queued for the next claim.
   */
  readonly arrivals?:
    | ((owner: { readonly tenantId: string; readonly userId: string }) => ArrivalSlot | undefined)
    | undefined;
}

/**
 * How long a client refused with `queue_full` should wait, in seconds: the time the tenant's
 * queue takes to drain by one run more than its excess. In-flight runs have run for `meanAgeMs`
 * on average, so a run takes about twice that, and `running` of them finish in parallel.
 * Clamped to 1–120 s; with nothing running (no worker up) it answers 5 s.
 */
export function estimateRetryAfterSeconds(queue: {
  readonly excess: number;
  readonly running: number;
  readonly meanAgeMs: number | null;
}): number {
  if (queue.running === 0 || queue.meanAgeMs === null) return 5;
  const runMs = Math.max(100, 2 * queue.meanAgeMs);
  const seconds = ((queue.excess + 1) * runMs) / queue.running / 1000;
  return Math.min(120, Math.max(1, Math.ceil(seconds)));
}

/** How fast a tenant's queue drains: its live claims and their mean age. */
export interface QueueDrain {
  readonly running: number;
  readonly meanAgeMs: number | null;
}

/** The `queue_full` refusal, with a Retry-After estimated from the queue's drain. */
export function queueFullError(options: {
  readonly queued: number;
  readonly limit: number;
  readonly drain: QueueDrain;
}): AppError {
  const retryAfterSeconds = estimateRetryAfterSeconds({
    excess: options.queued - options.limit,
    running: options.drain.running,
    meanAgeMs: options.drain.meanAgeMs,
  });
  return new AppError(
    'queue_full',
    `Your organisation already has ${options.limit} queued runs; retry later.`,
    { details: { retryAfterSeconds, maxQueuedRuns: options.limit } },
  );
}

/** Refuses a run beyond the tenant's queue limit, reading the drain in the caller's transaction. */
export async function queueFull(
  db: ScopedDb,
  options: { tenantId: string; queued: number; limit: number; staleAfterMs: number },
): Promise<AppError> {
  const stale = `${Math.ceil(options.staleAfterMs / 1000)} seconds`;
  const result = await sql<{ running: number; mean_age_ms: number | null }>`
    select count(*)::int as running,
           (extract(epoch from avg(clock_timestamp() - coalesce(q.first_claimed_at, q.heartbeat_at))) * 1000)::float8 as mean_age_ms
      from brigade.run_queue q
     where q.tenant_id = ${options.tenantId} and q.state = 'claimed'
       and q.heartbeat_at >= clock_timestamp() - ${stale}::interval`.execute(db);
  const row = result.rows[0];
  return queueFullError({
    queued: options.queued,
    limit: options.limit,
    drain: { running: row?.running ?? 0, meanAgeMs: row?.mean_age_ms ?? null },
  });
}
