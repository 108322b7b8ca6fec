import { sql } from 'kysely';
import {
  generateDataKey,
  open,
  seal,
  tenantKeyContext,
  userKeyContext,
} from '../../domain/tools/vault-crypto.ts';
import type { KeyProviderV1 } from '../../plugin-api/index.ts';
import type { ScopedDb } from '../postgres/database.ts';

/** How long an unwrapped tenant key is kept in memory, and how many at most. */
const tenantKeyCacheMs = 5 * 60_000;
const tenantKeyCacheSize = 1_000;

/**
 * The vault's data keys inside a scoped transaction: the tenant key (wrapped and unwrapped by
 * the key provider: the master key from the environment or a plugin) and a user's key
 * (wrapped by the tenant key), each created on first use. Unwrapped tenant keys are cached for
 * five minutes per process (keyed by the wrapped bytes, so a re-wrapped or deleted key is not
 * served) so a KMS is not asked on every tool call. Without a provider every method throws.
 */
export function createVaultKeys(provider: KeyProviderV1 | undefined) {
  const cache = new Map<string, { key: Buffer; expires: number }>();

  function keys(): KeyProviderV1 {
    if (provider === undefined)
      throw new Error(
        'the credentials vault has no master key (set BRIGADE_MASTER_KEY or vault.keyProvider)',
      );
    return provider;
  }

  async function unwrapTenantKey(row: {
    tenantId: string;
    wrapped: Buffer;
    keyId: string;
  }): Promise<Buffer> {
    const cacheKey = `${row.tenantId}:${row.keyId}:${row.wrapped.toString('base64')}`;
    const hit = cache.get(cacheKey);
    if (hit !== undefined && hit.expires > Date.now()) return hit.key;
    const key = Buffer.from(
      await keys().unwrapKey({
        wrapped: new Uint8Array(row.wrapped),
        keyId: row.keyId,
        context: tenantKeyContext(row.tenantId),
      }),
    );
    if (key.length !== 32) throw new Error('the key provider returned a data key of a wrong size');
    cache.delete(cacheKey);
    cache.set(cacheKey, { key, expires: Date.now() + tenantKeyCacheMs });
    if (cache.size > tenantKeyCacheSize) cache.delete(cache.keys().next().value ?? '');
    return key;
  }

  async function tenantKey(db: ScopedDb, tenantId: string): Promise<Buffer> {
    const master = keys();
    const read = () =>
      sql<{ wrapped_key: Buffer; master_key_id: string }>`
        select wrapped_key, master_key_id from brigade.vault_tenant_keys
         where tenant_id = ${tenantId}`.execute(db);
    let row = (await read()).rows[0];
    if (row === undefined) {
      const wrapped = await master.wrapKey({
        plaintext: new Uint8Array(generateDataKey()),
        context: tenantKeyContext(tenantId),
      });
      await sql`
        insert into brigade.vault_tenant_keys (tenant_id, wrapped_key, master_key_id)
        values (${tenantId}, ${Buffer.from(wrapped.wrapped)}, ${wrapped.keyId})
        on conflict (tenant_id) do nothing`.execute(db);
      row = (await read()).rows[0];
      if (row === undefined) throw new Error('tenant data key not visible in this scope');
    }
    return unwrapTenantKey({ tenantId, wrapped: row.wrapped_key, keyId: row.master_key_id });
  }

  async function userKey(db: ScopedDb, tenantId: string, userId: string): Promise<Buffer> {
    const tenant = await tenantKey(db, tenantId);
    const read = () =>
      sql<{ wrapped_key: Buffer }>`
        select wrapped_key from brigade.vault_user_keys
         where tenant_id = ${tenantId} and user_id = ${userId}`.execute(db);
    let row = (await read()).rows[0];
    if (row === undefined) {
      const wrapped = seal(tenant, generateDataKey(), userKeyContext(tenantId, userId));
      await sql`
        insert into brigade.vault_user_keys (tenant_id, user_id, wrapped_key)
        values (${tenantId}, ${userId}, ${wrapped})
        on conflict do nothing`.execute(db);
      row = (await read()).rows[0];
      if (row === undefined) throw new Error('user data key not visible in this scope');
    }
    return open(tenant, row.wrapped_key, userKeyContext(tenantId, userId));
  }

  return {
    keys,
    tenantKey,
    userKey,
    /** The key of a credential row: the owner's user key, or the tenant key when shared. */
    keyFor(db: ScopedDb, row: { readonly tenantId: string; readonly userId: string | null }) {
      return row.userId === null
        ? tenantKey(db, row.tenantId)
        : userKey(db, row.tenantId, row.userId);
    },
  };
}

/** The vault keys' type. */
export type VaultKeys = ReturnType<typeof createVaultKeys>;
