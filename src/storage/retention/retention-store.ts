import { type RawBuilder, sql } from 'kysely';
import type { Database } from '../postgres/database.ts';

/** How long bookkeeping rows are kept once they no longer matter, in days (`retention`). */
export interface RetentionSettings {
  /** Resolved (settled, released, orphaned) budget reservations, after their resolution. */
  readonly reservationDays: number;
  /**
   * Limit counters of past periods and the announced budget alerts of those periods, after the
   * period began. At least 91: the longest rolling budget window is 90 days.
   */
  readonly limitCounterDays: number;
  /** Delivered and failed webhook deliveries, after they were queued. */
  readonly webhookDeliveryDays: number;
}

/** Rows one round deleted, by table. */
export interface RetentionResult {
  readonly reservations: number;
  readonly limitCounters: number;
  readonly budgetAlerts: number;
  readonly webhookDeliveries: number;
}

/** Rows deleted per statement (and transaction): a backlog never holds one long lock. */
const batchSize = 10_000;
/**
 * Statements per table and round: up to a million rows a round, so a sweep keeps up with a
 * busy deployment (one batch per 30 s round was ~333 rows/s, fewer than spans and
 * reservations are written at a few hundred calls a second) and a backlog drains in a round
 * or a few.
 */
const maxBatchesPerRound = 100;

/**
 * Deletes the rows of `table` matching `where`, {@link batchSize} per statement until none are
 * left (at most {@link maxBatchesPerRound} statements), in the scheduler's scope: its policies
 * must let the scheduler read and delete them (no `for update`: the runtime role may not
 * update spans). A row another process deleted meanwhile is skipped once its transaction
 * commits. Returns how many were deleted.
 */
export async function deleteInBatches(
  database: Database,
  table: string,
  where: RawBuilder<unknown>,
): Promise<number> {
  let deleted = 0;
  for (let batch = 0; batch < maxBatchesPerRound; batch += 1) {
    const count = await database.withScope({ scheduler: true }, async (db) => {
      const result = await sql`
        delete from ${sql.table(table)}
         where ctid in (select ctid from ${sql.table(table)} where ${where}
                         limit ${batchSize})`.execute(db);
      return Number(result.numAffectedRows ?? 0);
    });
    deleted += count;
    if (count < batchSize) break;
  }
  return deleted;
}

/**
 * The retention store: deletes the rows of every tenant that are past their retention. What
 * must be kept is never touched: open reservations, the counters they hold amounts in and every
 * counter of a period that may still count (a rolling window's anchor row included), alerts
 * not yet announced, deliveries still pending; the usage ledger and the audit log are kept.
 */
export function createRetentionStore(database: Database) {
  return {
    async prune(settings: RetentionSettings): Promise<RetentionResult> {
      const days = (count: number) => sql`now() - make_interval(days => ${count})`;
      const reservations = await deleteInBatches(
        database,
        'brigade.budget_reservations',
        sql`status <> 'reserved' and resolved_at < ${days(settings.reservationDays)}`,
      );
      const limitCounters = await deleteInBatches(
        database,
        'brigade.limit_counters',
        sql`period_start > '-infinity' and period_start < ${days(settings.limitCounterDays)}
            and reserved = 0`,
      );
      const budgetAlerts = await deleteInBatches(
        database,
        'brigade.budget_alerts',
        sql`announced_at is not null and period_start < ${days(settings.limitCounterDays)}`,
      );
      const webhookDeliveries = await deleteInBatches(
        database,
        'brigade.webhook_deliveries',
        sql`status <> 'pending' and created_at < ${days(settings.webhookDeliveryDays)}`,
      );
      return { reservations, limitCounters, budgetAlerts, webhookDeliveries };
    },
  };
}

/** The retention store's type. */
export type RetentionStore = ReturnType<typeof createRetentionStore>;
