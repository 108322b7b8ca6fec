import type {
  AuditCheckpointStore,
  CheckpointDue,
} from '../storage/identity/audit-checkpoint-store.ts';
import { createPeriodicJob, type PeriodicJob } from './periodic-job.ts';

/** Minimal logger the checkpointer reports to. */
export interface CheckpointerLogger {
  warn(object: object, message: string): void;
  error(object: object, message: string): void;
}

/** The background job that signs audit checkpoints (`start` is a no-op without a signing key). */
export type AuditCheckpointer = PeriodicJob;

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

  const job = createPeriodicJob({
    pollMs: options.pollMs,
    round: checkpointDue,
    onError: (error) =>
      logger.warn({ err: { message: error.message } }, 'audit checkpoints failed'),
  });
  return {
    ...job,
    start() {
      if (store.enabled) job.start();
    },
  };
}
