import { argumentsHash } from '../domain/tools/arguments-hash.ts';
import { storableJson } from '../storage/postgres/storable.ts';
import { expireApproval } from '../storage/runs/approval-expiry.ts';
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
      readonly code: 'rejected' | 'approval_expired';
      readonly approvalId?: string;
    };

const expiredMessage =
  'approval_expired: the approval request expired before the user decided; the call was not made.';

/**
 * The approval step of the tool gate. The first time a call that needs approval is reached,
 * it records a pending approval showing the exact arguments, moves the run to
 * `requires_action`, parks its queue entry (with the approval's expiry as its wake-up time for
 * the expiry sweep) and throws {@link RunParkedError}. When the run resumes after the decision
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
  /** Why approval is needed, shown to the user (defaults to the agent's approval list). */
  readonly reason?: string;
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
        const hash = argumentsHash(call.input);
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
      } else {
        pending = {
          approvalId: existing.id,
          toolCallId: existing.tool_call_id,
          toolName: existing.tool_name,
          arguments: existing.arguments,
          argumentsHash: existing.arguments_hash,
          reason: existing.reason,
          expiresAt: existing.expires_at,
        };
      }
      await db
        .updateTable('brigade.runs')
        .set({ status: 'requires_action', pending_action: storableJson(pending) ?? 'null' })
        .where('id', '=', claim.runId)
        .execute();
      await db
        .updateTable('brigade.run_queue')
        .set({
          state: 'parked',
          executor_id: null,
          heartbeat_at: null,
          wake_at: pending['expiresAt'] as Date,
        })
        .where('run_id', '=', claim.runId)
        .execute();
      return { kind: 'parked', id: String(pending['approvalId']) };
    },
  );
  if (result.kind === 'parked') throw new RunParkedError(result.id);
  return result;
}
