import { createHash } from 'node:crypto';
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

/** SHA-256 of the canonical JSON of tool arguments; an approval is bound to this hash. */
export function argumentsHash(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex');
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([left], [right]) =>
      left < right ? -1 : 1,
    );
    return `{${entries.map(([key, inner]) => `${JSON.stringify(key)}:${canonicalJson(inner)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** What the gate decided for one call. */
export type GateResult =
  | { readonly kind: 'approved'; readonly input: unknown; readonly approvalId?: string }
  | { readonly kind: 'refused'; readonly message: string; readonly approvalId?: string };

/**
 * The approval step of the tool gate. The first time a call that needs approval is reached,
 * it records a pending approval showing the exact arguments, moves the run to
 * `requires_action`, parks its queue entry and throws {@link RunParkedError}. When the run
 * resumes after the decision, the same call (same id) finds the decision and proceeds.
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
          message: `The user rejected this call${existing.decision_reason === null ? '' : `: ${existing.decision_reason}`}.`,
          approvalId: existing.id,
        };
      }
      if (existing?.status === 'expired')
        return {
          kind: 'refused',
          message: 'The approval request expired.',
          approvalId: existing.id,
        };
      let approvalId = existing?.id;
      if (approvalId === undefined) {
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
            arguments: JSON.stringify(call.input),
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
        approvalId = created.id;
        const pending = {
          approvalId,
          toolCallId: call.toolCallId,
          toolName: call.toolName,
          arguments: call.input,
          argumentsHash: hash,
          reason: created.reason,
          expiresAt: created.expires_at,
        };
        await db
          .updateTable('brigade.runs')
          .set({ status: 'requires_action', pending_action: JSON.stringify(pending) })
          .where('id', '=', claim.runId)
          .execute();
        await append([{ type: 'approval-requested', data: pending }]);
      }
      await db
        .updateTable('brigade.run_queue')
        .set({ state: 'parked', executor_id: null, heartbeat_at: null })
        .where('run_id', '=', claim.runId)
        .execute();
      return { kind: 'parked', id: approvalId };
    },
  );
  if (result.kind === 'parked') throw new RunParkedError(result.id);
  return result;
}
