import { createHash } from 'node:crypto';
import type { AuditRecord } from '../domain/identity/identity-types.ts';
import { canonicalJson } from '../domain/tools/arguments-hash.ts';
import { effectiveRules, type ProvenanceFinding } from './tools/provenance-rules.ts';
import type { ToolDefinition } from './tools/tool-registry.ts';

/**
 * The version of the policy a tool call is checked and run under: `sha256:` and the SHA-256,
 * hex, of the canonical JSON of what the tool gate applies to it — the tool's name, kind,
 * risk, allowed roles, effective provenance rules, input schema, timeout and output cap, the
 * digest of a tenant tool's stored definition (URL, method, authentication: any edit of the
 * tool changes it), and whether the agent requires approval for every call of it. Two calls
 * with the same version were gated by the same rules; an auditor recomputes it from the tool
 * and agent definitions (docs/observability.md).
 */
export function toolPolicyVersion(
  tool: ToolDefinition,
  agent: { readonly approvalRequiredTools: readonly string[] },
): string {
  const approvalRequired = agent.approvalRequiredTools.includes(tool.name);
  // A definition is immutable: its two versions are computed once (every call of a tool, in
  // every run, would otherwise serialise its schema and hash it again).
  const known = versions.get(tool);
  const cached = known?.[approvalRequired ? 1 : 0];
  if (cached !== undefined) return cached;
  const policy = {
    name: tool.name,
    kind: tool.kind ?? 'builtin',
    risk: tool.risk,
    allowedRoles: tool.allowedRoles ?? null,
    provenanceRules: effectiveRules(tool),
    inputSchema: tool.inputSchema,
    timeoutMs: tool.timeoutMs ?? null,
    maxOutputChars: tool.maxOutputChars ?? null,
    definitionDigest: tool.definitionDigest ?? null,
    approvalRequired,
  };
  const version = `sha256:${createHash('sha256').update(canonicalJson(policy)).digest('hex')}`;
  const pair = known ?? [undefined, undefined];
  pair[approvalRequired ? 1 : 0] = version;
  versions.set(tool, pair);
  return version;
}

/** Policy versions by definition: [approval not required, required]. */
const versions = new WeakMap<ToolDefinition, [string | undefined, string | undefined]>();

/** Which arguments failed a provenance rule, and which of those came from untrusted content. */
export function provenanceSummary(findings: readonly ProvenanceFinding[]) {
  return {
    untracedArguments: findings.map((finding) => finding.argument),
    fromUntrustedContent: findings
      .filter((finding) => finding.seenInUntrusted)
      .map((finding) => finding.argument),
  };
}

/**
 * The `tool.called` audit record of one tool call, refused or not: the tool, the run, the
 * arguments hash (never the arguments; keyed per tenant, see docs/observability.md), the risk,
 * the policy version ({@link toolPolicyVersion}; null for a tool the agent does not have),
 * which arguments failed a provenance rule and which of those appeared in untrusted content,
 * the approval and the outcome (`ok`, `failed`, or why the call did not run).
 */
export function toolCalledAudit(options: {
  readonly runId: string;
  readonly call: { readonly toolCallId: string; readonly toolName: string };
  /** The tool the call named, undefined when the agent has no such tool. */
  readonly tool: ToolDefinition | undefined;
  readonly agent: { readonly approvalRequiredTools: readonly string[] };
  readonly argumentsHash: string;
  readonly findings: readonly ProvenanceFinding[];
  readonly approvalId: string | null;
  readonly outcome: string;
}): AuditRecord {
  const { call, tool, outcome } = options;
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
      risk: tool?.risk ?? null,
      argumentsHash: options.argumentsHash,
      policyVersion: tool === undefined ? null : toolPolicyVersion(tool, options.agent),
      provenance: provenanceSummary(options.findings),
      approvalId: options.approvalId,
      outcome,
    },
  };
}
