import { AsyncResource } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import type { Database } from '../storage/postgres/database.ts';
import type { SuccessorClaim } from '../storage/runs/run-checkpoints.ts';
import {
  type ArrivalSlot,
  claimRuns,
  claimTakenOver,
  isClaimLost,
} from '../storage/runs/run-claim.ts';
import type { AbortReason, ExecutorLogger, RunClaim, RunExecutor } from './run-executor.ts';
import type { RunSignals } from './run-signals.ts';

/** Options for {@link createRunScheduler}. */
export interface RunSchedulerOptions {
  readonly database: Database;
  readonly executor: RunExecutor;
  readonly logger: ExecutorLogger;
  /** Cross-process wake-ups: queued work and cancel requests. */
  readonly signals: Pick<RunSignals, 'onQueueChanged' | 'onCancelRequested' | 'onReconnected'>;
  readonly listenRole?: string | undefined;
  /** Runs this process executes at once. */
  readonly concurrency: number;
  readonly pollIntervalMs?: number;
  readonly heartbeatIntervalMs?: number;
  /** A claim whose heartbeat is older than this is taken over by another process. */
  readonly staleAfterMs?: number;
  /** Runs of one tenant executing at once across all processes; 0 or absent = unlimited. */
  readonly maxConcurrentPerTenant?: number;
  /** Runs of one user executing at once across all processes; 0 or absent = unlimited. */
  readonly maxConcurrentPerUser?: number;
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
  /**
   * Holds a free slot for a run of `owner` being created, so its create can claim it on
   * arrival; undefined when every slot is taken, when this process alone already runs as many
   * of the tenant's or user's runs as the default caps allow (the create could not claim), or
   * when the scheduler is not running.
   */
  arrival(owner: { readonly tenantId: string; readonly userId: string }): ArrivalSlot | undefined;
}

/**
 * The run scheduler: one per process. Claims with `FOR UPDATE SKIP LOCKED` from the ids-only
 * `run_queue` fairly (the tenant with the fewest running runs first, then its user with the
 * fewest, interactive before batch, oldest first; one run per thread at a time; per-tenant and
 * per-user caps across all processes; see {@link claimRuns}), heartbeats its claims, and takes
 * over claims whose heartbeat went stale (the process died), so runs survive kill -9.
 */
export function createRunScheduler(options: RunSchedulerOptions): RunScheduler {
  const { database, executor, logger } = options;
  const executorId = `${process.pid}-${randomUUID().slice(0, 8)}`;
  const pollIntervalMs = options.pollIntervalMs ?? 250;
  const staleAfterMs = options.staleAfterMs ?? 10_000;
  const heartbeatIntervalMs = options.heartbeatIntervalMs ?? Math.floor(staleAfterMs / 4);
  const running = new Map<
    string,
    { claim: RunClaim; controller: AbortController; done: Promise<void> }
  >();
  let started = false;
  let stopped = false;
  /** Slots held by creates that may claim their run on arrival. */
  let held = 0;
  let wake: (() => void) | undefined;
  /** A wake-up that arrived while the loop was claiming: claim again instead of sleeping. */
  let wakeMissed = false;
  /** A claim of this process is in flight: the loop's, or one with a run's finish. */
  let claiming = false;
  /** The loop skipped a claim while a finish claimed: it claims once that one is done. */
  let claimDeferred = false;
  /** Runs a finish claimed after stop() began: handed back with the unfinished ones. */
  const claimedWhileStopping: string[] = [];
  const requestWake = () => {
    if (wake === undefined) wakeMissed = true;
    else wake();
  };
  let loop: Promise<void> | undefined;
  let heartbeat: NodeJS.Timeout | undefined;

  async function claim(limit: number): Promise<RunClaim[]> {
    return claimRuns(database, {
      executorId,
      limit,
      staleAfterMs,
      maxPerTenant: options.maxConcurrentPerTenant ?? 0,
      maxPerUser: options.maxConcurrentPerUser ?? 0,
    });
  }

  function launch(claimed: RunClaim): void {
    // Its claim went stale while this process still executes it (heartbeats missed), and this
    // process claimed it again: the execution here goes on, now under the fresh claim.
    if (running.has(claimed.runId)) return;
    const controller = new AbortController();
    // Unless another claim of this process is in flight, the run's finish claims the runs
    // that take its slot (and the slots still free) in its own transaction; then no claim of
    // this process needs to follow it. Claims of one process still go one at a time, so one
    // claim serves every slot freed meanwhile.
    let claimedWithFinish = false;
    const successors: SuccessorClaim = {
      take() {
        const limit = options.concurrency - running.size - held + 1;
        if (claiming || stopped || limit <= 0) return undefined;
        claiming = true;
        return {
          executorId,
          limit,
          staleAfterMs,
          maxPerTenant: options.maxConcurrentPerTenant ?? 0,
          maxPerUser: options.maxConcurrentPerUser ?? 0,
        };
      },
      done(claims) {
        claiming = false;
        if (claims !== undefined) claimedWithFinish = true;
        for (const next of claims ?? []) {
          // Stopping: the finishing run is one stop() waits for, so this lands before the
          // hand-back, which returns the claim at once instead of after it goes stale.
          if (stopped) claimedWhileStopping.push(next.runId);
          else launchDetached(next);
        }
        if (claimDeferred) {
          claimDeferred = false;
          requestWake();
        }
      },
    };
    const done = executor
      .execute({ ...claimed, executorId }, controller, successors)
      .catch((error: unknown) => {
        const reason = controller.signal.reason;
        if (reason === 'shutdown' || reason === 'claim-lost') return;
        // The claim was lost before the run started (its load was fenced): nothing was written.
        if (isClaimLost(error))
          logger.warn({ runId: claimed.runId }, 'run no longer claimed here; stopped');
        else
          logger.error(
            { runId: claimed.runId, err: { message: (error as Error).message } },
            'run execution failed',
          );
      })
      .finally(() => {
        running.delete(claimed.runId);
        if (!claimedWithFinish) requestWake();
      });
    running.set(claimed.runId, { claim: claimed, controller, done });
  }

  /** Whether this process alone runs as many of the owner's runs as a default cap allows. */
  function atLocalCap(owner: { readonly tenantId: string; readonly userId: string }): boolean {
    const tenantCap = options.maxConcurrentPerTenant ?? 0;
    const userCap = options.maxConcurrentPerUser ?? 0;
    if (tenantCap === 0 && userCap === 0) return false;
    let tenant = 0;
    let user = 0;
    for (const { claim } of running.values()) {
      if (claim.tenantId === owner.tenantId) tenant += 1;
      if (claim.userId === owner.userId) user += 1;
    }
    return (tenantCap > 0 && tenant >= tenantCap) || (userCap > 0 && user >= userCap);
  }

  /** Returns claims of this process to the queue (at shutdown), so another process takes them. */
  async function handBack(runIds: readonly string[]): Promise<void> {
    if (runIds.length === 0) return;
    await database
      .withScope({ scheduler: true }, (db) =>
        db
          .updateTable('brigade.run_queue')
          .set({ state: 'queued', executor_id: null, heartbeat_at: null })
          .where('run_id', 'in', runIds)
          .where('executor_id', '=', executorId)
          .execute(),
      )
      .catch(() => undefined);
  }

  /**
   * Starts a run claimed on arrival outside the creating request's async context, so its spans
   * and logs are not the request's.
   */
  const launchDetached = AsyncResource.bind((claimed: RunClaim) => launch(claimed));

  const claimFailures = throttledFailureLog(logger, 'claiming runs failed');

  async function runLoop(): Promise<void> {
    while (!stopped) {
      const free = options.concurrency - running.size - held;
      if (free > 0 && claiming) claimDeferred = true;
      else if (free > 0) {
        claiming = true;
        try {
          for (const claimed of await claim(free)) launch(claimed);
          claimFailures.succeeded();
        } catch (error) {
          claimFailures.failed(error);
        } finally {
          claiming = false;
        }
      }
      if (wakeMissed) {
        wakeMissed = false;
        continue;
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

  /**
   * Renews this process's claims. A run whose entry this process no longer holds went stale
   * (heartbeats missed for `staleAfterMs`: a database outage that long, a stalled event loop)
   * and was resumed by another process, or by this one anew: the old execution stops at once,
   * writing nothing, instead of racing the new one to the run's outcome.
   */
  async function beat(): Promise<void> {
    if (running.size === 0) return;
    const runIds = [...running.keys()];
    const renewed = await database.withScope({ scheduler: true }, (db) =>
      db
        .updateTable('brigade.run_queue')
        .set({ heartbeat_at: new Date() })
        .where('executor_id', '=', executorId)
        .where('run_id', 'in', runIds)
        .returning('run_id')
        .execute(),
    );
    const renewedIds = new Set(renewed.map((row) => row.run_id));
    for (const runId of runIds) {
      const entry = running.get(runId);
      if (entry === undefined || renewedIds.has(runId)) continue;
      // Not renewed: ended meanwhile (finished, deleted), or held by another executor now.
      const claim = { ...entry.claim, executorId };
      if (!(await claimTakenOver(database, claim).catch(() => false))) continue;
      logger.warn({ runId }, 'run resumed by another process; stopping it here');
      entry.controller.abort('claim-lost' satisfies AbortReason);
    }
  }

  /**
   * After the signal connection was lost and is back: a cancel request (or a deletion) of a run
   * executing here may have been signalled meanwhile and missed, so each run's row is read.
   */
  async function recheckCancels(): Promise<void> {
    for (const [runId, entry] of running) {
      const row = await database.withScope(entry.claim, (db) =>
        db
          .selectFrom('brigade.runs')
          .select('cancel_requested_at')
          .where('id', '=', runId)
          .executeTakeFirst(),
      );
      if (row === undefined || row.cancel_requested_at !== null)
        entry.controller.abort('cancel' satisfies AbortReason);
    }
  }

  return {
    executorId,
    get active() {
      return running.size;
    },
    arrival(owner) {
      if (!started || stopped) return undefined;
      const atCap = atLocalCap(owner);
      const common = {
        atCap,
        maxPerTenant: options.maxConcurrentPerTenant ?? 0,
        maxPerUser: options.maxConcurrentPerUser ?? 0,
      };
      if (atCap || options.concurrency - running.size - held <= 0)
        return { ...common, executorId: null, launch: () => undefined, release: () => undefined };
      held += 1;
      let settled = false;
      const settle = () => {
        if (settled) return false;
        settled = true;
        held -= 1;
        return true;
      };
      return {
        ...common,
        executorId,
        launch(claimed) {
          if (!settle()) return;
          // Shutting down: the run goes back to the queue for another process.
          if (stopped) void handBack([claimed.runId]);
          else launchDetached(claimed);
        },
        release() {
          // The loop skips claiming while every slot is taken or held: wake it if this was
          // the slot it lacked.
          if (settle() && options.concurrency - running.size - held === 1) requestWake();
        },
      };
    },
    async start() {
      started = true;
      options.signals.onQueueChanged(requestWake);
      options.signals.onCancelRequested((runId) => {
        running.get(runId)?.controller.abort('cancel' satisfies AbortReason);
      });
      options.signals.onReconnected(() => {
        recheckCancels().catch((error: unknown) =>
          logger.warn({ err: { message: (error as Error).message } }, 'cancel recheck failed'),
        );
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
      // Hand unfinished runs back at once so another process resumes them without waiting.
      await handBack([...remaining, ...claimedWhileStopping]);
    },
  };
}

/**
 * Logs a failure that repeats at every poll while the database is away (four a second) once,
 * then at most every 30 s with how often it repeated, and once when it works again.
 */
export function throttledFailureLog(logger: ExecutorLogger, message: string) {
  let since: number | undefined;
  let repeats = 0;
  return {
    failed(error: unknown) {
      const now = Date.now();
      if (since !== undefined && now - since < 30_000) {
        repeats += 1;
        return;
      }
      logger.warn({ err: { message: (error as Error).message }, repeats }, message);
      since = now;
      repeats = 0;
    },
    succeeded() {
      if (since === undefined) return;
      logger.info({ repeats }, `${message} before; it works again`);
      since = undefined;
      repeats = 0;
    },
  };
}
