import { AppError, NotFoundError } from '../../domain/errors.ts';
import type { Page, PageRequest } from '../../domain/identity/identity-ports.ts';
import type { UserPrincipal } from '../../domain/identity/principal.ts';
import { argumentsHashScheme, plainArgumentsHash } from '../../domain/tools/arguments-hash.ts';
import { writeAudit } from '../identity/audit-writer.ts';
import { scopeFor } from '../identity/scope-for.ts';
import {
  afterCreation,
  creationMicros,
  parseCreationCursor,
  toCreationPage,
} from '../postgres/creation-order.ts';
import type { Database } from '../postgres/database.ts';
import type { ArgumentsHasher } from '../tools/arguments-hasher.ts';
import { expireApproval, runEndedReason } from './approval-expiry.ts';
import { activeStatuses } from './run-cancellation.ts';
import type { RunSignalSink } from './run-rows.ts';
import { appendEvents } from './run-store.ts';

/** A pending or decided approval as the API shows it. */
export interface Approval {
  readonly id: string;
  readonly threadId: string;
  readonly runId: string;
  readonly toolCallId: string;
  readonly toolName: string;
  readonly arguments: unknown;
  /**
   * `hmac-sha256:` and 64 hex digits (keyed per tenant), or 64 hex digits: the plain SHA-256
   * of approvals requested before hashes were keyed, or on a server without a vault key.
   */
  readonly argumentsHash: string;
  readonly reason: string;
  readonly status: 'pending' | 'approved' | 'rejected' | 'expired';
  readonly decision: 'approve' | 'reject' | 'edit' | null;
  readonly editedArguments: unknown;
  readonly decisionReason: string | null;
  readonly decidedAt: Date | null;
  readonly expiresAt: Date;
  readonly createdAt: Date;
}

/** A user's decision on an approval. */
export interface ApprovalDecision {
  readonly decision: 'approve' | 'reject' | 'edit';
  /** Replacement arguments (edit only); validated against the tool's schema. */
  readonly arguments?: unknown;
  readonly reason?: string | undefined;
  /**
   * The hash the user saw; when given, it must still match the pending call: the stored hash,
   * or the plain SHA-256 of the pending arguments (which the deciding user sees anyway).
   */
  readonly argumentsHash?: string | undefined;
}

/**
 * True when `presented` binds to the pending call `row`: it is the hash stored with the
 * approval (whichever scheme it was made with: approvals requested before hashes were keyed
 * keep their plain SHA-256), or the plain SHA-256 of its arguments, which a client can compute
 * itself (it is shown the arguments, so this tells it nothing new).
 */
function matchesPendingCall(
  presented: string,
  row: { readonly arguments_hash: string; readonly arguments: unknown },
): boolean {
  if (presented === row.arguments_hash) return true;
  return (
    argumentsHashScheme(presented) === 'sha256' && presented === plainArgumentsHash(row.arguments)
  );
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Pending approvals of the user, and decisions on them (which resume the run). */
export function createApprovalStore(options: {
  readonly database: Database;
  /** Validates edited arguments for a tool of the tenant; returns problems (empty = valid). */
  readonly validateArguments: (
    toolName: string,
    input: unknown,
    tenantId: string,
  ) => string[] | Promise<string[]>;
  /** Told after commit, so the run resumes and its streams wake at once. */
  readonly signals: RunSignalSink;
  /** Hashes edited arguments for the audit (keyed per tenant with a vault key). */
  readonly argumentsHasher: ArgumentsHasher;
}) {
  const { database } = options;
  return {
    /**
     * A page of the user's pending approvals in creation order, oldest first (`page.after`: a
     * creation cursor, see domain/creation-cursor.ts).
     */
    listPending(principal: UserPrincipal, page: PageRequest): Promise<Page<Approval>> {
      const after = page.after === undefined ? undefined : parseCreationCursor(page.after);
      return database.withScope(scopeFor(principal), async (db) => {
        let query = db
          .selectFrom('brigade.approvals')
          .selectAll()
          .select(creationMicros())
          .where('status', '=', 'pending')
          // Past its expiry it is no longer decidable (the expiry sweep marks it soon).
          .where('expires_at', '>', new Date())
          // Nor once its run ended (cancelled while it ran a sibling call, say): a decision
          // is refused then.
          .where(({ exists, selectFrom }) =>
            exists(
              selectFrom('brigade.runs as r')
                .select('r.id')
                .whereRef('r.id', '=', 'brigade.approvals.run_id')
                .where('r.status', 'in', activeStatuses),
            ),
          )
          .orderBy('created_at')
          .orderBy('id')
          .limit(page.limit + 1);
        if (after !== undefined) query = query.where(afterCreation(after));
        return toCreationPage(await query.execute(), { limit: page.limit, map: toApproval });
      });
    },
    async decide(
      principal: UserPrincipal,
      approvalId: string,
      decision: ApprovalDecision,
    ): Promise<Approval> {
      if (!uuidPattern.test(approvalId))
        throw new NotFoundError('approval_not_found', 'Approval not found.');
      const result = await database.withScope(scopeFor(principal), async (db) => {
        const row = await db
          .selectFrom('brigade.approvals')
          .selectAll()
          .where('id', '=', approvalId)
          .forUpdate()
          .executeTakeFirst();
        if (row === undefined) throw new NotFoundError('approval_not_found', 'Approval not found.');
        // Its run's row next (approval, then run: the order every writer of both takes), before
        // anything here writes an audit event (which locks the tenant's audit head last).
        const run = await db
          .selectFrom('brigade.runs')
          .select(['id', 'status'])
          .where('id', '=', row.run_id)
          .forUpdate()
          .executeTakeFirstOrThrow();
        const ended = !(activeStatuses as readonly string[]).includes(run.status);
        // A run that ended with this approval pending: deciding it must not revive the run.
        const expiredNow = ended && row.status === 'pending';
        if (expiredNow) await expireApproval(db, row, runEndedReason);
        const refusal = ended
          ? { reason: 'run_ended', message: `The run is already ${run.status}.` }
          : row.status !== 'pending'
            ? { reason: 'not_pending', message: `The approval is already ${row.status}.` }
            : decision.argumentsHash !== undefined &&
                !matchesPendingCall(decision.argumentsHash, row)
              ? {
                  reason: 'arguments_mismatch',
                  message: 'The pending call no longer matches the arguments you reviewed.',
                }
              : undefined;
        if (refusal !== undefined) {
          // Audited in this transaction, which changes nothing else; the error follows it.
          await writeAudit(db, {
            tenantId: principal.tenantId,
            principal,
            record: {
              action: 'approval.decision_refused',
              targetType: 'approval',
              targetId: approvalId,
              outcome: 'denied',
              reason: refusal.reason,
              data: {
                runId: row.run_id,
                toolName: row.tool_name,
                decision: decision.decision,
                // As it is now (an approval of an ended run was expired just above).
                status: expiredNow ? 'expired' : row.status,
                // The pending call's hash; never the one presented, which may be the plain
                // SHA-256 of the arguments (docs/observability.md, arguments hashes).
                argumentsHash: row.arguments_hash,
              },
            },
          });
          return { refused: new AppError('approval_not_pending', refusal.message) };
        }
        if (decision.decision === 'edit') {
          const problems = await options.validateArguments(
            row.tool_name,
            decision.arguments,
            row.tenant_id,
          );
          if (problems.length > 0) {
            throw new AppError(
              'validation_failed',
              'The edited arguments are not valid for this tool.',
              {
                details: {
                  errors: problems.map((message) => ({ path: 'body.arguments', message })),
                },
              },
            );
          }
        }
        const now = new Date();
        const expired = row.expires_at.getTime() <= now.getTime();
        const status = expired
          ? 'expired'
          : decision.decision === 'reject'
            ? 'rejected'
            : 'approved';
        // Too late: expired like the sweep would (audited as approval.expired), run resumed.
        const expiredEvent = expired ? await expireApproval(db, row) : undefined;
        const edited = decision.decision === 'edit' && !expired;
        const editedHash = edited
          ? await options.argumentsHasher.hash({
              tenantId: row.tenant_id,
              value: decision.arguments,
              db,
            })
          : undefined;
        const updated = expired
          ? await db
              .selectFrom('brigade.approvals')
              .selectAll()
              .where('id', '=', approvalId)
              .executeTakeFirstOrThrow()
          : await db
              .updateTable('brigade.approvals')
              .set({
                status,
                decision: decision.decision,
                edited_arguments: edited ? JSON.stringify(decision.arguments) : null,
                decision_reason: decision.reason ?? null,
                decided_at: now,
              })
              .where('id', '=', approvalId)
              .returningAll()
              .executeTakeFirstOrThrow();
        // Resume the run (its row locked above): its next claim finds this decision at the
        // same tool call.
        await db
          .updateTable('brigade.runs')
          .set({ status: 'queued', pending_action: null, deadline_at: null })
          .where('id', '=', run.id)
          .execute();
        // Only a parked entry: one still claimed belongs to an execution finishing the calls
        // beside the parked one, which queues the run itself when it sees every approval
        // decided (requeued now, another process could repeat a call still running).
        const requeued = await db
          .updateTable('brigade.run_queue')
          .set({ state: 'queued', executor_id: null, heartbeat_at: null, wake_at: null })
          .where('run_id', '=', run.id)
          .where('state', '=', 'parked')
          .executeTakeFirst();
        // Announced here for a parked entry only: an execution still holding the entry numbers
        // the run's events as it writes them, so it announces the decision itself when it
        // stops (an event written here could take a number it holds).
        if (requeued.numUpdatedRows > 0n) {
          const last = await db
            .selectFrom('brigade.run_events')
            .select((eb) => eb.fn.max('seq').as('seq'))
            .where('run_id', '=', run.id)
            .executeTakeFirst();
          await appendEvents(
            db,
            {
              tenantId: principal.tenantId,
              userId: principal.userId,
              runId: run.id,
              firstSeq: Number(last?.seq ?? 0) + 1,
            },
            [
              expiredEvent ?? {
                type: 'approval-decided',
                data: {
                  approvalId,
                  status,
                  decision: updated.decision,
                  toolCallId: row.tool_call_id,
                },
              },
            ],
          );
        }
        if (expired) return { approval: toApproval(updated) };
        await writeAudit(db, {
          tenantId: principal.tenantId,
          principal,
          record: {
            action: 'approval.decided',
            targetType: 'approval',
            targetId: approvalId,
            outcome: 'success',
            ...(decision.reason === undefined ? {} : { reason: decision.reason }),
            data: {
              runId: row.run_id,
              toolName: row.tool_name,
              status,
              argumentsHash: row.arguments_hash,
              edited,
              // The hash of what will run instead (never the arguments themselves).
              ...(editedHash === undefined ? {} : { editedArgumentsHash: editedHash }),
            },
          },
        });
        return { approval: toApproval(updated) };
      });
      if ('refused' in result) throw result.refused;
      const decided = result.approval;
      options.signals.runChanged(decided.runId);
      options.signals.queueChanged();
      return decided;
    },
  };
}

/** The approval store's interface. */
export type ApprovalStore = ReturnType<typeof createApprovalStore>;

function toApproval(row: {
  id: string;
  thread_id: string;
  run_id: string;
  tool_call_id: string;
  tool_name: string;
  arguments: unknown;
  arguments_hash: string;
  reason: string;
  status: Approval['status'];
  decision: Approval['decision'];
  edited_arguments: unknown;
  decision_reason: string | null;
  decided_at: Date | null;
  expires_at: Date;
  created_at: Date;
}): Approval {
  return {
    id: row.id,
    threadId: row.thread_id,
    runId: row.run_id,
    toolCallId: row.tool_call_id,
    toolName: row.tool_name,
    arguments: row.arguments,
    argumentsHash: row.arguments_hash,
    reason: row.reason,
    status: row.status,
    decision: row.decision,
    editedArguments: row.edited_arguments,
    decisionReason: row.decision_reason,
    decidedAt: row.decided_at,
    expiresAt: row.expires_at,
    createdAt: row.created_at,
  };
}
