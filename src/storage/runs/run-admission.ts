import { sql } from 'kysely';
import { AppError } from '../../domain/errors.ts';
import type { Database, ScopedDb } from '../postgres/database.ts';
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
  /**
   * The creating request's trace context (a W3C `traceparent`), stored with the run so every
   * execution of it joins that trace (migration 0045); undefined: none.
   */
  readonly traceParent?: (() => string | undefined) | undefined;
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

/** How fast a tenant's queue drains (its live claims and their mean age): migration 0021. */
const queueDrainStatement = {
  name: 'brigade_queue_drain',
  text: 'select running, mean_age_ms from brigade.queue_drain($1, $2, $3::interval)',
};

/** Who was refused and by what limit, for {@link refuseQueueFull} and {@link queueFull}. */
interface QueueFullInput {
  readonly tenantId: string;
  readonly userId: string;
  /** Queued runs the create counted. */
  readonly queued: number;
  readonly limit: number;
  readonly staleAfterMs: number;
}

function drainValues(options: QueueFullInput): [string, string, string] {
  return [options.tenantId, options.userId, `${Math.ceil(options.staleAfterMs / 1000)} seconds`];
}

/** The `queue_full` refusal, with a Retry-After estimated from the queue's drain. */
function queueFullError(options: QueueFullInput, drain: Record<string, unknown> | undefined) {
  const retryAfterSeconds = estimateRetryAfterSeconds({
    excess: options.queued - options.limit,
    running: Number(drain?.['running'] ?? 0),
    meanAgeMs: (drain?.['mean_age_ms'] as number | null | undefined) ?? null,
  });
  return new AppError(
    'queue_full',
    `Your organisation already has ${options.limit} queued runs; retry later.`,
    { details: { retryAfterSeconds, maxQueuedRuns: options.limit } },
  );
}

/**
 * Refuses a run that `create_run` refused as beyond its tenant's queue limit: reads the drain
 * with one prepared call, since refusals come in floods under exactly the overload that makes
 * them common.
 */
export async function refuseQueueFull(
  database: Pick<Database, 'callPrepared'>,
  options: QueueFullInput,
): Promise<AppError> {
  const [drain] = await database.callPrepared(queueDrainStatement, drainValues(options));
  return queueFullError(options, drain);
}

/** Refuses a run beyond its tenant's queue limit, reading the drain in the caller's transaction. */
export async function queueFull(db: ScopedDb, options: QueueFullInput): Promise<AppError> {
  const [tenant, user, stale] = drainValues(options);
  const result = await sql<Record<string, unknown>>`
    select running, mean_age_ms
      from brigade.queue_drain(${tenant}::uuid, ${user}::uuid, ${stale}::interval)`.execute(db);
  return queueFullError(options, result.rows[0]);
}
