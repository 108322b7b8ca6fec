import type { ToolDescriptionV1 } from '../../plugin-api/index.ts';
import { evaluateExpression } from './calculator.ts';

/** A tool the harness can execute, with its schema and risk class. */
export interface ToolDefinition extends ToolDescriptionV1 {
  readonly risk: 'read' | 'write' | 'egress' | 'sensitive';
  /** Runs the tool; `idempotencyKey` is stable across retries of the same call. */
  execute(
    input: Record<string, unknown>,
    context: { idempotencyKey: string; signal: AbortSignal },
  ): Promise<unknown>;
}

/** Built-in tools every agent may be given. */
export const builtInTools: readonly ToolDefinition[] = [
  {
    name: 'current_time',
    description: 'The current date and time in ISO 8601 (UTC), or in the given IANA time zone.',
    inputSchema: {
      type: 'object',
      properties: {
        timeZone: { type: 'string', description: 'IANA time zone, e.g. Europe/Paris' },
      },
      additionalProperties: false,
    },
    risk: 'read',
    async execute(input) {
      const now = new Date();
      const timeZone = typeof input['timeZone'] === 'string' ? input['timeZone'] : 'UTC';
      return {
        iso: now.toISOString(),
        timeZone,
        local: now.toLocaleString('sv-SE', { timeZone }).replace(' ', 'T'),
      };
    },
  },
  {
    name: 'calculator',
    description: 'Evaluates an arithmetic expression with + - * / % ^ and parentheses.',
    inputSchema: {
      type: 'object',
      properties: { expression: { type: 'string', maxLength: 500 } },
      required: ['expression'],
      additionalProperties: false,
    },
    risk: 'read',
    async execute(input) {
      return { result: evaluateExpression(String(input['expression'])) };
    },
  },
];

/**
 * Checks `input` against the small JSON Schema subset built-in tools use (object with typed
 * properties, required, additionalProperties: false). Returns the problems; empty means valid.
 */
export function validateToolInput(
  schema: Readonly<Record<string, unknown>>,
  input: unknown,
): string[] {
  if (input === null || typeof input !== 'object' || Array.isArray(input))
    return ['arguments must be a JSON object'];
  const record = input as Record<string, unknown>;
  const properties = (schema['properties'] ?? {}) as Record<
    string,
    { type?: string; maxLength?: number }
  >;
  const problems: string[] = [];
  for (const name of (schema['required'] ?? []) as string[]) {
    if (!(name in record)) problems.push(`missing required argument '${name}'`);
  }
  for (const [name, value] of Object.entries(record)) {
    const property = properties[name];
    if (property === undefined) {
      if (schema['additionalProperties'] === false) problems.push(`unknown argument '${name}'`);
      continue;
    }
    if (property.type === 'string' && typeof value !== 'string')
      problems.push(`'${name}' must be a string`);
    if (property.type === 'number' && typeof value !== 'number')
      problems.push(`'${name}' must be a number`);
    if (
      property.maxLength !== undefined &&
      typeof value === 'string' &&
      value.length > property.maxLength
    ) {
      problems.push(`'${name}' is longer than ${property.maxLength}`);
    }
  }
  return problems;
}
