import { sql } from 'kysely';
import {
  generateDataKey,
  type MasterKeys,
  masterKeyFor,
  open,
  seal,
  tenantKeyContext,
  userKeyContext,
} from '../../domain/tools/vault-crypto.ts';
import type { ScopedDb } from '../postgres/database.ts';

/**
 * The vault's data keys inside a scoped transaction: the tenant key (unwrapped with the master
 * key that wrapped it) and a user's key (unwrapped with the tenant key), each created on first
 * use. Without master keys every method throws.
 */
export function createVaultKeys(masterKeys: MasterKeys | undefined) {
  function keys(): MasterKeys {
    if (masterKeys === undefined)
      throw new Error('the credentials vault has no master key (set BRIGADE_MASTER_KEY)');
    return masterKeys;
  }

  async function tenantKey(db: ScopedDb, tenantId: string): Promise<Buffer> {
    const master = keys();
    const read = () =>
      sql<{ wrapped_key: Buffer; master_key_id: string }>`
        select wrapped_key, master_key_id from brigade.vault_tenant_keys
         where tenant_id = ${tenantId}`.execute(db);
    let row = (await read()).rows[0];
    if (row === undefined) {
      const wrapped = seal(master.current.key, generateDataKey(), tenantKeyContext(tenantId));
      await sql`
        insert into brigade.vault_tenant_keys (tenant_id, wrapped_key, master_key_id)
        values (${tenantId}, ${wrapped}, ${master.current.id})
        on conflict (tenant_id) do nothing`.execute(db);
      row = (await read()).rows[0];
      if (row === undefined) throw new Error('tenant data key not visible in this scope');
    }
    return open(
      masterKeyFor(master, row.master_key_id).key,
      row.wrapped_key,
      tenantKeyContext(tenantId),
    );
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
