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

/** A refusal is logged again, unchanged, at most this often (it is also logged when it changes). */
const repeatRefusalMs = 3_600_000;

/**
 * Every `pollMs`, signs a checkpoint for each tenant with `due.everyEvents` uncovered events or
 * whose last checkpoint is older than `due.intervalSeconds` (and whose chain advanced since).
 * Several processes may run it: a checkpoint already written by another is skipped. A tampered
 * tenant stays due and is refused every round: its refusal is logged (as an error) when it
 * first happens, when its reason changes, and otherwise at most hourly, not every `pollMs`.
 */
export function createAuditCheckpointer(options: {
  readonly store: AuditCheckpointStore;
  readonly due: CheckpointDue;
  readonly pollMs: number;
  readonly logger: CheckpointerLogger;
  /** For tests: the clock (milliseconds). */
  readonly now?: (() => number) | undefined;
}): AuditCheckpointer {
  const { store, logger } = options;
  const now = options.now ?? Date.now;
  /** The last refusal logged per tenant still refused: its message and when. */
  const refused = new Map<string, { readonly message: string; readonly at: number }>();

  async function checkpointDue(): Promise<number> {
    let signed = 0;
    const due = await store.due(options.due);
    // A tenant no longer due (deleted, or signed by another process) starts afresh.
    for (const tenantId of refused.keys()) if (!due.includes(tenantId)) refused.delete(tenantId);
    for (const tenantId of due) {
      try {
        if ((await store.checkpoint(tenantId)) !== undefined) signed += 1;
        refused.delete(tenantId);
      } catch (error) {
        const message = (error as Error).message;
        const last = refused.get(tenantId);
        if (last !== undefined && last.message === message && now() - last.at < repeatRefusalMs)
          continue;
        refused.set(tenantId, { message, at: now() });
        logger.error({ tenantId, err: { message } }, 'audit checkpoint refused');
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
