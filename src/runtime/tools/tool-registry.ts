import type { Role } from '../../domain/identity/permissions.ts';
import type { ProvenanceRule, ToolRisk } from '../../domain/tools/tool-types.ts';
import type { MemoryCapabilityV1, ToolDescriptionV1 } from '../../plugin-api/index.ts';
import { evaluateExpression } from './calculator.ts';
import { validateAgainstSchema } from './json-schema.ts';
import { memoryTools } from './memory-tools.ts';

/**
 * The credential capability the tool gate hands a tool for one call: bound to the run's own
 * user (their credentials, then the tenant's shared ones), never a database handle.
 */
export interface ToolCredentialsCapability {
  /**
   * Decrypts the named credential for this call, to be sent to `destination` (undefined: a
   * local process); undefined when the user has none. A credential whose `allowedHosts` do not
   * include the destination is refused (`credential_host_not_allowed`).
   */
  resolve(
    name: string,
    destination: URL | undefined,
  ): Promise<{ readonly secret: string } | undefined>;
}

/** What one execution of a tool receives. */
export interface ToolExecutionContext {
  /** Stable across retries of the same call (`runId:tool:<callId>`). */
  readonly idempotencyKey: string;
  readonly signal: AbortSignal;
  readonly credentials?: ToolCredentialsCapability | undefined;
  /** The run's memory (its user's, its thread's): what the built-in memory tools use. */
  readonly memory?: MemoryCapabilityV1 | undefined;
}

/** A tool the harness can execute, with its schema and risk class. */
export interface ToolDefinition extends ToolDescriptionV1 {
  readonly risk: ToolRisk;
  /**
   * `builtin` tools come with Brigade; `http` tools are defined by a tenant's admins; `mcp`
   * tools come from a tenant's MCP servers.
   */
  readonly kind?: 'builtin' | 'http' | 'mcp' | undefined;
  /** Roles that may call it; undefined means every role that may run agents. */
  readonly allowedRoles?: readonly Role[] | undefined;
  /** Arguments whose values must come from the user (see provenance-rules.ts). */
  readonly provenanceRules?: readonly ProvenanceRule[] | undefined;
  /**
   * Every call needs the calling user's `tool:<name>` consent, granted for every agent (`*`)
   * or the calling one; an agent can ask the same of any tool (`consentRequiredTools`).
   */
  readonly requiresConsent?: boolean | undefined;
  /** Per-tool timeout and output cap, when tighter than the run's defaults. */
  readonly timeoutMs?: number | undefined;
  readonly maxOutputChars?: number | undefined;
  /**
   * SHA-256 (hex) of the stored definition of a tenant tool, so that the policy version its
   * calls are audited with changes with any edit of it (tool-call-audit.ts).
   */
  readonly definitionDigest?: string | undefined;
  /** Runs the tool; `idempotencyKey` is stable across retries of the same call. */
  execute(input: Record<string, unknown>, context: ToolExecutionContext): Promise<unknown>;
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
  ...memoryTools,
];

/**
 * Checks `input` against the tool's JSON Schema (Ajv; see json-schema.ts). Returns the
 * problems; empty means valid. Every tool — built-in or tenant-defined — is checked this way.
 */
export function validateToolInput(
  schema: Readonly<Record<string, unknown>>,
  input: unknown,
): string[] {
  return validateAgainstSchema(schema, input);
}
