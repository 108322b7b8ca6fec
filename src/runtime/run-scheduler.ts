import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import type { Database } from '../storage/postgres/database.ts';
import type { AbortReason, ExecutorLogger, RunClaim, RunExecutor } from './run-executor.ts';
import type { RunSignals } from './run-signals.ts';

/** Options for {@link createRunScheduler}. */
export interface RunSchedulerOptions {
  readonly database: Database;
  readonly executor: RunExecutor;
  readonly logger: ExecutorLogger;
  /** Cross-process wake-ups: queued work and cancel requests. */
  readonly signals: Pick<RunSignals, 'onQueueChanged' | 'onCancelRequested'>;
  readonly listenRole?: string | undefined;
  /** Runs this process executes at once. */
  readonly concurrency: number;
  readonly pollIntervalMs?: number;
  readonly heartbeatIntervalMs?: number;
  /** A claim whose heartbeat is older than this is taken over by another process. */
  readonly staleAfterMs?: number;
}

/** Claims queued runs (and runs of dead processes) and executes them. */
export interface RunScheduler {
  readonly executorId: string;
  start(): Promise<void>;
  /** Aborts the run if this process executes it; returns whether it did. */
  abortLocal(runId: string, reason: AbortReason): boolean;
  /** Stops claiming; waits up to `graceMs` for running runs, then hands the rest back. */
  stop(graceMs: number): Promise<void>;
  /** Runs executing in this process now. */
  readonly active: number;
}

/**
 * The run scheduler: one per process. Claims with `FOR UPDATE SKIP LOCKED` from the ids-only
 * `run_queue` (oldest first, one run per thread at a time), heartbeats its claims, and takes
 * over claims whose heartbeat went stale (the process died), so runs survive kill -9.
 */
export function createRunScheduler(options: RunSchedulerOptions): RunScheduler {
  const { database, executor, logger } = options;
  const executorId = `${process.pid}-${randomUUID().slice(0, 8)}`;
  const pollIntervalMs = options.pollIntervalMs ?? 250;
  const staleAfterMs = options.staleAfterMs ?? 10_000;
  const heartbeatIntervalMs = options.heartbeatIntervalMs ?? Math.floor(staleAfterMs / 4);
  const running = new Map<string, { controller: AbortController; done: Promise<void> }>();
  let stopped = false;
  let wake: (() => void) | undefined;
  let loop: Promise<void> | undefined;
  let heartbeat: NodeJS.Timeout | undefined;

  async function claim(limit: number): Promise<RunClaim[]> {
    return database.withScope({ scheduler: true }, async (db) => {
      const stale = `${Math.ceil(staleAfterMs / 1000)} seconds`;
      const result = await sql<{ run_id: string; tenant_id: string; user_id: string }>`
        update brigade.run_queue q
           set state = 'claimed', executor_id = ${executorId}, heartbeat_at = clock_timestamp()
         where q.run_id in (
           select c.run_id from brigade.run_queue c
            where (c.state = 'queued' or c.heartbeat_at < clock_timestamp() - ${stale}::interval)
              and not exists (
                select 1 from brigade.run_queue o
                 where o.thread_id = c.thread_id and o.run_id <> c.run_id
                   and (o.enqueued_at < c.enqueued_at
                        or (o.state = 'claimed' and o.heartbeat_at >= clock_timestamp() - ${stale}::interval)))
            order by c.enqueued_at
            for update skip locked
            limit ${limit})
        returning q.run_id, q.tenant_id, q.user_id`.execute(db);
      return result.rows.map((row) => ({
        runId: row.run_id,
        tenantId: row.tenant_id,
        userId: row.user_id,
      }));
    });
  }

  function launch(claimed: RunClaim): void {
    const controller = new AbortController();
    const done = executor
      .execute(claimed, controller)
      .catch((error: unknown) => {
        if (controller.signal.reason !== 'shutdown') {
          logger.error(
            { runId: claimed.runId, err: { message: (error as Error).message } },
            'run execution failed',
          );
        }
      })
      .finally(() => {
        running.delete(claimed.runId);
        wake?.();
      });
    running.set(claimed.runId, { controller, done });
  }

  async function runLoop(): Promise<void> {
    while (!stopped) {
      const free = options.concurrency - running.size;
      if (free > 0) {
        try {
          for (const claimed of await claim(free)) launch(claimed);
        } catch (error) {
          logger.warn({ err: { message: (error as Error).message } }, 'claiming runs failed');
        }
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, pollIntervalMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
  }

  async function beat(): Promise<void> {
    if (running.size === 0) return;
    await database.withScope({ scheduler: true }, (db) =>
      db
        .updateTable('brigade.run_queue')
        .set({ heartbeat_at: new Date() })
        .where('executor_id', '=', executorId)
        .where('run_id', 'in', [...running.keys()])
        .execute(),
    );
  }

  return {
    executorId,
    get active() {
      return running.size;
    },
    async start() {
      options.signals.onQueueChanged(() => wake?.());
      options.signals.onCancelRequested((runId) => {
        running.get(runId)?.controller.abort('cancel' satisfies AbortReason);
      });
      heartbeat = setInterval(() => {
        beat().catch((error: unknown) =>
          logger.warn({ err: { message: (error as Error).message } }, 'heartbeat failed'),
        );
      }, heartbeatIntervalMs);
      loop = runLoop();
    },
    abortLocal(runId, reason) {
      const entry = running.get(runId);
      entry?.controller.abort(reason);
      return entry !== undefined;
    },
    async stop(graceMs) {
      stopped = true;
      wake?.();
      await loop;
      const all = Promise.all([...running.values()].map((entry) => entry.done));
      await Promise.race([all, new Promise((resolve) => setTimeout(resolve, graceMs).unref())]);
      const remaining = [...running.keys()];
      for (const entry of running.values())
        entry.controller.abort('shutdown' satisfies AbortReason);
      await all;
      if (heartbeat !== undefined) clearInterval(heartbeat);
      if (remaining.length > 0) {
        // Hand unfinished runs back at once so another process resumes them without waiting.
        await database
          .withScope({ scheduler: true }, (db) =>
            db
              .updateTable('brigade.run_queue')
              .set({ state: 'queued', executor_id: null, heartbeat_at: null })
              .where('run_id', 'in', remaining)
              .where('executor_id', '=', executorId)
              .execute(),
          )
          .catch(() => undefined);
      }
    },
  };
}
