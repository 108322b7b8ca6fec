/** A deadlock the server broke (40P01) or a serialisation failure (40001). */
export function isTransientConflict(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === '40P01' || code === '40001';
}

/**
 * Runs `transaction` (one whole transaction: it must start and commit inside) again when
 * PostgreSQL rolled it back for a deadlock or a serialisation failure, up to `attempts` times
 * in all, after a short random pause so the two sides do not meet again in step. Nothing of a
 * rolled-back attempt was written, so trying again is safe; any other error is thrown at once.
 *
 * For rare administrative writes that must take locks the hot path also takes, in an order
 * the hot path cannot always keep: a tenant's batch of budget calls locks each call's counters
 * in order, but not the whole batch's (migration 0019), so a time-zone change's carry can meet
 * it the other way round. The batch is already made again call by call when it loses; this is
 * the same for the change.
 */
export async function retryingConflicts<T>(
  transaction: () => Promise<T>,
  attempts = 3,
): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await transaction();
    } catch (error) {
      if (attempt >= attempts || !isTransientConflict(error)) throw error;
      await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 45));
    }
  }
}
