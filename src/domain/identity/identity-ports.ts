import type { ApiKey, AuditRecord, OidcProvider, Tenant, User } from './identity-types.ts';
import type { Action, Role } from './permissions.ts';
import type { Principal } from './principal.ts';

/** A page request: at most `limit` items after the cursor `after` (an id). */
export interface PageRequest {
  readonly limit: number;
  readonly after?: string | undefined;
}

/** A page of results and the cursor for the next one (null at the end). */
export interface Page<T> {
  readonly data: readonly T[];
  readonly nextCursor: string | null;
}

/** Fields of a new tenant. */
export interface NewTenant {
  readonly slug: string;
  readonly name: string;
  readonly timeZone: string;
  readonly metadata: Readonly<Record<string, unknown>>;
}

/** Changes to a tenant; absent fields stay as they are. */
export interface TenantPatch {
  readonly name?: string;
  readonly status?: 'active' | 'suspended';
  readonly timeZone?: string;
  readonly captureContent?: boolean;
  readonly metadata?: Readonly<Record<string, unknown>>;
}

/** Fields of a new user and their membership. */
export interface NewUser {
  readonly email: string | null;
  readonly displayName: string | null;
  readonly role: Role;
  readonly externalIssuer?: string | null;
  readonly externalSubject?: string | null;
  readonly metadata: Readonly<Record<string, unknown>>;
}

/** Changes to a user; absent fields stay as they are. */
export interface UserPatch {
  readonly email?: string | null;
  readonly displayName?: string | null;
  readonly role?: Role;
  readonly status?: 'active' | 'disabled';
  readonly metadata?: Readonly<Record<string, unknown>>;
}

/** Fields of a new API key; the secret itself never reaches the store. */
export interface NewApiKey {
  readonly userId: string;
  readonly name: string;
  readonly prefix: string;
  readonly keyHash: Buffer;
  readonly scopes: readonly Action[] | null;
  readonly expiresAt: Date | null;
  readonly rotatedFromId: string | null;
}

/** What authentication learns from a key hash. */
export interface KeyIdentity {
  readonly key: ApiKey;
  readonly user: User;
  readonly tenantStatus: 'active' | 'suspended';
}

/** Fields of a new OIDC provider. */
export type NewOidcProvider = Omit<OidcProvider, 'id' | 'tenantId' | 'createdAt' | 'updatedAt'>;

/**
 * Persistence of tenants, users, memberships and keys; every call is scoped by `principal`,
 * and every change writes its audit event in the same transaction (invariant 11).
 */
export interface IdentityStore {
  createTenant(principal: Principal, input: NewTenant): Promise<Tenant>;
  listTenants(principal: Principal, page: PageRequest): Promise<Page<Tenant>>;
  getTenant(principal: Principal, tenantId: string): Promise<Tenant | undefined>;
  updateTenant(
    principal: Principal,
    tenantId: string,
    patch: TenantPatch,
  ): Promise<Tenant | undefined>;
  createUser(principal: Principal, tenantId: string, input: NewUser): Promise<User>;
  listUsers(principal: Principal, tenantId: string, page: PageRequest): Promise<Page<User>>;
  getUser(principal: Principal, tenantId: string, userId: string): Promise<User | undefined>;
  /**
   * Applies `patch` in one transaction; `check` sees the current user and the tenant's owner
   * count and may throw to refuse the change (for example demoting the last owner).
   */
  updateUser(options: {
    readonly principal: Principal;
    readonly tenantId: string;
    readonly userId: string;
    readonly patch: UserPatch;
    /** Throws to refuse; `activeOwners` counts the tenant's owners who are not disabled. */
    readonly check: (current: User, activeOwners: number) => void;
  }): Promise<User | undefined>;
  createApiKey(principal: Principal, tenantId: string, input: NewApiKey): Promise<ApiKey>;
  listApiKeys(
    principal: Principal,
    owner: { readonly tenantId: string; readonly userId: string },
    page: PageRequest,
  ): Promise<Page<ApiKey>>;
  getApiKey(
    principal: Principal,
    scope: { readonly tenantId: string; readonly userId: string; readonly keyId: string },
  ): Promise<ApiKey | undefined>;
  /** Revokes a key (and, on rotation, creates its successor) in one transaction. */
  revokeApiKey(options: {
    readonly principal: Principal;
    readonly tenantId: string;
    readonly userId: string;
    readonly keyId: string;
    readonly revokeAt: Date;
    readonly successor?: NewApiKey | undefined;
  }): Promise<{ readonly revoked: ApiKey; readonly successor: ApiKey | undefined } | undefined>;
  findKeyIdentity(keyHash: Buffer): Promise<KeyIdentity | undefined>;
  touchApiKey(tenantId: string, keyId: string, at: Date): Promise<void>;
  /** True when `keyHash` is the hash of a stored (generated) operator key. */
  isOperatorKeyHash(keyHash: Buffer): Promise<boolean>;
  findOidcProviders(issuer: string): Promise<readonly OidcProvider[]>;
  findUserBySubject(provider: OidcProvider, subject: string): Promise<User | undefined>;
  /** Status of a tenant, read with the system scope during authentication. */
  tenantStatus(tenantId: string): Promise<'active' | 'suspended' | undefined>;
  provisionUser(provider: OidcProvider, input: NewUser): Promise<User>;
  createOidcProvider(
    principal: Principal,
    tenantId: string,
    input: NewOidcProvider,
  ): Promise<OidcProvider>;
  listOidcProviders(principal: Principal, tenantId: string): Promise<readonly OidcProvider[]>;
  deleteOidcProvider(principal: Principal, tenantId: string, providerId: string): Promise<boolean>;
  /** Records an audit event on its own (for example a failed sign-in). */
  recordAudit(
    tenantId: string,
    principal: Principal | undefined,
    audit: AuditRecord,
  ): Promise<void>;
}
