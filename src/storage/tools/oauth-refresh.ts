import { sql } from 'kysely';
import type { AuditRecord } from '../../domain/identity/identity-types.ts';
import type { Principal } from '../../domain/identity/principal.ts';
import {
  CredentialRefreshError,
  type OAuthSecrets,
  type OAuthSettings,
  type OAuthTokenRefresher,
} from '../../domain/tools/oauth-types.ts';
import { credentialContext, describeSecret, open, seal } from '../../domain/tools/vault-crypto.ts';
import { writeAudit } from '../identity/audit-writer.ts';
import type { Database, ScopedDb } from '../postgres/database.ts';
import { barredDestination } from './credential-rows.ts';
import type { VaultKeys } from './vault-keys.ts';

/** Default margin before expiry within which an access token is refreshed, in milliseconds. */
export const defaultRefreshSkewMs = 60_000;

/** Seals an OAuth credential's token material for the row `credentialId`. */
export function sealOAuthSecrets(
  key: Buffer,
  secrets: OAuthSecrets,
  where: { readonly tenantId: string; readonly credentialId: string },
): Buffer {
  return seal(
    key,
    Buffer.from(JSON.stringify(secrets), 'utf8'),
    credentialContext(where.tenantId, where.credentialId),
  );
}

/** Opens what {@link sealOAuthSecrets} sealed. */
export function openOAuthSecrets(
  key: Buffer,
  sealed: Buffer,
  where: { readonly tenantId: string; readonly credentialId: string },
): OAuthSecrets {
  const text = open(key, sealed, credentialContext(where.tenantId, where.credentialId));
  return JSON.parse(text.toString('utf8')) as OAuthSecrets;
}

/** The OAuth credential a refresh is for, and who is calling (for the audit log). */
export interface RefreshTarget {
  readonly tenantId: string;
  /** The run's user: the scope the refresh runs in. */
  readonly userId: string;
  readonly credentialId: string;
  readonly actor: Principal;
}

interface LockedRow {
  id: string;
  user_id: string | null;
  name: string;
  ciphertext: Buffer;
  oauth: OAuthSettings;
  expires_at: Date | null;
  refresh_failure: string | null;
}

type Outcome = { readonly kind: 'done' } | { readonly kind: 'refused'; readonly name: string };

/**
 * Refreshes OAuth credentials so that exactly one refresh request is sent however many calls
 * need it at once: calls in one process share one attempt per credential; across processes
 * the attempt takes the credential's row lock (`select … for update` in the run's user's
 * scope) and re-reads the row, so whoever waited finds the fresh token and sends nothing.
 * The lock is held during the token request (bounded by the token client's deadline): a
 * rotating server accepts each refresh token once. A refused refresh token (`invalid_grant`)
 * marks the credential `reauthorization_required` (committed) before the error is thrown;
 * any other failure changes nothing.
 */
export function createOAuthRefresher(options: {
  readonly database: Database;
  readonly vaultKeys: VaultKeys;
  readonly refresh: OAuthTokenRefresher;
  readonly skewMs: number;
  readonly now: () => number;
}) {
  const { database, vaultKeys } = options;
  const inFlight = new Map<string, Promise<void>>();

  async function clientSecretOf(
    db: ScopedDb,
    tenantId: string,
    credential: { readonly user_id: string | null; readonly oauth: OAuthSettings },
  ): Promise<string | undefined> {
    const settings = credential.oauth;
    if (settings.clientSecretCredential === undefined) return undefined;
    // A user's own credential chose its token URL: the shared secret never goes there (stored
    // before this rule, such a credential is refused here rather than trusted).
    if (credential.user_id !== null)
      throw new CredentialRefreshError(
        'credential_refresh_failed',
        "a user's own credential cannot use the tenant's shared client secret.",
      );
    const found = await sql<{ id: string; ciphertext: Buffer; allowed_hosts: string[] | null }>`
      select id, ciphertext, allowed_hosts from brigade.credentials
       where name = ${settings.clientSecretCredential} and user_id is null and kind <> 'oauth2'`.execute(
      db,
    );
    const row = found.rows[0];
    if (row === undefined)
      throw new CredentialRefreshError(
        'credential_refresh_failed',
        `the tenant has no shared credential named '${settings.clientSecretCredential}' for the client secret.`,
      );
    // The client secret goes to the token URL: a secret pinned to other hosts does not.
    const barred = barredDestination(row.allowed_hosts, new URL(settings.tokenUrl));
    if (barred !== undefined)
      throw new CredentialRefreshError(
        'credential_host_not_allowed',
        `the shared credential '${settings.clientSecretCredential}' may not be sent to ${barred} (not among its allowedHosts).`,
      );
    const key = await vaultKeys.tenantKey(db, tenantId);
    return open(key, row.ciphertext, credentialContext(tenantId, row.id)).toString('utf8');
  }

  async function refreshLocked(db: ScopedDb, target: RefreshTarget): Promise<Outcome> {
    const { tenantId } = target;
    const locked = await sql<LockedRow>`
      select id, user_id, name, ciphertext, oauth, expires_at, refresh_failure
        from brigade.credentials
       where id = ${target.credentialId} and kind = 'oauth2'
         and (user_id = ${target.userId} or user_id is null)
         for update`.execute(db);
    const row = locked.rows[0];
    // Deleted meanwhile, already marked, or refreshed by whoever held the lock before us.
    if (row === undefined) return { kind: 'done' };
    if (row.refresh_failure !== null) return { kind: 'refused', name: row.name };
    if (row.expires_at !== null && row.expires_at.getTime() > options.now() + options.skewMs)
      return { kind: 'done' };
    const where = { tenantId, credentialId: row.id };
    const key = await vaultKeys.keyFor(db, { tenantId, userId: row.user_id });
    const secrets = openOAuthSecrets(key, row.ciphertext, where);
    const scope = row.user_id === null ? 'tenant' : 'user';
    const audit = (record: Omit<AuditRecord, 'targetType' | 'targetId'>) =>
      writeAudit(db, {
        tenantId,
        principal: target.actor,
        record: { ...record, targetType: 'credential', targetId: row.id },
      });
    let grant: Awaited<ReturnType<OAuthTokenRefresher>>;
    try {
      grant = await options.refresh({
        settings: row.oauth,
        refreshToken: secrets.refreshToken,
        clientSecret: secrets.clientSecret ?? (await clientSecretOf(db, tenantId, row)),
      });
    } catch (error) {
      if (
        !(error instanceof CredentialRefreshError) ||
        error.code !== 'credential_reauthorization_required'
      )
        throw error;
      await sql`
        update brigade.credentials
           set refresh_failure = 'reauthorization_required', refresh_failed_at = now()
         where id = ${row.id}`.execute(db);
      await audit({
        action: 'credential.refresh_failed',
        outcome: 'failure',
        data: { name: row.name, scope, reason: 'invalid_grant' },
      });
      return { kind: 'refused', name: row.name };
    }
    const next: OAuthSecrets = {
      accessToken: grant.accessToken,
      refreshToken: grant.refreshToken ?? secrets.refreshToken,
      ...(secrets.clientSecret === undefined ? {} : { clientSecret: secrets.clientSecret }),
    };
    const expiresAt =
      grant.expiresIn === undefined ? null : new Date(options.now() + grant.expiresIn * 1000);
    const { fingerprint, last4 } = describeSecret(next.accessToken);
    await sql`
      update brigade.credentials
         set ciphertext = ${sealOAuthSecrets(key, next, where)}, fingerprint = ${fingerprint},
             last4 = ${last4}, expires_at = ${expiresAt}, refreshed_at = now()
       where id = ${row.id}`.execute(db);
    await audit({
      action: 'credential.refreshed',
      outcome: 'success',
      data: { name: row.name, scope, rotated: grant.refreshToken !== undefined },
    });
    return { kind: 'done' };
  }

  async function attempt(target: RefreshTarget): Promise<void> {
    const outcome = await database.withScope(
      { tenantId: target.tenantId, userId: target.userId, toolExecution: true },
      (db) => refreshLocked(db, target),
    );
    if (outcome.kind === 'refused') throw reauthorizationRequired(outcome.name);
  }

  return {
    /** Whether an access token expiring at `expiresAt` is due for a refresh now. */
    isDue(expiresAt: Date | null): boolean {
      return expiresAt !== null && expiresAt.getTime() <= options.now() + options.skewMs;
    },
    /**
     * Refreshes the credential unless someone already did; resolves once its row holds a
     * usable token. Throws {@link CredentialRefreshError} otherwise.
     */
    refresh(target: RefreshTarget): Promise<void> {
      const key = `${target.tenantId}:${target.credentialId}`;
      let pending = inFlight.get(key);
      if (pending === undefined) {
        pending = attempt(target).finally(() => inFlight.delete(key));
        inFlight.set(key, pending);
      }
      return pending;
    },
  };
}

/** The error of a credential whose owner must authorise again. */
export function reauthorizationRequired(name: string): CredentialRefreshError {
  return new CredentialRefreshError(
    'credential_reauthorization_required',
    `the OAuth credential '${name}' was refused by its token server and must be authorised again by its owner (put it again under /v1/me/credentials).`,
  );
}

/** The OAuth refresher's type. */
export type OAuthRefresher = ReturnType<typeof createOAuthRefresher>;
