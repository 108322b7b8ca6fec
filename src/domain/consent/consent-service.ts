import { AppError, NotFoundError, ValidationError } from '../errors.ts';
import { assertCan, type Principal, type UserPrincipal } from '../identity/principal.ts';
import type {
  Consent,
  ConsentPurpose,
  ConsentStore,
  ConsentSubject,
  ConsentTargets,
  GrantConsentInput,
} from './consent-types.ts';

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function selfOf(principal: Principal): ConsentSubject {
  if (principal.kind !== 'user')
    throw new AppError('forbidden', 'Consents belong to users; the operator has none.');
  assertCan(principal, 'consent:manage-own');
  return { tenantId: principal.tenantId, userId: principal.userId };
}

/**
 * Refuses (422) a grant whose scope names no agent the user can use, or whose tool purpose
 * names no tool of the tenant. An agent of another tenant and one that exists nowhere get the
 * same answer.
 */
async function checkTargets(
  principal: UserPrincipal,
  input: GrantConsentInput,
  targets: ConsentTargets,
): Promise<void> {
  const issues: { path: string; message: string }[] = [];
  if (input.scope !== '*' && !(await targets.agentUsable(principal, input.scope)))
    issues.push({ path: 'body.scope', message: 'no agent of your tenant has this id' });
  if (
    input.purpose.startsWith('tool:') &&
    !(await targets.toolExists(principal.tenantId, input.purpose.slice('tool:'.length)))
  )
    issues.push({
      path: 'body.purpose',
      message: 'names no built-in or HTTP tool of your tenant, nor an MCP tool of its servers',
    });
  if (issues.length > 0) throw new ValidationError(issues);
}

/**
 * Consent: users grant and revoke their own consents; owners and admins read those of their
 * tenant's users. Features that need consent call {@link ConsentService.requireConsent}.
 * `targets` checks what a grant names (without it, only the shapes are checked).
 */
export function createConsentService(options: {
  readonly store: ConsentStore;
  readonly targets?: ConsentTargets | undefined;
}) {
  const { store } = options;
  return {
    /** The caller's own consents. */
    listOwn(principal: Principal, status?: 'granted' | 'revoked'): Promise<Consent[]> {
      return store.list(principal, selfOf(principal), { status });
    },
    /** A user's consents, for the tenant's owners and admins (and the operator). */
    listForUser(principal: Principal, subject: ConsentSubject): Promise<Consent[]> {
      if (
        !uuidPattern.test(subject.userId) ||
        !uuidPattern.test(subject.tenantId) ||
        (principal.kind === 'user' && principal.tenantId !== subject.tenantId)
      )
        throw new NotFoundError('user_not_found', 'User not found.');
      assertCan(principal, 'user:read');
      return store.list(principal, subject, { status: undefined });
    },
    /**
     * Grants the caller's consent; a granted one of the same purpose and scope is superseded.
     * The scope must be `*` or an agent of the caller's tenant they can use, and a tool purpose
     * must name a tool of the tenant (422 otherwise); records granted before these checks are
     * listed and revoked as they are.
     */
    async grant(principal: Principal, input: GrantConsentInput): Promise<Consent> {
      const subject = selfOf(principal);
      if (options.targets !== undefined && principal.kind === 'user')
        await checkTargets(principal, input, options.targets);
      return store.grant(principal, subject, input);
    },
    /**
     * Revokes one of the caller's consents (404 for any other id, whoever owns it). Revoking
     * `long_term_memory` erases the caller's long-term memory in the same transaction (unless
     * another granted one covering `*` remains): see docs/observability.md#memory.
     */
    async revoke(principal: Principal, consentId: string): Promise<Consent> {
      const subject = selfOf(principal);
      const revoked = uuidPattern.test(consentId)
        ? await store.revoke(principal, subject, consentId)
        : undefined;
      if (revoked === undefined)
        throw new NotFoundError('consent_not_found', 'No granted consent with this id.');
      return revoked;
    },
    /**
     * Throws `consent_required` (403) unless `subject` (a user principal, or the user a run
     * acts for) has granted consent for `purpose` covering `scope` (`*` by default; a consent
     * for `*` covers every scope). Call it before content capture, long-term memory or a
     * tool that needs consent.
     */
    async requireConsent(
      subject: ConsentSubject,
      purpose: ConsentPurpose,
      scope = '*',
    ): Promise<Consent> {
      const found = await store.findGranted(subject, purpose, scope);
      if (found === undefined) {
        throw new AppError(
          'consent_required',
          `This needs the user's consent for '${purpose}'; grant it with POST /v1/me/consents.`,
          { details: { purpose, scope } },
        );
      }
      return found;
    },
  };
}

/** The consent service's interface. */
export type ConsentService = ReturnType<typeof createConsentService>;
