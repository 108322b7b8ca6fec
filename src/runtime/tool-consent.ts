import {
  type ConsentPurpose,
  type ConsentSubject,
  toolConsentPurpose,
} from '../domain/consent/consent-types.ts';
import { AppError } from '../domain/errors.ts';
import type { ToolCallContext } from './run-steps.ts';
import type { ToolDefinition } from './tools/tool-registry.ts';

/** Throws `consent_required` unless `subject` granted `purpose` for `scope` or `*`. */
export type RequireConsent = (
  subject: ConsentSubject,
  purpose: ConsentPurpose,
  scope: string,
) => Promise<unknown>;

/**
 * The tool gate's consent check: a tool needs the run's user's `tool:<tool name>` consent when
 * its definition says so (`requiresConsent`) or the agent lists it (`consentRequiredTools`).
 * The consent must cover the agent (scope `*` or the agent's id). Read on every call, so a
 * revocation stops the next call. Undefined when the call may go on, else the refusal the model
 * is told about (code `consent_required`); with no consent service it refuses (fails closed).
 */
export async function missingConsent(options: {
  readonly requireConsent: RequireConsent | undefined;
  readonly context: ToolCallContext;
  readonly tool: ToolDefinition;
}): Promise<{ readonly code: string; readonly message: string } | undefined> {
  const { context, tool } = options;
  if (tool.requiresConsent !== true && !context.agent.consentRequiredTools.includes(tool.name))
    return undefined;
  const purpose = toolConsentPurpose(tool.name);
  const refusal = {
    code: 'consent_required',
    message: `Tool '${tool.name}' needs the user's consent for '${purpose}'; the user can grant it with POST /v1/me/consents.`,
  };
  if (options.requireConsent === undefined) return refusal;
  try {
    await options.requireConsent(
      { tenantId: context.claim.tenantId, userId: context.claim.userId },
      purpose,
      context.agent.id,
    );
    return undefined;
  } catch (error) {
    if (error instanceof AppError && error.code === 'consent_required') return refusal;
    throw error;
  }
}
