import type { Principal } from '../identity/principal.ts';

/**
 * Purposes with a fixed name; a tool's purpose is `tool:<tool name>` (a built-in or HTTP
 * tool's name, or `mcp:<server>:<tool>`).
 */
export const namedConsentPurposes = ['content_capture', 'long_term_memory'] as const;

/**
 * What a consent is for: capturing prompt and response content, long-term memory, or one
 * tool. A closed list; anything else is refused at the API and by the database.
 */
export type ConsentPurpose = (typeof namedConsentPurposes)[number] | `tool:${string}`;

/** The pattern every purpose matches (the same check is in the `consents` table). */
export const consentPurposePattern =
  /^(content_capture|long_term_memory|tool:[a-z][a-z0-9_]{0,63}|tool:mcp:[a-z][a-z0-9_-]{0,31}:[A-Za-z0-9_.-]{1,64})$/;

/** The consent purpose of a tool: `tool:` and the tool's name as agents name it. */
export function toolConsentPurpose(toolName: string): ConsentPurpose {
  return `tool:${toolName}`;
}

/**
 * The scopes a consent may have: `*` (every agent) or one agent's id. A consent covers a use
 * when its scope is `*` or the id of the agent acting (content capture, tools); long-term
 * memory is shared by all of a user's agents, so only `*` is accepted for it. Any case, by
 * its character classes and without flags: the OpenAPI document serves the pattern's source
 * as JSON Schema, which has no flags.
 */
export const consentScopePattern =
  /^(\*|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$/;

/** True for a purpose of the closed list. */
export function isConsentPurpose(value: string): value is ConsentPurpose {
  return consentPurposePattern.test(value);
}

/** Whose consent: one user of one tenant. A user principal is one. */
export interface ConsentSubject {
  readonly tenantId: string;
  readonly userId: string;
}

/** Who granted or revoked a consent: the user itself or the platform operator. */
export interface ConsentActor {
  readonly kind: 'user' | 'operator';
  readonly userId: string | null;
}

/** One consent record. A re-grant of the same purpose and scope supersedes (revokes) the old one. */
export interface Consent {
  readonly id: string;
  readonly tenantId: string;
  readonly userId: string;
  readonly purpose: ConsentPurpose;
  /** What the consent covers within its purpose: `*` (every agent) or one agent id. */
  readonly scope: string;
  /** Version of the terms the user agreed to. */
  readonly version: string;
  readonly status: 'granted' | 'revoked';
  readonly grantedAt: Date;
  readonly grantedBy: ConsentActor;
  readonly revokedAt: Date | null;
  readonly revokedBy: ConsentActor | null;
}

/** Input of a grant. */
export interface GrantConsentInput {
  readonly purpose: ConsentPurpose;
  readonly scope: string;
  readonly version: string;
}

/** What a grant may name, as the tenant has it (checked before a consent is recorded). */
export interface ConsentTargets {
  /** Whether `agentId` is an agent of the caller's tenant that the caller can use. */
  agentUsable(principal: Principal, agentId: string): Promise<boolean>;
  /**
   * Whether `toolName` is a built-in tool, one of the tenant's HTTP tools, or
   * `mcp:<server>:<tool>` of one of the tenant's MCP servers (whose tools are listed at run
   * time, so the server is what is checked).
   */
  toolExists(tenantId: string, toolName: string): Promise<boolean>;
}

/** Storage of consents; every change writes an audit event in the same transaction. */
export interface ConsentStore {
  /** Consents of `subject` visible to `principal`, newest first. */
  list(
    principal: Principal,
    subject: ConsentSubject,
    filter: { readonly status: 'granted' | 'revoked' | undefined },
  ): Promise<Consent[]>;
  grant(principal: Principal, subject: ConsentSubject, input: GrantConsentInput): Promise<Consent>;
  /** Revokes one of the subject's granted consents; undefined when there is no such consent. */
  revoke(
    principal: Principal,
    subject: ConsentSubject,
    consentId: string,
  ): Promise<Consent | undefined>;
  /** A granted consent of the subject for `purpose` covering `scope` (exactly or `*`). */
  findGranted(
    subject: ConsentSubject,
    purpose: ConsentPurpose,
    scope: string,
  ): Promise<Consent | undefined>;
}
