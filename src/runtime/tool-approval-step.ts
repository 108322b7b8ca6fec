import type { ModelResultV1 } from '../plugin-api/index.ts';
import type { ArgumentsHasher } from '../storage/tools/arguments-hasher.ts';
import { type GateResult, passApprovalGate } from './approval-gate.ts';
import type { ToolCallContext, ToolCallRequest } from './run-steps.ts';
import { provenanceSummary, toolPolicyVersion } from './tool-call-audit.ts';
import {
  checkProvenance,
  effectiveRules,
  type ProvenanceFinding,
  provenanceReason,
} from './tools/provenance-rules.ts';
import type { ToolDefinition } from './tools/tool-registry.ts';

/**
 * The provenance and approval steps of the tool gate for a call whose arguments are valid:
 * checks the tool's provenance rules against where the run's content came from, and when a
 * rule fails or the agent requires approval for every call of the tool, passes the approval
 * gate (which records the request, audited as `approval.requested`, and parks the run).
 */
export async function gateToolCall(options: {
  readonly context: ToolCallContext;
  readonly call: ToolCallRequest;
  readonly tool: ToolDefinition;
  readonly approval: { readonly ttlMs: number; readonly hasher: ArgumentsHasher };
}): Promise<{ findings: readonly ProvenanceFinding[]; gate: GateResult }> {
  const { context, call, tool } = options;
  const rules = effectiveRules(tool);
  const findings =
    rules.length === 0 || context.sources === undefined
      ? []
      : checkProvenance({
          rules,
          input: call.input as Record<string, unknown>,
          sources: context.sources(),
        });
  const always = context.agent.approvalRequiredTools.includes(call.toolName);
  // A call asked for before this execution may have a decision on record even though the
  // rules no longer ask for one (the agent's approval list or the tool edited meanwhile): it
  // binds the call (a rejection stays a rejection), so the gate looks it up.
  const askedBefore = context.askedBefore?.has(call.toolCallId) === true;
  if (!always && findings.length === 0 && !askedBefore)
    return { findings, gate: { kind: 'approved', input: call.input } };
  // An approval request is written (and the run may park): the model step goes first.
  await context.modelSteps?.flush();
  const gate = await passApprovalGate({
    claim: context.claim,
    events: context.events,
    call,
    ttlMs: options.approval.ttlMs,
    hasher: options.approval.hasher,
    ...(always ? {} : { reason: provenanceReason(call.toolName, findings) }),
    bindOnly: !always && findings.length === 0,
    audit: {
      actor: context.actor,
      policyVersion: toolPolicyVersion(tool, context.agent),
      trigger: always ? 'agent_requires_approval' : 'provenance_rule',
      provenance: provenanceSummary(findings),
    },
  });
  return { findings, gate };
}

/**
 * The tool calls a run's model asked for in its checkpointed steps that have no outcome yet:
 * when an execution starts, the calls it carries out for an earlier one (after an approval
 * decision, or a crash), which a decision on record may bind.
 */
export function callsAskedBefore(checkpoints: ReadonlyMap<string, unknown>): ReadonlySet<string> {
  const calls = new Set<string>();
  for (const [key, value] of checkpoints) {
    if (!key.startsWith('model:')) continue;
    for (const call of (value as Partial<ModelResultV1>).toolCalls ?? [])
      if (!checkpoints.has(`tool:${call.toolCallId}`)) calls.add(call.toolCallId);
  }
  return calls;
}
