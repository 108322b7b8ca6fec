import { ConflictError, ForbiddenError, NotFoundError, ValidationError } from '../errors.ts';
import { apiKeyPrefix, generateSecret, hashSecret } from './api-key-secret.ts';
import type {
  IdentityStore,
  NewOidcProvider,
  NewTenant,
  NewUser,
  Page,
  PageRequest,
  TenantPatch,
  UserPatch,
} from './identity-ports.ts';
import type { ApiKey, CreatedApiKey, OidcProvider, Tenant, User } from './identity-types.ts';
import { type Action, isProtectedRole, isRoleAtLeast, rolePermissions } from './permissions.ts';
import { assertCan, can, type Principal, permittedActions } from './principal.ts';

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Options of a new API key. */
export interface ApiKeyRequest {
  readonly name: string;
  readonly scopes?: readonly Action[] | undefined;
  readonly expiresAt?: Date | undefined;
}

/** The identity use cases: tenants, users, memberships, API keys and OIDC providers. */
export interface IdentityService {
  createTenant(principal: Principal, input: NewTenant): Promise<Tenant>;
  listTenants(principal: Principal, page: PageRequest): Promise<Page<Tenant>>;
  getTenant(principal: Principal, tenantId: string): Promise<Tenant>;
  updateTenant(principal: Principal, tenantId: string, patch: TenantPatch): Promise<Tenant>;
  createUser(principal: Principal, tenantId: string, input: NewUser): Promise<User>;
  listUsers(principal: Principal, tenantId: string, page: PageRequest): Promise<Page<User>>;
  getUser(principal: Principal, tenantId: string, userId: string): Promise<User>;
  updateUser(principal: Principal, target: UserRef, patch: UserPatch): Promise<User>;
  createApiKey(
    principal: Principal,
    target: UserRef,
    request: ApiKeyRequest,
  ): Promise<CreatedApiKey>;
  listApiKeys(principal: Principal, target: UserRef, page: PageRequest): Promise<Page<ApiKey>>;
  revokeApiKey(principal: Principal, target: KeyRef): Promise<ApiKey>;
  rotateApiKey(principal: Principal, target: KeyRef, graceSeconds: number): Promise<CreatedApiKey>;
  createOidcProvider(
    principal: Principal,
    tenantId: string,
    input: NewOidcProvider,
  ): Promise<OidcProvider>;
  listOidcProviders(principal: Principal, tenantId: string): Promise<readonly OidcProvider[]>;
  deleteOidcProvider(principal: Principal, tenantId: string, providerId: string): Promise<void>;
}

/** Identifies a user of a tenant. */
export interface UserRef {
  readonly tenantId: string;
  readonly userId: string;
}

/** Identifies an API key of a user. */
export interface KeyRef extends UserRef {
  readonly keyId: string;
}

function tenantNotFound(): NotFoundError {
  return new NotFoundError('tenant_not_found', 'Tenant not found.');
}

function userNotFound(): NotFoundError {
  return new NotFoundError('user_not_found', 'User not found.');
}

/**
 * Ensures `principal` may act in `tenantId` at all. A user asking about another tenant gets
 * 404, never 403, so the answer does not reveal whether that tenant exists (invariant 1).
 */
function assertInTenant(principal: Principal, tenantId: string): void {
  if (!uuidPattern.test(tenantId)) throw tenantNotFound();
  if (principal.kind === 'user' && principal.tenantId !== tenantId) throw tenantNotFound();
}

function isSelf(principal: Principal, target: UserRef): boolean {
  // A UUID in upper case names the same user (PostgreSQL reads it so).
  return principal.kind === 'user' && principal.userId === target.userId.toLowerCase();
}

function apiKeyNotFound(): NotFoundError {
  return new NotFoundError('api_key_not_found', 'API key not found.');
}

/**
 * Refuses an id that is not a UUID with the answer an unknown one of its kind gets (404
 * `user_not_found`, `api_key_not_found`…): no object has it.
 */
function assertId(id: string, notFound: () => NotFoundError): void {
  if (!uuidPattern.test(id)) throw notFound();
}

/** Creates the {@link IdentityService} over an {@link IdentityStore}. */
export function createIdentityService(options: {
  readonly store: IdentityStore;
  readonly clock?: () => Date;
  /**
   * Ends the work a disabled user or a suspended tenant has under way (cancels their active
   * runs). Called after the change commits, again on a repeated request, so a retry finishes
   * what a failed call left.
   */
  readonly endAccess?: (subject: {
    readonly tenantId: string;
    readonly userId?: string;
    readonly reason: string;
  }) => Promise<unknown>;
  /** What is wrong with a provider's JWKS URL (a private address, say); empty when nothing. */
  readonly jwksUrlProblems?: (url: string) => readonly string[];
}): IdentityService {
  const { store } = options;
  const now = options.clock ?? (() => new Date());

  /** `review`: listing or revoking, which `key:review-own` allows on one's own keys. */
  function assertManageKeys(
    principal: Principal,
    target: UserRef,
    options: { readonly review?: boolean } = {},
  ): void {
    assertInTenant(principal, target.tenantId);
    assertId(target.userId, userNotFound);
    if (isSelf(principal, target)) {
      // Listing and revoking one's own keys is `key:review-own` (which `key:manage-own`
      // includes): a refusal names the permission that would grant the request.
      if (options.review !== true) assertCan(principal, 'key:manage-own');
      else if (!can(principal, 'key:manage-own')) assertCan(principal, 'key:review-own');
    } else if (!can(principal, 'key:manage-any')) throw userNotFound();
  }

  /**
   * Only an owner (or the operator) manages the keys of an owner or of another admin: an admin
   * holding another admin's key could use it to lift a limit an owner set on admins.
   */
  function assertOutranks(principal: Principal, user: User): void {
    if (
      principal.kind === 'user' &&
      principal.userId !== user.id &&
      isProtectedRole(user.role) &&
      !can(principal, 'user:manage-owners')
    ) {
      throw new ForbiddenError('Only an owner can manage the credentials of an owner or an admin.');
    }
  }

  async function loadTarget(principal: Principal, target: UserRef): Promise<User> {
    const user = await store.getUser(principal, target.tenantId, target.userId);
    if (user === undefined) throw userNotFound();
    return user;
  }

  /**
   * Builds a new key for `user`. Its scopes never exceed what the target's role grants, nor
   * (for a user creating it) what the creating credential itself may do: no escalation.
   */
  function newKey(
    principal: Principal,
    user: User,
    request: ApiKeyRequest & { rotatedFromId?: string },
  ) {
    const creator = principal.kind === 'operator' ? undefined : permittedActions(principal);
    const ceiling = rolePermissions[user.role].filter(
      (action) => creator === undefined || creator.includes(action),
    );
    const requested = request.scopes === undefined ? undefined : [...new Set(request.scopes)];
    // Every problem at once, named as the schema's problems are (`body.<field>`).
    const issues = (request.scopes ?? []).flatMap((scope, index) =>
      ceiling.includes(scope)
        ? []
        : [
            {
              path: `body.scopes.${index}`,
              message: `'${scope}' is not permitted to this user or credential`,
            },
          ],
    );
    if (request.expiresAt !== undefined && request.expiresAt.getTime() <= now().getTime())
      issues.push({ path: 'body.expiresAt', message: 'must be in the future' });
    // No scopes asked for means every action of the role the creator may grant: none at all
    // would be a key that can do nothing (an explicit `scopes: []` is refused likewise).
    if (requested === undefined && ceiling.length === 0)
      issues.push({
        path: 'body.scopes',
        message: `the key would carry no permission: this credential may grant none of the actions of the user's role (${user.role})`,
      });
    if (issues.length > 0) throw new ValidationError(issues);
    const unrestricted = ceiling.length === rolePermissions[user.role].length;
    const scopes = requested ?? (unrestricted ? null : ceiling);
    const { secret, displayPrefix } = generateSecret(apiKeyPrefix);
    return {
      secret,
      input: {
        userId: user.id,
        name: request.name,
        prefix: displayPrefix,
        keyHash: hashSecret(secret),
        scopes,
        expiresAt: request.expiresAt ?? null,
        rotatedFromId: request.rotatedFromId ?? null,
      },
    };
  }

  return {
    async createTenant(principal, input) {
      if (principal.kind !== 'operator')
        throw new ForbiddenError('Only the platform operator can create tenants.');
      return store.createTenant(principal, input);
    },
    listTenants: (principal, page) => store.listTenants(principal, page),
    async getTenant(principal, tenantId) {
      assertInTenant(principal, tenantId);
      const tenant = await store.getTenant(principal, tenantId);
      if (tenant === undefined) throw tenantNotFound();
      return tenant;
    },
    async updateTenant(principal, tenantId, patch) {
      assertInTenant(principal, tenantId);
      // Suspending a tenant (which stops every sign-in to it) is the operator's decision.
      if (patch.status !== undefined && principal.kind !== 'operator') {
        throw new ForbiddenError('Only the platform operator can suspend or reactivate a tenant.');
      }
      assertCan(principal, 'tenant:update');
      const tenant = await store.updateTenant(principal, tenantId, patch);
      if (tenant === undefined) throw tenantNotFound();
      if (patch.status === 'suspended')
        await options.endAccess?.({ tenantId, reason: 'the organisation was suspended' });
      return tenant;
    },
    async createUser(principal, tenantId, input) {
      assertInTenant(principal, tenantId);
      assertCan(principal, 'user:manage');
      if (isProtectedRole(input.role)) assertCan(principal, 'user:manage-owners');
      if (
        principal.kind === 'operator' &&
        (await store.getTenant(principal, tenantId)) === undefined
      ) {
        throw tenantNotFound();
      }
      return store.createUser(principal, tenantId, input);
    },
    async listUsers(principal, tenantId, page) {
      assertInTenant(principal, tenantId);
      assertCan(principal, 'user:read');
      return store.listUsers(principal, tenantId, page);
    },
    async getUser(principal, tenantId, userId) {
      assertInTenant(principal, tenantId);
      assertId(userId, userNotFound);
      if (!isSelf(principal, { tenantId, userId }) && !can(principal, 'user:read'))
        throw userNotFound();
      return loadTarget(principal, { tenantId, userId });
    },
    async updateUser(principal, target, patch) {
      assertInTenant(principal, target.tenantId);
      assertId(target.userId, userNotFound);
      const self = isSelf(principal, target);
      const selfEditable = Object.keys(patch).every(
        (key) => key === 'displayName' || key === 'metadata',
      );
      if (self && selfEditable) assertCan(principal, 'profile:update-own');
      else {
        if (!can(principal, 'user:manage')) {
          if (!self && !can(principal, 'user:read')) throw userNotFound();
          assertCan(principal, 'user:manage');
        }
      }
      const user = await store.updateUser({
        principal,
        tenantId: target.tenantId,
        userId: target.userId,
        patch,
        check: (current, activeOwners) => {
          // Only owners change an owner or an admin (role, status, profile) or make one: an
          // admin who could demote another admin (or themselves) could then lift a limit an
          // owner set on admins, or erase an admin; one who could promote a member whose key
          // they minted would hold an admin's key.
          const protectedUser =
            isProtectedRole(current.role) ||
            (patch.role !== undefined && isProtectedRole(patch.role));
          if (protectedUser && !(self && selfEditable)) assertCan(principal, 'user:manage-owners');
          const losesOwner =
            current.role === 'owner' &&
            current.status === 'active' &&
            ((patch.role !== undefined && patch.role !== 'owner') || patch.status === 'disabled');
          if (losesOwner && activeOwners <= 1) {
            throw new ConflictError('A tenant must keep at least one active owner.');
          }
          if (
            principal.kind === 'user' &&
            patch.role !== undefined &&
            !isRoleAtLeast(principal.role, patch.role)
          ) {
            throw new ForbiddenError('You cannot grant a role above your own.');
          }
        },
      });
      if (user === undefined) throw userNotFound();
      if (patch.status === 'disabled') {
        const subject = { tenantId: target.tenantId, userId: target.userId };
        await options.endAccess?.({ ...subject, reason: 'the user was disabled' });
      }
      return user;
    },
    async createApiKey(principal, target, request) {
      assertManageKeys(principal, target);
      const user = await loadTarget(principal, target);
      assertOutranks(principal, user);
      if (user.status !== 'active') throw new ConflictError('The user is disabled.');
      const { secret, input } = newKey(principal, user, request);
      const key = await store.createApiKey(principal, target.tenantId, input);
      return { key, secret };
    },
    async listApiKeys(principal, target, page) {
      assertManageKeys(principal, target, { review: true });
      assertOutranks(principal, await loadTarget(principal, target));
      return store.listApiKeys(principal, target, page);
    },
    async revokeApiKey(principal, target) {
      assertManageKeys(principal, target, { review: true });
      assertId(target.keyId, apiKeyNotFound);
      assertOutranks(principal, await loadTarget(principal, target));
      const result = await store.revokeApiKey({ principal, ...target, revokeAt: now() });
      if (result === undefined) throw apiKeyNotFound();
      return result.revoked;
    },
    async rotateApiKey(principal, target, graceSeconds) {
      assertManageKeys(principal, target);
      assertId(target.keyId, apiKeyNotFound);
      const user = await loadTarget(principal, target);
      assertOutranks(principal, user);
      const current = await store.getApiKey(principal, target);
      if (current === undefined) throw apiKeyNotFound();
      if (current.revokedAt !== null && current.revokedAt.getTime() <= now().getTime()) {
        throw new ConflictError('A revoked key cannot be rotated; create a new key instead.');
      }
      // Its successor would take over a credential that no longer works, without its expiry.
      if (current.expiresAt !== null && current.expiresAt.getTime() <= now().getTime()) {
        throw new ConflictError('An expired key cannot be rotated; create a new key instead.');
      }
      // A key in its rotation grace period has a successor already: rotating it again would
      // fork a second line of keys that revoking the successor would not end.
      if (current.revokedAt !== null) {
        throw new ConflictError('This key was already rotated; rotate its successor instead.');
      }
      if (user.status !== 'active') throw new ConflictError('The user is disabled.');
      const { secret, input } = newKey(principal, user, {
        name: current.name,
        scopes: current.scopes ?? undefined,
        expiresAt: current.expiresAt ?? undefined,
        rotatedFromId: current.id,
      });
      const result = await store.revokeApiKey({
        principal,
        ...target,
        revokeAt: new Date(now().getTime() + graceSeconds * 1000),
        successor: input,
      });
      if (result?.successor === undefined) throw apiKeyNotFound();
      return { key: result.successor, secret };
    },
    async createOidcProvider(principal, tenantId, input) {
      assertInTenant(principal, tenantId);
      assertCan(principal, 'oidc:manage');
      const problems =
        input.jwksUrl === undefined || input.jwksUrl === null
          ? []
          : (options.jwksUrlProblems?.(input.jwksUrl) ?? []);
      if (problems.length > 0)
        throw new ValidationError(problems.map((message) => ({ path: 'body.jwksUrl', message })));
      return store.createOidcProvider(principal, tenantId, input);
    },
    async listOidcProviders(principal, tenantId) {
      assertInTenant(principal, tenantId);
      assertCan(principal, 'oidc:read');
      return store.listOidcProviders(principal, tenantId);
    },
    async deleteOidcProvider(principal, tenantId, providerId) {
      assertInTenant(principal, tenantId);
      assertCan(principal, 'oidc:manage');
      const notFound = () =>
        new NotFoundError('oidc_provider_not_found', 'OIDC provider not found.');
      assertId(providerId, notFound);
      if (!(await store.deleteOidcProvider(principal, tenantId, providerId))) throw notFound();
    },
  };
}
