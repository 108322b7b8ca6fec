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
  if (!always && findings.length === 0)
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
    audit: {
      actor: context.actor,
      policyVersion: toolPolicyVersion(tool, context.agent),
      trigger: always ? 'agent_requires_approval' : 'provenance_rule',
      provenance: provenanceSummary(findings),
    },
  });
  return { findings, gate };
}
