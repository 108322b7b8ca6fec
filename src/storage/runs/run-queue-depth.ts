import { sql } from 'kysely';
import type { Database } from '../postgres/database.ts';

/** States a run-queue entry can be in: waiting for a slot, being executed, waiting for a decision. */
export const runQueueStates = ['queued', 'claimed', 'parked'] as const;

/** How many runs are in the queue, by state: every state is present (0 when none). */
export type RunQueueDepth = Readonly<Record<(typeof runQueueStates)[number], number>>;

/**
 * Counts the run queue of the whole deployment (every tenant, every process), by state. The
 * queue holds only live runs (an entry goes when its run ends; admission caps each tenant's
 * queued runs), so the count reads a small table, in the scheduler's scope (ids-only rows,
 * no content), one statement.
 */
export async function loadRunQueueDepth(database: Database): Promise<RunQueueDepth> {
  const rows = await database.withScope({ scheduler: true }, async (db) => {
    const result = await sql<{ state: string; count: number }>`
      select state, count(*)::int as count from brigade.run_queue group by state`.execute(db);
    return result.rows;
  });
  const depth = { queued: 0, claimed: 0, parked: 0 };
  for (const row of rows)
    if ((runQueueStates as readonly string[]).includes(row.state))
      depth[row.state as keyof typeof depth] = row.count;
  return depth;
}
