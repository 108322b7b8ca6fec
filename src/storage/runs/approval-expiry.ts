import { sql } from 'kysely';
import { writeAudit } from '../identity/audit-writer.ts';
import type { Database, ScopedDb } from '../postgres/database.ts';
import type { RunSignalSink } from './run-rows.ts';
import { appendEvents } from './run-store.ts';

/** Why an approval the user did not decide in time ended (the decision reason it records). */
export const approvalExpiredReason = 'approval_expired';

/** The reason recorded for a pending approval found when its run had already ended. */
export const runEndedReason = 'run_ended';

/** How long a sweeper holds a parked run it took before another process may take it again. */
const leaseSeconds = 60;

/** The columns of a pending approval that expiring it needs. */
export interface ExpiringApproval {
  readonly id: string;
  readonly tenant_id: string;
  readonly run_id: string;
  readonly tool_call_id: string;
  readonly tool_name: string;
  readonly arguments_hash: string;
  readonly expires_at: Date;
}

/**
 * Marks one pending approval `expired` and audits it (`approval.expired`, by the system) in the
 * caller's transaction, which must hold the approval's row lock and be scoped to its user, and
 * should hold its run's (approval, run, then the audit head: the order every writer takes).
 * Returns the `approval-decided` event to append to the run. The run's tool call then ends as
 * if the user had rejected it: the model is told the approval expired, and nothing runs.
 * `reason` (default `approval_expired`) is recorded as the decision reason and the audit's.
 */
export async function expireApproval(
  db: ScopedDb,
  approval: ExpiringApproval,
  reason: string = approvalExpiredReason,
): Promise<{ type: string; data: Record<string, unknown> }> {
  const event = await markApprovalExpired(db, approval, reason);
  await auditApprovalExpired(db, approval, reason);
  return event;
}

/** {@link expireApproval} without its audit event (which the caller then writes last). */
export async function markApprovalExpired(
  db: ScopedDb,
  approval: ExpiringApproval,
  reason: string,
): Promise<{ type: string; data: Record<string, unknown> }> {
  await db
    .updateTable('brigade.approvals')
    .set({
      status: 'expired',
      decision: null,
      edited_arguments: null,
      decision_reason: reason,
      decided_at: new Date(),
    })
    .where('id', '=', approval.id)
    .where('status', '=', 'pending')
    .execute();
  return {
    type: 'approval-decided',
    data: {
      approvalId: approval.id,
      status: 'expired',
      decision: null,
      reason,
      toolCallId: approval.tool_call_id,
    },
  };
}

/** The `approval.expired` audit event of {@link expireApproval}, by the system. */
export async function auditApprovalExpired(
  db: ScopedDb,
  approval: ExpiringApproval,
  reason: string,
): Promise<void> {
  await writeAudit(db, {
    tenantId: approval.tenant_id,
    principal: undefined,
    record: {
      action: 'approval.expired',
      targetType: 'approval',
      targetId: approval.id,
      outcome: 'failure',
      reason,
      data: {
        runId: approval.run_id,
        toolName: approval.tool_name,
        toolCallId: approval.tool_call_id,
        argumentsHash: approval.arguments_hash,
        expiresAt: approval.expires_at.toISOString(),
      },
    },
  });
}

/** A parked run the sweep took: whose it is (the queue holds ids only). */
interface ParkedRun {
  readonly run_id: string;
  readonly tenant_id: string;
  readonly user_id: string;
}

/**
 * The approval expiry sweep. Each round takes up to `limit` parked runs whose approval time
 * has come (`run_queue.wake_at`, or none recorded) with `for update skip locked` under the
 * scheduler scope, leasing them for a minute, so concurrent sweepers of several processes take
 * disjoint runs. Each run is then handled in its user's scope: its pending approvals past
 * `expires_at` are locked (`skip locked`: a user deciding right now wins), marked `expired` and
 * audited, and the run is requeued; the resumed run finds the expiry at the same tool call and
 * tells the model. A pending approval whose row another transaction holds is left for the next
 * round; the status check under the row lock means an approval is expired at most once.
 */
export function createApprovalExpiryStore(options: {
  readonly database: Database;
  /** Told after commit, so the run resumes and its streams wake at once. */
  readonly signals: RunSignalSink;
}) {
  const { database } = options;

  async function take(limit: number): Promise<ParkedRun[]> {
    return database.withScope({ scheduler: true }, async (db) => {
      const result = await sql<ParkedRun>`
        update brigade.run_queue q
           set wake_at = now() + make_interval(secs => ${leaseSeconds})
         where q.run_id in (
           select run_id from brigade.run_queue
            where state = 'parked' and (wake_at is null or wake_at <= now())
            order by wake_at nulls first
            limit ${limit}
            for update skip locked)
           and q.state = 'parked'
        returning q.run_id, q.tenant_id, q.user_id`.execute(db);
      return result.rows;
    });
  }

  /** Expires what is due of one run; true when the run was requeued. */
  async function sweepRun(parked: ParkedRun): Promise<boolean> {
    return database.withScope(
      { tenantId: parked.tenant_id, userId: parked.user_id },
      async (db) => {
        const pending = await db
          .selectFrom('brigade.approvals')
          .select([
            'id',
            'tenant_id',
            'run_id',
            'tool_call_id',
            'tool_name',
            'arguments_hash',
            'expires_at',
          ])
          .where('run_id', '=', parked.run_id)
          .where('status', '=', 'pending')
          .forUpdate()
          .skipLocked()
          .execute();
        const now = Date.now();
        const due = pending.filter((approval) => approval.expires_at.getTime() <= now);
        if (due.length === 0) {
          if (pending.length > 0) {
            // Not yet: wake again when the first one expires.
            const next = Math.min(...pending.map((approval) => approval.expires_at.getTime()));
            await db
              .updateTable('brigade.run_queue')
              .set({ wake_at: new Date(next) })
              .where('run_id', '=', parked.run_id)
              .where('state', '=', 'parked')
              .execute();
            return false;
          }
          const locked = await db
            .selectFrom('brigade.approvals')
            .select('id')
            .where('run_id', '=', parked.run_id)
            .where('status', '=', 'pending')
            .executeTakeFirst();
          // A decision is being written (it requeues the run itself): leave it to that.
          if (locked !== undefined) return false;
        }
        // The run's row before anything is written (approval, then run, then the audit head:
        // the order a decision takes, so the two never wait for each other in a circle), then
        // its entry: one no longer parked (a decision requeued the run since this sweep took
        // it, and an execution may hold it and number its events) is left alone; that
        // execution's gate expires what is due itself.
        await db
          .selectFrom('brigade.runs')
          .select('id')
          .where('id', '=', parked.run_id)
          .forUpdate()
          .execute();
        const still = await db
          .selectFrom('brigade.run_queue')
          .select('run_id')
          .where('run_id', '=', parked.run_id)
          .where('state', '=', 'parked')
          .forUpdate()
          .executeTakeFirst();
        if (still === undefined) return false;
        const events = [];
        for (const approval of due) events.push(await expireApproval(db, approval));
        // Resume the run (also one parked with no pending approval left: it finds its
        // decision); its entry is parked and locked (above).
        await db
          .updateTable('brigade.run_queue')
          .set({ state: 'queued', executor_id: null, heartbeat_at: null, wake_at: null })
          .where('run_id', '=', parked.run_id)
          .execute();
        const run = await db
          .updateTable('brigade.runs')
          .set({ status: 'queued', pending_action: null, deadline_at: null })
          .where('id', '=', parked.run_id)
          .where('status', 'in', ['requires_action', 'running', 'queued'])
          .returning('id')
          .executeTakeFirst();
        if (events.length > 0) {
          const last = await db
            .selectFrom('brigade.run_events')
            .select((eb) => eb.fn.max('seq').as('seq'))
            .where('run_id', '=', parked.run_id)
            .executeTakeFirst();
          await appendEvents(
            db,
            {
              tenantId: parked.tenant_id,
              userId: parked.user_id,
              runId: parked.run_id,
              firstSeq: Number(last?.seq ?? 0) + 1,
            },
            events,
          );
        }
        return run !== undefined;
      },
    );
  }

  return {
    /**
     * One round of the sweep; resolves with the number of approvals' runs it resumed. A run
     * that fails is logged by the caller's `onError` and retried after its lease.
     */
    async expireDue(round: {
      readonly limit?: number;
      readonly onError?: (error: Error, runId: string) => void;
    }): Promise<number> {
      let resumed = 0;
      for (const parked of await take(round.limit ?? 100)) {
        try {
          if (await sweepRun(parked)) {
            resumed += 1;
            options.signals.runChanged(parked.run_id);
          }
        } catch (error) {
          round.onError?.(error as Error, parked.run_id);
        }
      }
      if (resumed > 0) options.signals.queueChanged();
      return resumed;
    },
  };
}

/** The approval expiry store's interface. */
export type ApprovalExpiryStore = ReturnType<typeof createApprovalExpiryStore>;
