import type { Role } from '../identity/permissions.ts';

/** Risk classes: `sensitive` moves money, deletes, sends as the user or changes permissions. */
export const toolRisks = ['read', 'write', 'egress', 'sensitive'] as const;

/** A tool's risk class. */
export type ToolRisk = (typeof toolRisks)[number];

/** HTTP methods a tenant tool may use. */
export const toolMethods = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

/** How a tool presents the calling user's credential. */
export interface ToolAuth {
  /** Name of a credential of the calling user (or a tenant-shared one of that name). */
  readonly credential: string;
  /** `bearer`: `Authorization: Bearer <secret>`; `header`: `<headerName>: <secret>`; `basic`: the secret is `user:password`. */
  readonly scheme: 'bearer' | 'header' | 'basic';
  readonly headerName?: string | undefined;
}

/**
 * A provenance rule: the value of `argument` must be traceable to the user's own messages (or
 * the agent's instructions), or be one of `allowedValues`; otherwise the call waits for the
 * user's approval, naming the rule.
 */
export interface ProvenanceRule {
  readonly argument: string;
  readonly allowedValues?: readonly string[] | undefined;
}

/** An HTTP tool a tenant admin defined. */
export interface HttpToolDefinition {
  readonly name: string;
  readonly description: string;
  readonly risk: ToolRisk;
  readonly method: (typeof toolMethods)[number];
  /** `https://host/path/{arg}?q={arg}`: placeholders are URL-encoded argument values; the host is fixed. */
  readonly urlTemplate: string;
  /** JSON Schema (draft 2020-12 subset Ajv supports) of the arguments; an object schema. */
  readonly inputSchema: Readonly<Record<string, unknown>>;
  /** Arguments not used in the URL are sent as a JSON body (methods other than GET/DELETE). */
  readonly auth?: ToolAuth | undefined;
  /** Roles that may call it; absent means every role that may run agents. */
  readonly allowedRoles?: readonly Role[] | undefined;
  readonly timeoutMs?: number | undefined;
  readonly maxResponseChars?: number | undefined;
  /** Every call needs the calling user's `tool:<name>` consent (for every agent or the caller). */
  readonly requiresConsent?: boolean | undefined;
  readonly provenanceRules?: readonly ProvenanceRule[] | undefined;
}

/** A stored tenant tool. */
export interface StoredTool {
  readonly id: string;
  readonly tenantId: string;
  readonly definition: HttpToolDefinition;
  readonly version: number;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** A kill switch: the tool is refused tenant-wide (`agentId` null) or for one agent. */
export interface ToolBlock {
  readonly id: string;
  readonly toolName: string;
  readonly agentId: string | null;
  readonly reason: string | null;
  readonly createdAt: Date;
}
