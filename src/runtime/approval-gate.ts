import { type Selectable, sql } from 'kysely';
import type { UserPrincipal } from '../domain/identity/principal.ts';
import { writeAudit } from '../storage/identity/audit-writer.ts';
import type { ScopedDb } from '../storage/postgres/database.ts';
import type { ApprovalsTable } from '../storage/postgres/database-schema.ts';
import { storableJson } from '../storage/postgres/storable.ts';
import { approvalExpiredReason, expireApproval } from '../storage/runs/approval-expiry.ts';
import { agentDeletedReason, lockAgent } from '../storage/runs/parked-runs.ts';
import { lockPendingApprovals } from '../storage/runs/run-cancellation.ts';
import type { ArgumentsHasher } from '../storage/tools/arguments-hasher.ts';
import type { EventWriter } from './event-writer.ts';
import type { RunClaim } from './run-executor.ts';

/** Thrown to stop executing a run that now waits for a user's decision (it frees its slot). */
export class RunParkedError extends Error {
  readonly approvalId: string;
  constructor(approvalId: string) {
    super('run parked until the user decides');
    this.name = 'RunParkedError';
    this.approvalId = approvalId;
  }
}

/** What the gate decided for one call. */
export type GateResult =
  | { readonly kind: 'approved'; readonly input: unknown; readonly approvalId?: string }
  | {
      readonly kind: 'refused';
      readonly message: string;
      /** `rejected` by the user, or `approval_expired`: nobody decided before the expiry. */
      readonly code: 'rejected' | 'approval_expired' | 'approval_outdated';
      readonly approvalId?: string;
    };

const expiredMessage =
  'approval_expired: the approval request expired before the user decided; the call was not made.';

/** A pending approval as a run's `pendingAction` shows it. */
function pendingAction(approval: Selectable<ApprovalsTable>): Record<string, unknown> {
  return {
    approvalId: approval.id,
    toolCallId: approval.tool_call_id,
    toolName: approval.tool_name,
    arguments: approval.arguments,
    argumentsHash: approval.arguments_hash,
    reason: approval.reason,
    expiresAt: approval.expires_at,
  };
}

/** Moves the run to `requires_action`, showing `pending`. */
async function requireAction(
  db: ScopedDb,
  claim: RunClaim,
  pending: Record<string, unknown>,
): Promise<void> {
  await db
    .updateTable('brigade.runs')
    .set({ status: 'requires_action', pending_action: storableJson(pending) ?? 'null' })
    .where('id', '=', claim.runId)
    .execute();
}

/**
 * The approval step of the tool gate. The first time a call that needs approval is reached,
 * it records a pending approval showing the exact arguments, moves the run to
 * `requires_action` and throws {@link RunParkedError}; the executor parks the queue entry
 * once the step's other calls have finished ({@link parkOrRequeue}). When the run resumes after the decision
 * or the expiry, the same call (same id) finds it and proceeds or is refused.
 */
export async function passApprovalGate(options: {
  readonly claim: RunClaim;
  readonly events: EventWriter;
  readonly call: {
    readonly toolCallId: string;
    readonly toolName: string;
    readonly input: unknown;
  };
  readonly ttlMs: number;
  /** Hashes the arguments the approval binds to (keyed per tenant when there is a vault key). */
  readonly hasher: ArgumentsHasher;
  /** Why approval is needed, shown to the user (defaults to the agent's approval list). */
  readonly reason?: string;
  /**
   * The call needs no approval under the rules now, but was asked for before they changed:
   * only a decision already on record binds it (approved under another version: outdated;
   * rejected: refused); without one it proceeds and nothing is requested.
   */
  readonly bindOnly?: boolean;
  /** What the `approval.requested` audit event of a new request records beside the call. */
  readonly audit?: {
    /** The run's user (the event's actor; the system when undefined). */
    readonly actor: UserPrincipal | undefined;
    readonly policyVersion: string;
    /** Why: the agent requires approval for every call, or a provenance rule failed. */
    readonly trigger: 'agent_requires_approval' | 'provenance_rule';
    readonly provenance: Readonly<Record<string, unknown>>;
  };
}): Promise<GateResult> {
  const { claim, events, call } = options;
  const result = await events.inTransaction(
    async (db, append): Promise<GateResult | { kind: 'parked'; id: string }> => {
      const existing = await db
        .selectFrom('brigade.approvals')
        .selectAll()
        .where('run_id', '=', claim.runId)
        .where('tool_call_id', '=', call.toolCallId)
        .forUpdate()
        .executeTakeFirst();
      if (existing === undefined && options.bindOnly === true)
        return { kind: 'approved', input: call.input };
      if (
        existing?.status === 'approved' &&
        existing.policy_version !== null &&
        options.audit !== undefined &&
        existing.policy_version !== options.audit.policyVersion
      ) {
        return {
          kind: 'refused',
          code: 'approval_outdated',
          message: `'${call.toolName}' (or the agent's rules for it) changed after this call was approved, so it was not run; call it again to ask for a new approval.`,
          approvalId: existing.id,
        };
      }
      if (existing?.status === 'approved') {
        return {
          kind: 'approved',
          input: existing.edited_arguments ?? existing.arguments,
          approvalId: existing.id,
        };
      }
      if (existing?.status === 'rejected') {
        return {
          kind: 'refused',
          code: 'rejected',
          message: `The user rejected this call${existing.decision_reason === null ? '' : `: ${existing.decision_reason}`}.`,
          approvalId: existing.id,
        };
      }
      if (existing?.status === 'expired')
        return {
          kind: 'refused',
          code: 'approval_expired',
          message: expiredMessage,
          approvalId: existing.id,
        };
      if (existing !== undefined && existing.expires_at.getTime() <= Date.now()) {
        // Expired while the run was resumed for another decision: the sweep has not seen it.
        // The claim fence (which locks the run) first, before the expiry's audit event.
        await append([]);
        await append([await expireApproval(db, existing)]);
        return {
          kind: 'refused',
          code: 'approval_expired',
          message: expiredMessage,
          approvalId: existing.id,
        };
      }
      let pending: Record<string, unknown>;
      if (existing === undefined) {
        const run = await db
          .selectFrom('brigade.runs')
          .select('thread_id')
          .where('id', '=', claim.runId)
          .executeTakeFirstOrThrow();
        const hash = await options.hasher.hash({
          tenantId: claim.tenantId,
          value: call.input,
          db,
        });
        const created = await db
          .insertInto('brigade.approvals')
          .values({
            tenant_id: claim.tenantId,
            user_id: claim.userId,
            thread_id: run.thread_id,
            run_id: claim.runId,
            tool_call_id: call.toolCallId,
            tool_name: call.toolName,
            arguments: storableJson(call.input) ?? 'null',
            arguments_hash: hash,
            reason:
              options.reason ??
              `The agent requires your approval for every '${call.toolName}' call.`,
            expires_at: new Date(Date.now() + options.ttlMs),
            decision: null,
            edited_arguments: null,
            decision_reason: null,
            decided_at: null,
            created_at: new Date(),
            policy_version: options.audit?.policyVersion ?? null,
          })
          .returning(['id', 'reason', 'expires_at'])
          .executeTakeFirstOrThrow();
        pending = {
          approvalId: created.id,
          toolCallId: call.toolCallId,
          toolName: call.toolName,
          arguments: call.input,
          argumentsHash: hash,
          reason: created.reason,
          expiresAt: created.expires_at,
        };
        await append([{ type: 'approval-requested', data: pending }]);
        await writeAudit(db, {
          tenantId: claim.tenantId,
          principal: options.audit?.actor,
          record: {
            action: 'approval.requested',
            targetType: 'approval',
            targetId: created.id,
            outcome: 'success',
            data: {
              runId: claim.runId,
              toolCallId: call.toolCallId,
              toolName: call.toolName,
              argumentsHash: hash,
              policyVersion: options.audit?.policyVersion ?? null,
              trigger: options.audit?.trigger ?? null,
              provenance: options.audit?.provenance ?? null,
              expiresAt: created.expires_at.toISOString(),
            },
          },
        });
      } else {
        pending = pendingAction(existing);
      }
      await requireAction(db, claim, pending);
      // The queue entry stays this execution's until the calls still running beside this one
      // have finished and been recorded: {@link parkOrRequeue} parks it then.
      return { kind: 'parked', id: String(pending['approvalId']) };
    },
  );
  if (result.kind === 'parked') throw new RunParkedError(result.id);
  return result;
}

/**
 * Ends an execution that stopped for an approval, after every call still running beside the
 * parked one finished and was recorded: parks the queue entry (no slot held; the earliest
 * pending approval's expiry wakes the expiry sweep), or, when every approval of the run was
 * decided meanwhile (a decision does not requeue a run whose entry is still claimed), queues
 * the run again at once. Until then no other process can claim the run and repeat a call whose
 * result is not recorded yet. Locks the run, then the queue entry, as a decision does.
 */
export async function parkOrRequeue(
  events: EventWriter,
  claim: RunClaim,
): Promise<'parked' | 'requeued'> {
  return events.inTransaction(async (db, append) => {
    // The run's agent's advisory lock first (shared): a deletion of the agent in flight is
    // waited for, then seen below; then the approvals, then the run (a decision's order).
    const owner = await db
      .selectFrom('brigade.runs')
      .select('agent_id')
      .where('id', '=', claim.runId)
      .executeTakeFirst();
    if (owner !== undefined) await lockAgent(db, { agentId: owner.agent_id, shared: true });
    await lockPendingApprovals(db, { runId: claim.runId });
    const run = await db
      .selectFrom('brigade.runs as r')
      .leftJoin('brigade.agents as a', 'a.id', 'r.agent_id')
      .select(['r.id', 'a.id as agent'])
      .where('r.id', '=', claim.runId)
      .forUpdate('r')
      .executeTakeFirst();
    // Decisions made while this execution held the entry were not announced by the decision
    // (its event could have taken a number this execution held): announce them here.
    const unannounced = await db
      .selectFrom('brigade.approvals as a')
      .select(['a.id', 'a.status', 'a.decision', 'a.decision_reason', 'a.tool_call_id'])
      .where('a.run_id', '=', claim.runId)
      .where('a.status', '<>', 'pending')
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom('brigade.run_events as e')
              .select('e.seq')
              .where('e.run_id', '=', claim.runId)
              .where('e.type', '=', 'approval-decided')
              .whereRef(sql`e.data->>'approvalId'`, '=', sql`a.id::text`),
          ),
        ),
      )
      .orderBy('a.decided_at')
      .execute();
    await append(
      unannounced.map((approval) => ({
        type: 'approval-decided',
        data: {
          approvalId: approval.id,
          status: approval.status,
          decision: approval.decision,
          ...(approval.status === 'expired' ? { reason: approvalExpiredReason } : {}),
          toolCallId: approval.tool_call_id,
        },
      })),
    );
    if (run !== undefined && run.agent === null) {
      // The agent was deleted while this execution ran: its pending approvals expire (nobody
      // should approve a call that cannot run) and the run is requeued, to fail as the
      // agent's other runs do (releaseParkedRunsOf handled those already parked).
      const stale = await db
        .selectFrom('brigade.approvals')
        .selectAll()
        .where('run_id', '=', claim.runId)
        .where('status', '=', 'pending')
        .execute();
      for (const approval of stale)
        await append([await expireApproval(db, approval, agentDeletedReason)]);
    }
    const pending = await db
      .selectFrom('brigade.approvals')
      .selectAll()
      .where('run_id', '=', claim.runId)
      .where('status', '=', 'pending')
      .orderBy('expires_at')
      .limit(1)
      .executeTakeFirst();
    if (pending !== undefined) {
      // A decision meanwhile on another approval of the run showed it queued: it waits.
      await requireAction(db, claim, pendingAction(pending));
      await db
        .updateTable('brigade.run_queue')
        .set({
          state: 'parked',
          executor_id: null,
          heartbeat_at: null,
          wake_at: pending.expires_at,
        })
        .where('run_id', '=', claim.runId)
        .execute();
      return 'parked';
    }
    await db
      .updateTable('brigade.runs')
      .set({ status: 'queued', pending_action: null })
      .where('id', '=', claim.runId)
      .where('status', '=', 'requires_action')
      .execute();
    await db
      .updateTable('brigade.run_queue')
      .set({ state: 'queued', executor_id: null, heartbeat_at: null, wake_at: null })
      .where('run_id', '=', claim.runId)
      .execute();
    return 'requeued';
  });
}
