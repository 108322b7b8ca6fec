import type { JWTPayload } from 'jose';
import { UnauthenticatedError } from '../../domain/errors.ts';
import {
  hashesEqual,
  hashSecret,
  looksLikeApiKey,
  operatorKeyPrefix,
} from '../../domain/identity/api-key-secret.ts';
import type { IdentityStore, NewUser } from '../../domain/identity/identity-ports.ts';
import type { OidcProvider, User } from '../../domain/identity/identity-types.ts';
import { type Role, roles } from '../../domain/identity/permissions.ts';
import type { Principal, UserPrincipal } from '../../domain/identity/principal.ts';
import { isUnstorable } from '../../storage/postgres/storable.ts';
import { describeUniqueViolation } from '../../storage/postgres/unique-violation.ts';
import { emailSchema } from '../schemas.ts';
import type { JwtVerifier } from './jwt-verifier.ts';

/** Turns a bearer token into a {@link Principal}, or throws {@link UnauthenticatedError}. */
export interface Authenticator {
  /**
   * `tenantId` (the `X-Brigade-Tenant` header) restricts a JWT to that tenant's providers: it
   * picks the tenant when several trust the token's issuer and audience.
   */
  authenticate(
    token: string,
    hint?: { readonly tenantId?: string | undefined },
  ): Promise<Principal>;
}

/** Logger the authenticator reports background failures to. */
export interface AuthLogger {
  warn(object: object, message: string): void;
}

/** Options for {@link createAuthenticator}. */
export interface AuthenticatorOptions {
  readonly store: IdentityStore;
  readonly jwt: JwtVerifier;
  /** Hash of `BRIGADE_OPERATOR_KEY`; when set, stored (generated) operator keys are ignored. */
  readonly environmentOperatorKeyHash: Buffer | undefined;
  /** Minimum interval between `last_used_at` writes for one key, in milliseconds. */
  readonly touchIntervalMs: number;
  readonly logger: AuthLogger;
  readonly clock?: () => Date;
}

const operatorCacheMs = 30_000;

function claimString(payload: JWTPayload, claim: string): string | undefined {
  const value = payload[claim];
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}

/**
 * Longest subject claim, in UTF-8 bytes, that identifies a user: with the issuer it must fit
 * one entry of the unique index on (tenant, issuer, subject), about 2,700 bytes. OpenID
 * Connect's `sub` is at most 255 ASCII characters; a custom subject claim gets more room.
 */
const maxSubjectBytes = 1024;

/** Why a subject claim cannot identify a user; undefined when it can. */
function subjectProblem(subject: string): string | undefined {
  if (isUnstorable(subject))
    return 'holds a NUL character or an unpaired UTF-16 surrogate, which no user can be stored under';
  if (Buffer.byteLength(subject) > maxSubjectBytes)
    return `is longer than ${maxSubjectBytes} bytes`;
  return undefined;
}

/**
 * The e-mail and display name a provider's token gives a new user, validated as the API
 * validates the same fields: an e-mail the API would refuse (not an address, over 320
 * characters, a NUL) is left out, and so is a name that is blank or holds a character
 * PostgreSQL cannot store; a longer name is cut to 200 characters (whole code points). A
 * sign-in never fails on either: the subject, not the profile, identifies the user.
 */
function profileClaims(provider: OidcProvider, payload: JWTPayload) {
  const email = claimString(payload, provider.emailClaim);
  const name = claimString(payload, provider.nameClaim)?.trim();
  const displayName =
    name === undefined || name.length === 0 || isUnstorable(name)
      ? null
      : Array.from(name).slice(0, 200).join('').trim();
  const emailAccepted = email !== undefined && emailSchema.safeParse(email).success;
  return {
    email: emailAccepted ? email : null,
    emailRefused: email !== undefined && !emailAccepted,
    displayName,
  };
}

/** The highest Brigade role the provider's `roleClaim` maps to (never owner). */
function mappedRole(provider: OidcProvider, payload: JWTPayload): Role {
  if (provider.roleClaim === null) return provider.defaultRole;
  const raw = payload[provider.roleClaim];
  const values = Array.isArray(raw) ? raw : [raw];
  const mapped = values
    .filter((value): value is string => typeof value === 'string')
    // Own keys only: a claim of `constructor` or `__proto__` must not find Object's members.
    .map((value) =>
      Object.hasOwn(provider.roleMapping, value) ? provider.roleMapping[value] : undefined,
    )
    .filter((role): role is 'admin' | 'member' | 'viewer' => role !== undefined);
  return (
    mapped.sort((left, right) => roles.indexOf(left) - roles.indexOf(right))[0] ??
    provider.defaultRole
  );
}

function userPrincipal(
  user: User,
  method: UserPrincipal['authMethod'],
  key?: { id: string; scopes: UserPrincipal['scopes'] },
): UserPrincipal {
  return {
    kind: 'user',
    tenantId: user.tenantId,
    userId: user.id,
    role: user.role,
    keyId: key?.id,
    scopes: key?.scopes,
    authMethod: method,
  };
}

/** A new user's e-mail claim is another user's address already (users_email_key). */
class EmailTakenError extends Error {}

/** How often the same refused credential is audited again, per process. */
const failureAuditIntervalMs = 60_000;

/**
 * Creates the {@link Authenticator}: operator keys, `brg_` API keys (SHA-256 lookup under an
 * RLS policy that reveals only the presented key's row) and JWTs from a tenant's OIDC provider.
 */
export function createAuthenticator(options: AuthenticatorOptions): Authenticator {
  const { store, jwt, logger } = options;
  const now = options.clock ?? (() => new Date());
  const lastTouched = new Map<string, number>();
  /** Refused sign-ins audited lately: when, and how many repeats were left out since. */
  const recentFailures = new Map<string, { at: number; repeats: number }>();
  const operatorCache = new Map<string, number>();

  /**
   * The operator key from the environment is compared in memory; generated operator keys
   * (prefix `brg_op_`) are looked up by hash under RLS, and a positive answer is cached.
   */
  async function isOperator(token: string, hash: Buffer): Promise<boolean> {
    if (options.environmentOperatorKeyHash !== undefined) {
      return hashesEqual(hash, options.environmentOperatorKeyHash);
    }
    if (!token.startsWith(operatorKeyPrefix)) return false;
    const key = hash.toString('hex');
    const cached = operatorCache.get(key);
    if (cached !== undefined && Date.now() - cached < operatorCacheMs) return true;
    const known = await store.isOperatorKeyHash(hash);
    if (known) operatorCache.set(key, Date.now());
    return known;
  }

  function touch(tenantId: string, keyId: string, at: Date): void {
    const previous = lastTouched.get(keyId) ?? 0;
    if (at.getTime() - previous < options.touchIntervalMs) return;
    lastTouched.set(keyId, at.getTime());
    if (lastTouched.size > 100_000) lastTouched.clear();
    store.touchApiKey(tenantId, keyId, at).catch((error: unknown) => {
      logger.warn(
        { err: { message: (error as Error).message }, keyId },
        'could not record API key use',
      );
    });
  }

  /**
   * Audits a refused sign-in, once a minute per process for the same credential and reason:
   * the log is append-only, so a client retrying a revoked key in a loop must not grow it by
   * a row a request. The next event says how many were left out (`data.repeats`).
   */
  async function auditFailure(
    tenantId: string,
    failure: { targetType: string; targetId: string; reason: string },
  ): Promise<void> {
    const key = `${tenantId}:${failure.targetId}:${failure.reason}`;
    const time = now().getTime();
    const seen = recentFailures.get(key);
    if (seen !== undefined && time - seen.at < failureAuditIntervalMs) {
      seen.repeats += 1;
      return;
    }
    recentFailures.delete(key);
    recentFailures.set(key, { at: time, repeats: 0 });
    if (recentFailures.size > 10_000) {
      const oldest = recentFailures.keys().next().value;
      if (oldest !== undefined) recentFailures.delete(oldest);
    }
    await store
      .recordAudit(tenantId, undefined, {
        action: 'auth.failed',
        outcome: 'denied',
        ...failure,
        ...(seen === undefined || seen.repeats === 0 ? {} : { data: { repeats: seen.repeats } }),
      })
      .catch(() => undefined);
  }

  async function fail(tenantId: string, keyId: string, reason: string): Promise<never> {
    await auditFailure(tenantId, { targetType: 'api_key', targetId: keyId, reason });
    throw new UnauthenticatedError();
  }

  async function authenticateKey(token: string, hash: Buffer): Promise<Principal> {
    const identity = looksLikeApiKey(token) ? await store.findKeyIdentity(hash) : undefined;
    if (identity === undefined) throw new UnauthenticatedError();
    const { key, user, tenantStatus } = identity;
    const at = now();
    if (key.revokedAt !== null && key.revokedAt.getTime() <= at.getTime())
      return fail(key.tenantId, key.id, 'key revoked');
    if (key.expiresAt !== null && key.expiresAt.getTime() <= at.getTime())
      return fail(key.tenantId, key.id, 'key expired');
    if (user.status !== 'active') return fail(key.tenantId, key.id, 'user disabled');
    if (tenantStatus !== 'active') return fail(key.tenantId, key.id, 'tenant suspended');
    touch(key.tenantId, key.id, at);
    return userPrincipal(user, 'api_key', { id: key.id, scopes: key.scopes ?? undefined });
  }

  /**
   * Inserts a new user for a subject; when a concurrent first sign-in of the same subject
   * inserted it first (a unique violation), that user is returned instead.
   */
  async function insertOrFind(
    provider: OidcProvider,
    input: NewUser & { readonly externalSubject: string },
  ): Promise<User | undefined> {
    try {
      return await store.provisionUser(provider, input);
    } catch (error) {
      if ((error as { code?: string }).code !== '23505') throw error;
      const user = await store.findUserBySubject(provider, input.externalSubject);
      if (user !== undefined || describeUniqueViolation(error).field !== 'email') return user;
      throw new EmailTakenError();
    }
  }

  /**
   * Provisions the user a verified token names (just-in-time). Its profile claims never fail
   * the sign-in: an e-mail the API would refuse, or one another user of the tenant has
   * already (in any case), is left out with a warning that names the provider, never the
   * address.
   */
  async function provision(
    provider: OidcProvider,
    token: { readonly payload: JWTPayload; readonly subject: string },
  ): Promise<User | undefined> {
    const { emailRefused, ...profile } = profileClaims(provider, token.payload);
    const warn = (why: string) =>
      logger.warn(
        { tenantId: provider.tenantId, providerId: provider.id, claim: provider.emailClaim },
        `a provisioned user got no e-mail: ${why}`,
      );
    if (emailRefused) warn('the claim is not an address the API accepts');
    const input = {
      ...profile,
      role: mappedRole(provider, token.payload),
      externalIssuer: provider.issuer,
      externalSubject: token.subject,
      metadata: {},
    };
    try {
      return await insertOrFind(provider, input);
    } catch (error) {
      if (!(error instanceof EmailTakenError)) throw error;
      warn('another user of the tenant has this address');
      return insertOrFind(provider, { ...input, email: null });
    }
  }

  /**
   * Verifies a JWT against every enabled provider registered for its issuer. It signs in only
   * when the providers that accept it all belong to one tenant: if two tenants trust the same
   * issuer and audience (one may have copied the other's public registration), the token is
   * refused and both tenants' audit logs say why, rather than letting row order decide.
   */
  async function authenticateJwt(
    token: string,
    tenantHint: string | undefined,
  ): Promise<Principal> {
    const issuer = jwt.peekIssuer(token);
    if (issuer === undefined) throw new UnauthenticatedError();
    const accepted: { provider: OidcProvider; payload: JWTPayload; subject: string }[] = [];
    /** Why a token a provider verified still signs in no one (its subject claim). */
    let refusal: string | undefined;
    for (const provider of await store.findOidcProviders(issuer)) {
      if (tenantHint !== undefined && provider.tenantId !== tenantHint) continue;
      let payload: JWTPayload;
      try {
        payload = await jwt.verify(provider, token);
      } catch {
        continue; // Not this provider's token.
      }
      const subject = claimString(payload, provider.subjectClaim);
      const problem = subject === undefined ? undefined : subjectProblem(subject);
      if (problem !== undefined)
        refusal = `The token's subject claim ('${provider.subjectClaim.slice(0, 100)}') ${problem}.`;
      else if (subject !== undefined) accepted.push({ provider, payload, subject });
    }
    const tenants = new Set(accepted.map((entry) => entry.provider.tenantId));
    if (tenants.size > 1) {
      for (const tenantId of tenants) {
        await auditFailure(tenantId, {
          targetType: 'oidc_provider',
          targetId:
            accepted.find((entry) => entry.provider.tenantId === tenantId)?.provider.id ?? '',
          reason: 'another tenant trusts the same issuer and audience; the token is ambiguous',
        });
      }
      throw new UnauthenticatedError(
        'More than one organisation trusts this token’s issuer and audience; send X-Brigade-Tenant: <tenant id>.',
      );
    }
    const tenantId = accepted[0]?.provider.tenantId;
    if (tenantId !== undefined && (await store.tenantStatus(tenantId)) !== 'active') {
      await auditFailure(tenantId, {
        targetType: 'oidc_provider',
        targetId: accepted[0]?.provider.id ?? '',
        reason: 'tenant suspended',
      });
      throw new UnauthenticatedError();
    }
    for (const { provider, payload, subject } of accepted) {
      let user = await store.findUserBySubject(provider, subject);
      if (user === undefined && provider.jitProvisioning)
        user = await provision(provider, { payload, subject });
      if (user === undefined) continue;
      if (user.status !== 'active') throw new UnauthenticatedError();
      return userPrincipal(user, 'jwt');
    }
    throw new UnauthenticatedError(refusal);
  }

  return {
    async authenticate(token, hint) {
      if (token.length === 0 || token.length > 8192) throw new UnauthenticatedError();
      const hash = hashSecret(token);
      if (await isOperator(token, hash)) return { kind: 'operator' };
      if (token.split('.').length === 3) return authenticateJwt(token, hint?.tenantId);
      return authenticateKey(token, hash);
    },
  };
}
