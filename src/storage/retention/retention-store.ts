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

/** Rows deleted per table and round: a backlog goes in several rounds, never in one long lock. */
const batchSize = 10_000;

/**
 * Deletes up to {@link batchSize} rows of `table` matching `where`, in the scheduler's scope
 * (migration 0039 lets only it delete). Rows another process is deleting are skipped.
 */
async function prune(database: Database, table: string, where: RawBuilder<unknown>) {
  return database.withScope({ scheduler: true }, async (db) => {
    const result = await sql`
      delete from ${sql.table(table)}
       where ctid in (select ctid from ${sql.table(table)} where ${where}
                       limit ${batchSize} for update skip locked)`.execute(db);
    return Number(result.numAffectedRows ?? 0);
  });
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
      const reservations = await prune(
        database,
        'brigade.budget_reservations',
        sql`status <> 'reserved' and resolved_at < ${days(settings.reservationDays)}`,
      );
      const limitCounters = await prune(
        database,
        'brigade.limit_counters',
        sql`period_start > '-infinity' and period_start < ${days(settings.limitCounterDays)}
            and reserved = 0`,
      );
      const budgetAlerts = await prune(
        database,
        'brigade.budget_alerts',
        sql`announced_at is not null and period_start < ${days(settings.limitCounterDays)}`,
      );
      const webhookDeliveries = await prune(
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
