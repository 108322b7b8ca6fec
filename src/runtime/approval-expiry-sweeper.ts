import type { ApprovalExpiryStore } from '../storage/runs/approval-expiry.ts';

/** Minimal logger the sweeper reports to. */
export interface SweeperLogger {
  info(object: object, message: string): void;
  warn(object: object, message: string): void;
}

/** The background job that expires approvals nobody decided in time. */
export interface ApprovalExpirySweeper {
  /** Starts polling every `pollMs`. */
  start(): void;
  /** One round; resolves with the number of runs it resumed. */
  runOnce(): Promise<number>;
  /** Stops polling and waits for a round in progress. */
  stop(): Promise<void>;
}

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
  let timer: NodeJS.Timeout | undefined;
  let round: Promise<number> | undefined;

  const runOnce = () => {
    round ??= store
      .expireDue({
        onError: (error, runId) =>
          logger.warn({ runId, err: { message: error.message } }, 'expiring an approval failed'),
      })
      .then((resumed) => {
        if (resumed > 0) logger.info({ resumed }, 'expired approvals: runs resumed');
        return resumed;
      })
      .finally(() => {
        round = undefined;
      });
    return round;
  };

  return {
    start() {
      if (timer !== undefined) return;
      timer = setInterval(() => {
        runOnce().catch((error: unknown) =>
          logger.warn({ err: { message: (error as Error).message } }, 'approval expiry failed'),
        );
      }, options.pollMs);
      timer.unref();
    },
    runOnce,
    async stop() {
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
      await round?.catch(() => undefined);
    },
  };
}
