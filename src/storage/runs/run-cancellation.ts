import { sql } from 'kysely';
import type { Database, ScopedDb } from '../postgres/database.ts';
import { storableJson } from '../postgres/storable.ts';
import type { RunSignalSink } from './run-rows.ts';

export const activeStatuses = ['queued', 'running', 'requires_action'] as const;

/** Appends events to a run with consecutive sequence numbers, and wakes stream readers. */
export async function appendEvents(
  db: ScopedDb,
  run: { tenantId: string; userId: string; runId: string; firstSeq: number },
  events: readonly { type: string; data: Record<string, unknown> }[],
): Promise<void> {
  if (events.length === 0) return;
  await db
    .insertInto('brigade.run_events')
    .values(
      events.map((event, index) => ({
        tenant_id: run.tenantId,
        user_id: run.userId,
        run_id: run.runId,
        seq: run.firstSeq + index,
        type: event.type,
        data: storableJson(event.data) ?? 'null',
        created_at: new Date(),
      })),
    )
    .execute();
}

export async function nextSeq(db: ScopedDb, runId: string): Promise<number> {
  const row = await db
    .selectFrom('brigade.run_events')
    .select(sql<number>`coalesce(max(seq), 0) + 1`.as('next'))
    .where('run_id', '=', runId)
    .executeTakeFirst();
  return Number(row?.next ?? 1);
}

/**
 * Locks the pending approvals of one run, of a thread's runs or of a user's runs (in the
 * caller's scope), before the caller locks the runs. Approval, then run, is the order every
 * writer of both takes: a decision, the executor's approval gate and its park, the expiry
 * sweep, a thread's deletion. A cancel that locked the run first and then updated its approval
 * deadlocked with a decision made at the same moment (a 503 for one of them).
 */
export async function lockPendingApprovals(
  db: ScopedDb,
  of: { readonly runId: string } | { readonly threadId: string } | { readonly userId: string },
): Promise<void> {
  const [column, value] =
    'runId' in of
      ? (['run_id', of.runId] as const)
      : 'threadId' in of
        ? (['thread_id', of.threadId] as const)
        : (['user_id', of.userId] as const);
  await db
    .selectFrom('brigade.approvals')
    .select('id')
    .where(column, '=', value)
    .where('status', '=', 'pending')
    .orderBy('id')
    .forUpdate()
    .execute();
}

/**
 * Cancels the active runs of a thread inside the caller's transaction: queued ones at once,
 * running ones by request (their executor aborts and records the cancellation).
 */
export async function cancelActive(
  db: ScopedDb,
  options: { threadId: string; rollback: boolean; signals: Signals },
): Promise<void> {
  const { threadId, rollback } = options;
  await lockPendingApprovals(db, { threadId });
  const active = await db
    .selectFrom('brigade.runs')
    .select(['id', 'tenant_id', 'user_id', 'status'])
    .where('thread_id', '=', threadId)
    .where('status', 'in', activeStatuses)
    // Locked in one order everywhere, so two cancellations of overlapping runs cannot deadlock.
    .orderBy('id')
    .forUpdate()
    .execute();
  for (const run of active) {
    await cancelOne(db, {
      id: run.id,
      tenantId: run.tenant_id,
      userId: run.user_id,
      signals: options.signals,
    });
  }
  if (rollback && active.length > 0) {
    await db
      .deleteFrom('brigade.messages')
      .where(
        'run_id',
        'in',
        active.map((run) => run.id),
      )
      .execute();
  }
}

/** Signals to send once the transaction has committed. */
export interface Signals {
  readonly changed: Set<string>;
  readonly cancelled: Set<string>;
}

export async function cancelOne(
  db: ScopedDb,
  run: { id: string; tenantId: string; userId: string; signals: Signals; reason?: string },
): Promise<void> {
  // A queued run (or one parked for an approval) has no executor: cancel it here and now.
  const unclaimed = await db
    .deleteFrom('brigade.run_queue')
    .where('run_id', '=', run.id)
    .where('state', 'in', ['queued', 'parked'])
    .executeTakeFirst();
  const now = new Date();
  if (unclaimed.numDeletedRows > 0n) {
    await db
      .updateTable('brigade.approvals')
      .set({ status: 'expired', decided_at: now, decision_reason: 'run cancelled' })
      .where('run_id', '=', run.id)
      .where('status', '=', 'pending')
      .execute();
    await db
      .updateTable('brigade.runs')
      .set({
        status: 'cancelled',
        cancel_requested_at: now,
        completed_at: now,
        error_code: 'cancelled',
      })
      .where('id', '=', run.id)
      .execute();
    await appendEvents(
      db,
      {
        tenantId: run.tenantId,
        userId: run.userId,
        runId: run.id,
        firstSeq: await nextSeq(db, run.id),
      },
      [{ type: 'run-cancelled', data: { reason: run.reason ?? 'cancelled before it started' } }],
    );
    run.signals.changed.add(run.id);
    return;
  }
  await db
    .updateTable('brigade.runs')
    .set({ cancel_requested_at: sql<Date>`coalesce(cancel_requested_at, ${now})` })
    .where('id', '=', run.id)
    .execute();
  run.signals.cancelled.add(run.id);
}

/**
 * Cancels every active run of one user, or of every user of a tenant: the user was disabled or
 * the tenant suspended, so nothing may go on acting for them. Queued and parked runs end at
 * once; running ones are asked to stop (their executor aborts the call in flight, in whichever
 * process runs it). Each user's runs are cancelled in that user's own scope (only it sees
 * them); the tenant's users with active runs are found in its ids-only queue.
 */
export async function cancelRunsOf(
  database: Database,
  sink: RunSignalSink,
  subject: { readonly tenantId: string; readonly userId?: string; readonly reason: string },
): Promise<number> {
  const { tenantId } = subject;
  const users =
    subject.userId !== undefined
      ? [subject.userId]
      : await database.withScope({ tenantId, tenantQueue: true }, async (db) =>
          (
            await db
              .selectFrom('brigade.run_queue')
              .select('user_id')
              .distinct()
              .where('tenant_id', '=', tenantId)
              .execute()
          ).map((row) => row.user_id),
        );
  let cancelled = 0;
  for (const userId of users) {
    const signals: Signals = { changed: new Set(), cancelled: new Set() };
    cancelled += await database.withScope({ tenantId, userId }, async (db) => {
      await lockPendingApprovals(db, { userId });
      const active = await db
        .selectFrom('brigade.runs')
        .select('id')
        .where('tenant_id', '=', tenantId)
        .where('user_id', '=', userId)
        .where('status', 'in', activeStatuses)
        .orderBy('id')
        .forUpdate()
        .execute();
      for (const run of active)
        await cancelOne(db, { id: run.id, tenantId, userId, signals, reason: subject.reason });
      return active.length;
    });
    sendSignals(sink, signals);
  }
  return cancelled;
}

/** Sends the signals a committed transaction collected. */
export function sendSignals(sink: RunSignalSink, signals: Signals): void {
  for (const runId of signals.cancelled) sink.cancelRequested(runId);
  for (const runId of signals.changed) sink.runChanged(runId);
  if (signals.changed.size > 0) sink.queueChanged();
}
