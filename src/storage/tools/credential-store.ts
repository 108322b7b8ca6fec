import { randomBytes, randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import type { Principal, UserPrincipal } from '../../domain/identity/principal.ts';
import {
  CredentialRefreshError,
  type OAuthTokenRefresher,
} from '../../domain/tools/oauth-types.ts';
import {
  credentialContext,
  describeSecret,
  type MasterKeys,
  open,
  seal,
  tenantKeyContext,
} from '../../domain/tools/vault-crypto.ts';
import type { KeyProviderV1 } from '../../plugin-api/index.ts';
import { writeAudit } from '../identity/audit-writer.ts';
import { scopeFor } from '../identity/scope-for.ts';
import type { Database } from '../postgres/database.ts';
import { createLocalKeyProvider } from '../vault-key-provider.ts';
import {
  barredDestination,
  type CredentialInput,
  type CredentialMetadata,
  type CredentialRow,
  type Lookup,
  metadataColumns,
  type ResolvedCredential,
  toMetadata,
} from './credential-rows.ts';
import {
  createOAuthRefresher,
  defaultRefreshSkewMs,
  openOAuthSecrets,
  reauthorizationRequired,
  sealOAuthSecrets,
} from './oauth-refresh.ts';
import { createVaultKeys } from './vault-keys.ts';

export {
  type CredentialInput,
  type CredentialKind,
  type CredentialMetadata,
  credentialKinds,
  type OAuthMetadata,
  plainCredentialKinds,
  type ResolvedCredential,
} from './credential-rows.ts';

/**
 * The credentials vault on PostgreSQL: AES-256-GCM envelope encryption (master key → tenant
 * data key → user data key → secret), each layer bound to its row by its AAD. Secrets leave
 * only through {@link CredentialStore.resolveForCall}, which the tool gate calls for the run's
 * own user; every other method returns metadata. Without master keys every method throws.
 */
export function createCredentialStore(options: {
  readonly database: Database;
  /** Master keys this process holds (`BRIGADE_MASTER_KEY`); ignored when `keyProvider` is set. */
  readonly masterKeys?: MasterKeys | undefined;
  /** What wraps tenant data keys: a key-provider plugin, or the local provider over `masterKeys`. */
  readonly keyProvider?: KeyProviderV1 | undefined;
  /** OAuth 2.0 refresh: the token client, the margin before expiry, the clock. */
  readonly oauth?: {
    readonly refresh: OAuthTokenRefresher;
    readonly skewMs?: number;
    readonly now?: () => number;
  };
}) {
  const { database } = options;
  const provider =
    options.keyProvider ??
    (options.masterKeys === undefined ? undefined : createLocalKeyProvider(options.masterKeys));
  const vaultKeys = createVaultKeys(provider);
  const { keys, tenantKey, userKey } = vaultKeys;
  const refresher = createOAuthRefresher({
    database,
    vaultKeys,
    refresh:
      options.oauth?.refresh ??
      (() =>
        Promise.reject(
          new CredentialRefreshError('credential_refresh_failed', 'no OAuth token client.'),
        )),
    skewMs: options.oauth?.skewMs ?? defaultRefreshSkewMs,
    now: options.oauth?.now ?? Date.now,
  });

  function decrypt(key: Buffer, tenantId: string, row: CredentialRow): ResolvedCredential {
    const where = { tenantId, credentialId: row.id };
    const secret =
      row.kind === 'oauth2'
        ? openOAuthSecrets(key, row.ciphertext, where).accessToken
        : open(key, row.ciphertext, credentialContext(tenantId, row.id)).toString('utf8');
    const scope = row.user_id === null ? 'tenant' : 'user';
    return { id: row.id, name: row.name, kind: row.kind, scope, secret };
  }

  return {
    /** Whether the vault can store and use secrets (a master key is configured). */
    get available(): boolean {
      return provider !== undefined;
    },

    /**
     * Stores `secret` under `name`, replacing a credential of that name: the caller's own, or
     * the tenant's shared one when `shared` (the caller must be a tenant admin; RLS checks).
     */
    put(
      principal: UserPrincipal,
      input: CredentialInput & {
        readonly name: string;
        readonly shared: boolean;
        readonly allowedHosts?: readonly string[] | undefined;
      },
    ): Promise<CredentialMetadata> {
      return database.withScope(scopeFor(principal), async (db) => {
        const { tenantId, userId } = principal;
        const key = input.shared
          ? await tenantKey(db, tenantId)
          : await userKey(db, tenantId, userId);
        const ownerId = input.shared ? null : userId;
        const replaced = await sql<{ id: string }>`
          delete from brigade.credentials
           where name = ${input.name}
             and ${input.shared ? sql`user_id is null` : sql`user_id = ${userId}`}
          returning id`.execute(db);
        const id = randomUUID();
        const where = { tenantId, credentialId: id };
        const ciphertext =
          input.kind === 'oauth2'
            ? sealOAuthSecrets(key, input.secrets, where)
            : seal(key, Buffer.from(input.secret, 'utf8'), credentialContext(tenantId, id));
        const { fingerprint, last4 } = describeSecret(
          input.kind === 'oauth2' ? input.secrets.accessToken : input.secret,
        );
        const oauth = input.kind === 'oauth2' ? JSON.stringify(input.oauth) : null;
        const expiresAt = input.kind === 'oauth2' ? input.expiresAt : null;
        const inserted = await sql<CredentialRow>`
          insert into brigade.credentials
            (tenant_id, id, user_id, name, kind, ciphertext, fingerprint, last4, created_by_user_id,
             oauth, expires_at, allowed_hosts)
          values (${tenantId}, ${id}, ${ownerId}, ${input.name}, ${input.kind}, ${ciphertext},
                  ${fingerprint}, ${last4}, ${userId}, ${oauth}::jsonb, ${expiresAt},
                  ${input.allowedHosts === undefined ? null : [...input.allowedHosts]}::text[])
          returning ${metadataColumns}`.execute(db);
        const row = inserted.rows[0];
        if (row === undefined) throw new Error('credential not stored');
        await writeAudit(db, {
          tenantId,
          principal,
          record: {
            action: replaced.rows.length > 0 ? 'credential.replaced' : 'credential.created',
            targetType: 'credential',
            targetId: id,
            outcome: 'success',
            data: { name: input.name, kind: input.kind, scope: input.shared ? 'tenant' : 'user' },
          },
        });
        return toMetadata(row);
      });
    },

    /** The caller's own credentials, or (`shared`) the tenant's shared ones: metadata only. */
    list(principal: UserPrincipal, shared: boolean): Promise<CredentialMetadata[]> {
      return database.withScope(scopeFor(principal), async (db) => {
        const rows = await sql<CredentialRow>`
          select ${metadataColumns} from brigade.credentials
           where ${shared ? sql`user_id is null` : sql`user_id = ${principal.userId}`}
           order by name`.execute(db);
        return rows.rows.map(toMetadata);
      });
    },

    /** Deletes one credential the caller may delete: its name; undefined when none (or not visible). */
    delete(
      principal: UserPrincipal,
      credentialId: string,
      shared: boolean,
    ): Promise<string | undefined> {
      return database.withScope(scopeFor(principal), async (db) => {
        const deleted = await sql<{ name: string }>`
          delete from brigade.credentials
           where id = ${credentialId}
             and ${shared ? sql`user_id is null` : sql`user_id = ${principal.userId}`}
          returning name`.execute(db);
        const row = deleted.rows[0];
        if (row === undefined) return undefined;
        await writeAudit(db, {
          tenantId: principal.tenantId,
          principal,
          record: {
            action: 'credential.deleted',
            targetType: 'credential',
            targetId: credentialId,
            outcome: 'success',
            data: { name: row.name, scope: shared ? 'tenant' : 'user' },
          },
        });
        return row.name;
      });
    },

    /**
     * Decrypts the credential `name` for a tool call of `userId`: the user's own first, then the
     * tenant's shared one. Nobody else's: the scope is the run's user, and RLS hides every other
     * user's rows. Records a `credential.used` audit event in the same transaction.
     */
    async resolveForCall(options: {
      readonly tenantId: string;
      readonly userId: string;
      readonly actor: Principal;
      readonly name: string;
      readonly toolName: string;
      readonly runId: string;
      /** Where the secret will be sent; undefined for a local (stdio) process. */
      readonly destination: URL | undefined;
    }): Promise<ResolvedCredential | undefined> {
      const { tenantId, userId } = options;
      // An OAuth credential due for a refresh is refreshed (once, under its row lock) and read
      // again; the second read uses the token it finds.
      for (const pass of [0, 1]) {
        const lookup = await database.withScope(
          { tenantId, userId, toolExecution: true },
          async (db): Promise<Lookup> => {
            const rows = await sql<CredentialRow>`
              select ${metadataColumns}, ciphertext from brigade.credentials
               where name = ${options.name} and (user_id = ${userId} or user_id is null)
               order by user_id nulls last
               limit 1`.execute(db);
            const row = rows.rows[0];
            if (row === undefined) return { kind: 'none' };
            const used = (outcome: 'success' | 'denied', data: Record<string, unknown>) =>
              writeAudit(db, {
                tenantId,
                principal: options.actor,
                record: {
                  action: 'credential.used',
                  targetType: 'credential',
                  targetId: row.id,
                  outcome,
                  data: { name: row.name, tool: options.toolName, runId: options.runId, ...data },
                },
              });
            const barred = barredDestination(row.allowed_hosts, options.destination);
            if (barred !== undefined) {
              await used('denied', { barred });
              return { kind: 'barred', name: row.name, destination: barred };
            }
            if (row.kind === 'oauth2' && row.refresh_failure !== null)
              return { kind: 'refused', name: row.name };
            if (row.kind === 'oauth2' && pass === 0 && refresher.isDue(row.expires_at))
              return { kind: 'due', id: row.id, name: row.name };
            const credential =
              row.user_id === null
                ? decrypt(await tenantKey(db, tenantId), tenantId, row)
                : decrypt(await userKey(db, tenantId, userId), tenantId, row);
            await used('success', { scope: credential.scope });
            return { kind: 'resolved', credential };
          },
        );
        if (lookup.kind === 'none') return undefined;
        if (lookup.kind === 'resolved') return lookup.credential;
        if (lookup.kind === 'refused') throw reauthorizationRequired(lookup.name);
        if (lookup.kind === 'barred')
          throw new CredentialRefreshError(
            'credential_host_not_allowed',
            `the credential '${lookup.name}' may not be sent to ${lookup.destination} (not among its allowedHosts).`,
          );
        await refresher
          .refresh({ tenantId, userId, credentialId: lookup.id, actor: options.actor })
          .catch((error: unknown) => {
            if (!(error instanceof CredentialRefreshError)) throw error;
            if (error.code === 'credential_reauthorization_required')
              throw reauthorizationRequired(lookup.name);
            throw new CredentialRefreshError(
              error.code,
              `refreshing the OAuth credential '${lookup.name}' failed: ${error.detail}`,
            );
          });
      }
      throw new Error('unreachable: the second pass always resolves');
    },

    /**
     * Re-wraps every tenant data key not wrapped by the current master key (operator scope).
     * Runs while servers keep serving: each process accepts both keys during the rotation.
     */
    async rotateMaster(): Promise<{ rewrapped: number; total: number; keyId: string }> {
      const master = keys();
      // The id the provider wraps with now: every key wrapped by another one is re-wrapped.
      const { keyId: currentId } = await master.wrapKey({
        plaintext: new Uint8Array(randomBytes(32)),
        context: 'brigade-key-provider-check',
      });
      return database.withScope({ operator: true }, async (db) => {
        const rows = await sql<{ tenant_id: string; wrapped_key: Buffer; master_key_id: string }>`
          select tenant_id, wrapped_key, master_key_id from brigade.vault_tenant_keys
           for update`.execute(db);
        let rewrapped = 0;
        for (const row of rows.rows) {
          if (row.master_key_id === currentId) continue;
          const context = tenantKeyContext(row.tenant_id);
          const plaintext = await master.unwrapKey({
            wrapped: new Uint8Array(row.wrapped_key),
            keyId: row.master_key_id,
            context,
          });
          const wrapped = await master.wrapKey({ plaintext, context });
          await sql`
            update brigade.vault_tenant_keys
               set wrapped_key = ${Buffer.from(wrapped.wrapped)},
                   master_key_id = ${wrapped.keyId}, rewrapped_at = now()
             where tenant_id = ${row.tenant_id}`.execute(db);
          rewrapped += 1;
        }
        return { rewrapped, total: rows.rows.length, keyId: currentId };
      });
    },
  };
}

/** The credential store's type. */
export type CredentialStore = ReturnType<typeof createCredentialStore>;
