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

/** Characters that join an address, an account number or a host name to its neighbours. */
const joiner = /[\p{L}\p{N}@_%+-]/u;
/** Punctuation that joins only when a letter or digit follows it (`a.b`, `1,250`, `10:30`). */
const innerPunctuation = /[.,:]/;

function joinsBefore(text: string, at: number): boolean {
  const previous = text[at - 1];
  if (previous === undefined) return false;
  if (joiner.test(previous)) return true;
  return innerPunctuation.test(previous) && joiner.test(text[at - 2] ?? ' ');
}

function joinsAfter(text: string, at: number): boolean {
  const next = text[at];
  if (next === undefined) return false;
  if (joiner.test(next)) return true;
  return innerPunctuation.test(next) && joiner.test(text[at + 1] ?? ' ');
}

/**
 * Whether `value` appears in `text` as a whole: not as a piece of a longer address, account
 * number, date or word. `6016` is not in `GB29NWBK60161331926819`, `2024` not in
 * `2024-06-02`, `e@acme.test` not in `alice@acme.test`; `bob@acme.test` is in
 * `write to bob@acme.test.` (a full stop that ends a sentence does not join).
 */
function appearsAsWhole(text: string, value: string): boolean {
  if (value === '') return false;
  for (let at = text.indexOf(value); at !== -1; at = text.indexOf(value, at + 1)) {
    if (!joinsBefore(text, at) && !joinsAfter(text, at + value.length)) return true;
  }
  return false;
}

/** What a `*` may stand for: one address's local part or a run of host-name labels. */
const wildcardPart = /^[\p{L}\p{N}._%+-]*$/u;

/**
 * Whether a value is on an allow-list. An entry is exact, `*` (anything), or `*suffix`, where
 * the `*` stands for a single local part or host-name labels only: `*@example.com` matches
 * `bob@example.com` but not `eve@evil.test, bob@example.com` (a list smuggling another
 * address) nor `eve@evil.test@example.com`; a suffix that does not start with `@` or `.`
 * matches only at a label or address boundary (`*example.com` matches `example.com`,
 * `api.example.com` and `bob@example.com`, not `evilexample.com`).
 */
function matchesAllowed(value: string, allowed: readonly string[]): boolean {
  const normalised = normalise(value);
  return allowed.some((entry) => {
    const pattern = normalise(entry);
    if (pattern === '*') return true;
    if (!pattern.startsWith('*')) return normalised === pattern;
    const suffix = pattern.slice(1);
    if (!normalised.endsWith(suffix)) return false;
    const rest = normalised.slice(0, normalised.length - suffix.length);
    if (suffix.startsWith('@') || suffix.startsWith('.')) return wildcardPart.test(rest);
    if (rest === '') return true;
    const head = rest.slice(0, -1);
    if (rest.endsWith('.')) return wildcardPart.test(head);
    return rest.endsWith('@') && wildcardPart.test(head);
  });
}

/**
 * The values of an argument to trace: a string or a number as it is (a boolean at the top
 * level only), and every string and number inside an array or an object (an array of
 * participants, an object of transfer details), so each must be traceable on its own.
 */
function valuesOf(value: unknown, nested = false): string[] {
  if (typeof value === 'string') return [value];
  if (typeof value === 'number') return [String(value)];
  if (typeof value === 'boolean') return nested ? [] : [String(value)];
  if (Array.isArray(value)) return value.flatMap((item) => valuesOf(item, true));
  if (value !== null && typeof value === 'object')
    return Object.values(value).flatMap((item) => valuesOf(item, true));
  return [];
}

/** Whether a schema property can only hold a boolean or null (nothing worth tracing). */
function onlyFlags(property: { readonly type?: unknown }): boolean {
  const types = Array.isArray(property.type) ? property.type : [property.type];
  return types.every((type) => type === 'boolean' || type === 'null');
}

/**
 * The rules that apply to a tool: its declared ones, or for a `sensitive` tool without any,
 * one rule per top-level property of its schema that can hold more than a boolean — strings,
 * numbers (an amount), arrays (participants, recipients), objects and untyped properties —
 * so every such value must come from the user. Other tools without rules have none.
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
    .filter(([, property]) => !onlyFlags(property))
    .map(([argument]) => ({ argument }));
}

/**
 * Checks a call's arguments against its provenance rules (DESIGN.md invariant 8): each ruled
 * argument's value (each element of an array, each leaf of an object) must appear as a whole
 * in the user's own messages or the agent's instructions — not as a piece of a longer word,
 * number or address — or be on the rule's allow-list (`*@example.com` style suffixes
 * allowed). Values that do not are findings; the gate turns them into an approval request
 * instead of running the call.
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
        !matchesAllowed(value, rule.allowedValues ?? []) &&
        !appearsAsWhole(trusted, normalise(value)),
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
