import type { ProvenanceRule } from '../../domain/tools/tool-types.ts';

/** A rule a call broke: the argument's value is not traceable to the user or an allow-list. */
export interface ProvenanceFinding {
  readonly argument: string;
  /** True when the value appears in untrusted content (tool output…): a likely injection. */
  readonly seenInUntrusted: boolean;
}

/** Where the values of a call may come from. */
export interface ProvenanceSources {
  /** The user's own messages and the agent's instructions. */
  readonly trusted: readonly string[];
  /** Tool outputs and other untrusted content the run has seen. */
  readonly untrusted: readonly string[];
}

function normalise(text: string): string {
  return text.normalize('NFKC').toLowerCase().replace(/\s+/g, ' ').trim();
}

function matchesAllowed(value: string, allowed: readonly string[]): boolean {
  const normalised = normalise(value);
  return allowed.some((entry) => {
    const pattern = normalise(entry);
    if (pattern.startsWith('*')) return normalised.endsWith(pattern.slice(1));
    return normalised === pattern;
  });
}

function valuesOf(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (typeof value === 'number' || typeof value === 'boolean') return [String(value)];
  if (Array.isArray(value)) return value.flatMap(valuesOf);
  return value === null || value === undefined ? [] : [JSON.stringify(value)];
}

/**
 * The rules that apply to a tool: its declared ones, or for a `sensitive` tool without any,
 * one rule per top-level string property of its schema (every such value must come from the
 * user). Other tools without rules have none.
 */
export function effectiveRules(tool: {
  readonly risk: string;
  readonly inputSchema: Readonly<Record<string, unknown>>;
  readonly provenanceRules?: readonly ProvenanceRule[] | undefined;
}): readonly ProvenanceRule[] {
  if (tool.provenanceRules !== undefined && tool.provenanceRules.length > 0)
    return tool.provenanceRules;
  if (tool.risk !== 'sensitive') return [];
  const properties = (tool.inputSchema['properties'] ?? {}) as Record<string, { type?: unknown }>;
  return Object.entries(properties)
    .filter(([, property]) => property.type === 'string')
    .map(([argument]) => ({ argument }));
}

/**
 * Checks a call's arguments against its provenance rules (DESIGN.md invariant 8): each ruled
 * argument's value must appear in the user's own messages or the agent's instructions, or be
 * on the rule's allow-list (`*@example.com` style suffixes allowed). Values that do not are
 * findings; the gate turns them into an approval request instead of running the call.
 */
export function checkProvenance(options: {
  readonly rules: readonly ProvenanceRule[];
  readonly input: Readonly<Record<string, unknown>>;
  readonly sources: ProvenanceSources;
}): ProvenanceFinding[] {
  const trusted = normalise(options.sources.trusted.join('\n'));
  const untrusted = normalise(options.sources.untrusted.join('\n'));
  const findings: ProvenanceFinding[] = [];
  for (const rule of options.rules) {
    const values = valuesOf(options.input[rule.argument]).filter((value) => value.trim() !== '');
    const untraced = values.filter(
      (value) =>
        !matchesAllowed(value, rule.allowedValues ?? []) && !trusted.includes(normalise(value)),
    );
    if (untraced.length > 0)
      findings.push({
        argument: rule.argument,
        seenInUntrusted: untraced.some((value) => untrusted.includes(normalise(value))),
      });
  }
  return findings;
}

/** The approval reason naming the rules a call broke. */
export function provenanceReason(toolName: string, findings: readonly ProvenanceFinding[]): string {
  const parts = findings.map(
    (finding) =>
      `'${finding.argument}' ${finding.seenInUntrusted ? 'comes from untrusted content (a tool output), not from you' : 'does not appear in your messages'}`,
  );
  return `Provenance rule of '${toolName}': ${parts.join('; ')}. Check the exact arguments before approving.`;
}
