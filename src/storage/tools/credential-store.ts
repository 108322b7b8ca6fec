import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import type { Principal, UserPrincipal } from '../../domain/identity/principal.ts';
import {
  credentialContext,
  describeSecret,
  generateDataKey,
  type MasterKeys,
  masterKeyFor,
  open,
  seal,
  tenantKeyContext,
  userKeyContext,
} from '../../domain/tools/vault-crypto.ts';
import { writeAudit } from '../identity/audit-writer.ts';
import { scopeFor } from '../identity/scope-for.ts';
import type { Database, ScopedDb } from '../postgres/database.ts';

/** Kinds of secret the vault keeps; the kind says how a tool presents it. */
export const credentialKinds = ['api_key', 'bearer_token', 'basic'] as const;

/** A kind of credential. */
export type CredentialKind = (typeof credentialKinds)[number];

/** What a listing shows of a credential: never the secret. */
export interface CredentialMetadata {
  readonly id: string;
  readonly name: string;
  readonly kind: CredentialKind;
  /** `user` for the caller's own, `tenant` for a tenant-shared one. */
  readonly scope: 'user' | 'tenant';
  readonly fingerprint: string;
  readonly last4: string;
  readonly createdAt: Date;
}

/** A secret decrypted for one tool call, with the id to audit its use. */
export interface ResolvedCredential {
  readonly id: string;
  readonly name: string;
  readonly kind: CredentialKind;
  readonly scope: 'user' | 'tenant';
  readonly secret: string;
}

interface CredentialRow {
  id: string;
  user_id: string | null;
  name: string;
  kind: CredentialKind;
  ciphertext: Buffer;
  fingerprint: string;
  last4: string;
  created_at: Date;
}

function toMetadata(row: CredentialRow): CredentialMetadata {
  return {
    id: row.id,
    name: row.name,
    kind: row.kind,
    scope: row.user_id === null ? 'tenant' : 'user',
    fingerprint: row.fingerprint,
    last4: row.last4,
    createdAt: row.created_at,
  };
}

const metadataColumns = sql.raw('id, user_id, name, kind, fingerprint, last4, created_at');

/**
 * The credentials vault on PostgreSQL: AES-256-GCM envelope encryption (master key → tenant
 * data key → user data key → secret), each layer bound to its row by its AAD. Secrets leave
 * only through {@link CredentialStore.resolveForCall}, which the tool gate calls for the run's
 * own user; every other method returns metadata. Without master keys every method throws.
 */
export function createCredentialStore(options: {
  readonly database: Database;
  readonly masterKeys: MasterKeys | undefined;
}) {
  const { database } = options;

  function keys(): MasterKeys {
    if (options.masterKeys === undefined)
      throw new Error('the credentials vault has no master key (set BRIGADE_MASTER_KEY)');
    return options.masterKeys;
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

  function decrypt(key: Buffer, tenantId: string, row: CredentialRow): ResolvedCredential {
    const secret = open(key, row.ciphertext, credentialContext(tenantId, row.id)).toString('utf8');
    const scope = row.user_id === null ? 'tenant' : 'user';
    return { id: row.id, name: row.name, kind: row.kind, scope, secret };
  }

  return {
    /** Whether the vault can store and use secrets (a master key is configured). */
    get available(): boolean {
      return options.masterKeys !== undefined;
    },

    /**
     * Stores `secret` under `name`, replacing a credential of that name: the caller's own, or
     * the tenant's shared one when `shared` (the caller must be a tenant admin; RLS checks).
     */
    put(
      principal: UserPrincipal,
      input: {
        readonly name: string;
        readonly kind: CredentialKind;
        readonly secret: string;
        readonly shared: boolean;
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
        const ciphertext = seal(
          key,
          Buffer.from(input.secret, 'utf8'),
          credentialContext(tenantId, id),
        );
        const { fingerprint, last4 } = describeSecret(input.secret);
        const inserted = await sql<CredentialRow>`
          insert into brigade.credentials
            (tenant_id, id, user_id, name, kind, ciphertext, fingerprint, last4, created_by_user_id)
          values (${tenantId}, ${id}, ${ownerId}, ${input.name}, ${input.kind}, ${ciphertext},
                  ${fingerprint}, ${last4}, ${userId})
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

    /** Deletes one credential the caller may delete; false when none (or not visible). */
    delete(principal: UserPrincipal, credentialId: string, shared: boolean): Promise<boolean> {
      return database.withScope(scopeFor(principal), async (db) => {
        const deleted = await sql<{ name: string }>`
          delete from brigade.credentials
           where id = ${credentialId}
             and ${shared ? sql`user_id is null` : sql`user_id = ${principal.userId}`}
          returning name`.execute(db);
        const row = deleted.rows[0];
        if (row === undefined) return false;
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
        return true;
      });
    },

    /**
     * Decrypts the credential `name` for a tool call of `userId`: the user's own first, then the
     * tenant's shared one. Nobody else's: the scope is the run's user, and RLS hides every other
     * user's rows. Records a `credential.used` audit event in the same transaction.
     */
    resolveForCall(options: {
      readonly tenantId: string;
      readonly userId: string;
      readonly actor: Principal;
      readonly name: string;
      readonly toolName: string;
      readonly runId: string;
    }): Promise<ResolvedCredential | undefined> {
      const { tenantId, userId, name } = options;
      return database.withScope({ tenantId, userId, toolExecution: true }, async (db) => {
        const rows = await sql<CredentialRow>`
          select id, user_id, name, kind, ciphertext, fingerprint, last4, created_at
            from brigade.credentials
           where name = ${name} and (user_id = ${userId} or user_id is null)
           order by user_id nulls last
           limit 1`.execute(db);
        const row = rows.rows[0];
        if (row === undefined) return undefined;
        const resolved =
          row.user_id === null
            ? decrypt(await tenantKey(db, tenantId), tenantId, row)
            : decrypt(await userKey(db, tenantId, userId), tenantId, row);
        await writeAudit(db, {
          tenantId,
          principal: options.actor,
          record: {
            action: 'credential.used',
            targetType: 'credential',
            targetId: row.id,
            outcome: 'success',
            data: {
              name: row.name,
              scope: resolved.scope,
              tool: options.toolName,
              runId: options.runId,
            },
          },
        });
        return resolved;
      });
    },

    /**
     * Re-wraps every tenant data key not wrapped by the current master key (operator scope).
     * Runs while servers keep serving: each process accepts both keys during the rotation.
     */
    rotateMaster(): Promise<{ rewrapped: number; total: number }> {
      const master = keys();
      return database.withScope({ operator: true }, async (db) => {
        const rows = await sql<{ tenant_id: string; wrapped_key: Buffer; master_key_id: string }>`
          select tenant_id, wrapped_key, master_key_id from brigade.vault_tenant_keys
           for update`.execute(db);
        let rewrapped = 0;
        for (const row of rows.rows) {
          if (row.master_key_id === master.current.id) continue;
          const context = tenantKeyContext(row.tenant_id);
          const plain = open(masterKeyFor(master, row.master_key_id).key, row.wrapped_key, context);
          await sql`
            update brigade.vault_tenant_keys
               set wrapped_key = ${seal(master.current.key, plain, context)},
                   master_key_id = ${master.current.id}, rewrapped_at = now()
             where tenant_id = ${row.tenant_id}`.execute(db);
          rewrapped += 1;
        }
        return { rewrapped, total: rows.rows.length };
      });
    },
  };
}

/** The credential store's type. */
export type CredentialStore = ReturnType<typeof createCredentialStore>;
