import type {
  AuditCheckpointStore,
  CheckpointDue,
} from '../storage/identity/audit-checkpoint-store.ts';

/** Minimal logger the checkpointer reports to. */
export interface CheckpointerLogger {
  warn(object: object, message: string): void;
  error(object: object, message: string): void;
}

/** The background job that signs audit checkpoints. */
export interface AuditCheckpointer {
  /** Starts polling (no-op when the store has no signing key). */
  start(): void;
  /** Checkpoints every due tenant once; resolves with how many were signed. */
  runOnce(): Promise<number>;
  /** Stops polling and waits for a round in progress. */
  stop(): Promise<void>;
}

/**
 * Every `pollMs`, signs a checkpoint for each tenant with `due.everyEvents` uncovered events or
 * whose last checkpoint is older than `due.intervalSeconds` (and whose chain advanced since).
 * Several processes may run it: a checkpoint already written by another is skipped.
 */
export function createAuditCheckpointer(options: {
  readonly store: AuditCheckpointStore;
  readonly due: CheckpointDue;
  readonly pollMs: number;
  readonly logger: CheckpointerLogger;
}): AuditCheckpointer {
  const { store, logger } = options;
  let timer: NodeJS.Timeout | undefined;
  let round: Promise<number> | undefined;

  async function checkpointDue(): Promise<number> {
    let signed = 0;
    for (const tenantId of await store.due(options.due)) {
      try {
        if ((await store.checkpoint(tenantId)) !== undefined) signed += 1;
      } catch (error) {
        logger.error(
          { tenantId, err: { message: (error as Error).message } },
          'audit checkpoint refused',
        );
      }
    }
    return signed;
  }

  const runOnce = () => {
    round ??= checkpointDue().finally(() => {
      round = undefined;
    });
    return round;
  };

  return {
    start() {
      if (!store.enabled || timer !== undefined) return;
      timer = setInterval(() => {
        runOnce().catch((error: unknown) =>
          logger.warn({ err: { message: (error as Error).message } }, 'audit checkpoints failed'),
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
