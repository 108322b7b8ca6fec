import type { AuditRecord } from '../domain/identity/identity-types.ts';
import type { ProvenanceFinding } from './tools/provenance-rules.ts';

/**
 * The `tool.called` audit record of one tool call, refused or not: the tool, the run, the
 * arguments hash (never the arguments; keyed per tenant, see docs/observability.md), the risk,
 * which arguments failed a provenance rule and which of those appeared in untrusted content,
 * the approval and the outcome (`ok`, `failed`, or why the call did not run).
 */
export function toolCalledAudit(options: {
  readonly runId: string;
  readonly call: { readonly toolCallId: string; readonly toolName: string };
  readonly risk: string | null;
  readonly argumentsHash: string;
  readonly findings: readonly ProvenanceFinding[];
  readonly approvalId: string | null;
  readonly outcome: string;
}): AuditRecord {
  const { call, findings, outcome } = options;
  const ran = outcome === 'ok' || outcome === 'failed';
  return {
    action: 'tool.called',
    targetType: 'tool',
    targetId: call.toolName,
    outcome: outcome === 'ok' ? 'success' : ran ? 'failure' : 'denied',
    ...(ran ? {} : { reason: outcome }),
    data: {
      runId: options.runId,
      toolCallId: call.toolCallId,
      risk: options.risk,
      argumentsHash: options.argumentsHash,
      provenance: {
        untracedArguments: findings.map((finding) => finding.argument),
        fromUntrustedContent: findings
          .filter((finding) => finding.seenInUntrusted)
          .map((finding) => finding.argument),
      },
      approvalId: options.approvalId,
      outcome,
    },
  };
}
