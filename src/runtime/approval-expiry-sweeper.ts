import type { ApprovalExpiryStore } from '../storage/runs/approval-expiry.ts';
import { createPeriodicJob, type PeriodicJob } from './periodic-job.ts';

/** Minimal logger the sweeper reports to. */
export interface SweeperLogger {
  info(object: object, message: string): void;
  warn(object: object, message: string): void;
}

/** The background job that expires approvals nobody decided in time. */
export type ApprovalExpirySweeper = PeriodicJob;

/**
 * Every `pollMs`, expires the pending approvals past their `expires_at` and resumes their
 * runs (see {@link ApprovalExpiryStore}). Every process runs it; the store's `skip locked`
 * claims keep them from handling one run twice. Rounds never overlap within a process.
 */
export function createApprovalExpirySweeper(options: {
  readonly store: ApprovalExpiryStore;
  readonly pollMs: number;
  readonly logger: SweeperLogger;
}): ApprovalExpirySweeper {
  const { store, logger } = options;
  return createPeriodicJob({
    pollMs: options.pollMs,
    round: async () => {
      const resumed = await store.expireDue({
        onError: (error, runId) =>
          logger.warn({ runId, err: { message: error.message } }, 'expiring an approval failed'),
      });
      if (resumed > 0) logger.info({ resumed }, 'expired approvals: runs resumed');
      return resumed;
    },
    onError: (error) => logger.warn({ err: { message: error.message } }, 'approval expiry failed'),
  });
}
