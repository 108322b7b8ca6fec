import type { RetentionResult, RetentionSettings } from '../storage/retention/retention-store.ts';
import { createPeriodicJob, type PeriodicJob } from './periodic-job.ts';

/** Minimal logger the sweeper reports to. */
export interface MaintenanceLogger {
  info(object: object, message: string): void;
  warn(object: object, message: string): void;
}

/** The background job that resolves expired reservations and deletes what is past retention. */
export type MaintenanceSweeper = PeriodicJob;

/**
 * Every `pollMs`, in every process: resolves budget reservations nobody settled by their
 * expiry (a process died mid-call and no run resumed them, e.g. an API call) as orphaned —
 * charged in full, never silently freed —, deletes spans older than the span retention, and
 * deletes the bookkeeping rows past `retention` ({@link RetentionSettings}). Each part's
 * failure is reported on its own and does not stop the others; rounds never overlap in a
 * process, and processes skip the rows another is deleting. Resolves with the rows changed.
 */
export function createMaintenanceSweeper(options: {
  readonly pollMs: number;
  readonly tasks: {
    readonly resolveExpiredReservations: () => Promise<number>;
    readonly pruneSpans: () => Promise<number>;
    readonly pruneRetained: (settings: RetentionSettings) => Promise<RetentionResult>;
  };
  readonly retention: RetentionSettings;
  readonly logger: MaintenanceLogger;
}): MaintenanceSweeper {
  const { tasks, logger } = options;
  async function part<T>(failure: string, work: () => Promise<T>): Promise<T | undefined> {
    try {
      return await work();
    } catch (error) {
      logger.warn({ err: { message: (error as Error).message } }, failure);
      return undefined;
    }
  }
  return createPeriodicJob({
    pollMs: options.pollMs,
    round: async () => {
      const resolved =
        (await part('reservation sweep failed', tasks.resolveExpiredReservations)) ?? 0;
      if (resolved > 0) logger.warn({ resolved }, 'resolved expired budget reservations');
      const spans = (await part('pruning spans failed', tasks.pruneSpans)) ?? 0;
      const retained = await part('deleting rows past retention failed', () =>
        tasks.pruneRetained(options.retention),
      );
      const deleted = Object.values(retained ?? {}).reduce((sum, count) => sum + count, 0);
      if (deleted > 0) logger.info({ deleted: retained }, 'deleted rows past retention');
      return resolved + spans + deleted;
    },
    onError: (error) => logger.warn({ err: { message: error.message } }, 'maintenance failed'),
  });
}
