import type { Selectable } from 'kysely';
import { sql } from 'kysely';
import { ConflictError } from '../../domain/errors.ts';
import type { IdentityStore, NewApiKey } from '../../domain/identity/identity-ports.ts';
import type { Role } from '../../domain/identity/permissions.ts';
import type { Principal } from '../../domain/identity/principal.ts';
import type { Database, ScopedDb } from '../postgres/database.ts';
import type { ApiKeysTable, UsersTable } from '../postgres/database-schema.ts';
import { createGroupCalls } from '../postgres/group-calls.ts';
import { assertCapacity, type TenantCapacity } from '../postgres/tenant-capacity.ts';
import { writeAudit } from './audit-writer.ts';
import { toApiKey, toOidcProvider, toUser } from './rows.ts';
import { scopeFor, systemScope } from './scope-for.ts';
import { toPage } from './tenant-user-store.ts';

/** The prepared call of brigade.key_identity (migration 0014). */
const keyIdentityStatement = {
  name: 'brigade_key_identity',
  text: 'select api_key, member from brigade.key_identity($1)',
};
/** Several lookups in one call (migration 0020), for those that queue up under load. */
const keyIdentitiesStatement = {
  name: 'brigade_key_identities',
  text: 'select ord, api_key, member from brigade.key_identities($1) order by ord',
};

interface IdentityRow {
  readonly api_key: Record<string, unknown>;
  readonly member: Record<string, unknown>;
}

/** A timestamp as `to_jsonb` renders it (an ISO 8601 string), or null. */
function jsonDate(value: unknown): Date | null {
  return typeof value === 'string' ? new Date(value) : null;
}

type KeyStore = Omit<
  IdentityStore,
  | 'createTenant'
  | 'listTenants'
  | 'getTenant'
  | 'updateTenant'
  | 'createUser'
  | 'listUsers'
  | 'getUser'
  | 'updateUser'
  | 'findUserBySubject'
  | 'provisionUser'
  | 'tenantStatus'
>;

async function insertKey(
  db: ScopedDb,
  { tenantId, input, principal }: { tenantId: string; input: NewApiKey; principal: Principal },
) {
  const row = await db
    .insertInto('brigade.api_keys')
    .values({
      tenant_id: tenantId,
      user_id: input.userId,
      name: input.name,
      prefix: input.prefix,
      key_hash: input.keyHash,
      scopes: input.scopes === null ? null : [...input.scopes],
      expires_at: input.expiresAt,
      rotated_from_id: input.rotatedFromId,
      created_by_user_id: principal.kind === 'user' ? principal.userId : null,
      created_at: new Date(),
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  return toApiKey(row);
}

/** The API key, OIDC provider, operator key and audit half of the identity store. */
export function createKeyStore(database: Database, capacity?: TenantCapacity): KeyStore {
  // Lookups that arrive while one is in flight go out together, after it (one lane: the
  // tenant is what the lookup finds out).
  const lookups = createGroupCalls<string, IdentityRow | undefined>({
    maxBatch: 64,
    compare: () => 0,
    async one(hash) {
      const [row] = await database.callPrepared(keyIdentityStatement, [hash]);
      return row as IdentityRow | undefined;
    },
    async many(hashes) {
      const rows = (await database.callPrepared(keyIdentitiesStatement, [
        hashes,
      ])) as unknown as (IdentityRow & { ord: number })[];
      const byPosition = new Map(rows.map((row) => [row.ord, row]));
      return hashes.map((_, index) => byPosition.get(index + 1));
    },
  });
  return {
    async createApiKey(principal, tenantId, input) {
      return database.withScope(scopeFor(principal, tenantId), async (db) => {
        if (capacity !== undefined)
          await assertCapacity(db, {
            resource: 'apiKeysPerUser',
            tenantId,
            userId: input.userId,
            max: capacity.apiKeysPerUser,
          });
        const key = await insertKey(db, { tenantId, input, principal });
        await writeAudit(db, {
          tenantId,
          principal,
          record: {
            action: 'api_key.created',
            targetType: 'api_key',
            targetId: key.id,
            outcome: 'success',
            data: {
              userId: key.userId,
              name: key.name,
              scopes: key.scopes,
              expiresAt: key.expiresAt,
            },
          },
        });
        return key;
      });
    },
    async listApiKeys(principal, { tenantId, userId }, page) {
      return database.withScope(scopeFor(principal, tenantId), async (db) => {
        let query = db
          .selectFrom('brigade.api_keys')
          .selectAll()
          .where('tenant_id', '=', tenantId)
          .where('user_id', '=', userId)
          .orderBy('id')
          .limit(page.limit + 1);
        if (page.after !== undefined) query = query.where('id', '>', page.after);
        return toPage((await query.execute()).map(toApiKey), page.limit);
      });
    },
    async getApiKey(principal, { tenantId, userId, keyId }) {
      return database.withScope(scopeFor(principal, tenantId), async (db) => {
        const row = await db
          .selectFrom('brigade.api_keys')
          .selectAll()
          .where('tenant_id', '=', tenantId)
          .where('user_id', '=', userId)
          .where('id', '=', keyId)
          .executeTakeFirst();
        return row === undefined ? undefined : toApiKey(row);
      });
    },
    async revokeApiKey({ principal, tenantId, userId, keyId, revokeAt, successor }) {
      return database.withScope(scopeFor(principal, tenantId), async (db) => {
        // Rotations of one key serialise on its row: only the first makes a successor (the
        // service's earlier check cannot see a rotation committing meanwhile).
        if (successor !== undefined) {
          const current = await db
            .selectFrom('brigade.api_keys')
            .select('revoked_at')
            .where('tenant_id', '=', tenantId)
            .where('user_id', '=', userId)
            .where('id', '=', keyId)
            .forUpdate()
            .executeTakeFirst();
          if (current !== undefined && current.revoked_at !== null)
            throw new ConflictError(
              'This key was already rotated or revoked; rotate its successor, or create a new key.',
            );
          // The successor is one more working key, unless the key it replaces stops at once.
          if (capacity !== undefined && current !== undefined)
            await assertCapacity(db, {
              resource: 'apiKeysPerUser',
              tenantId,
              userId,
              max: capacity.apiKeysPerUser,
              ...(revokeAt.getTime() <= Date.now() ? { exceptId: keyId } : {}),
            });
        }
        const row = await db
          .updateTable('brigade.api_keys')
          .set({ revoked_at: sql<Date>`least(coalesce(revoked_at, ${revokeAt}), ${revokeAt})` })
          .where('tenant_id', '=', tenantId)
          .where('user_id', '=', userId)
          .where('id', '=', keyId)
          .returningAll()
          .executeTakeFirst();
        if (row === undefined) return undefined;
        const created =
          successor === undefined
            ? undefined
            : await insertKey(db, { tenantId, input: successor, principal });
        await writeAudit(db, {
          tenantId,
          principal,
          record: {
            action: created === undefined ? 'api_key.revoked' : 'api_key.rotated',
            targetType: 'api_key',
            targetId: keyId,
            outcome: 'success',
            data: { userId, revokeAt: row.revoked_at, successorId: created?.id ?? null },
          },
        });
        return { revoked: toApiKey(row), successor: created };
      });
    },
    async findKeyIdentity(keyHash) {
      // One prepared call on every authenticated request: brigade.key_identity (migration 0014)
      // reads the key row (visible only to whoever knows its hash), and under its tenant's
      // scope its user, role and tenant status; under load, several in one call (0020).
      const row = await lookups.call('keys', keyHash.toString('hex'));
      if (row === undefined) return undefined;
      const keyRow = row['api_key'] as Record<string, unknown>;
      const userRow = row['member'] as Record<string, unknown>;
      const key = toApiKey({
        ...(keyRow as unknown as Selectable<ApiKeysTable>),
        expires_at: jsonDate(keyRow['expires_at']),
        last_used_at: jsonDate(keyRow['last_used_at']),
        revoked_at: jsonDate(keyRow['revoked_at']),
        created_at: jsonDate(keyRow['created_at']) as Date,
      });
      const user = toUser({
        ...(userRow as unknown as Selectable<UsersTable> & { role: Role }),
        created_at: jsonDate(userRow['created_at']) as Date,
        updated_at: jsonDate(userRow['updated_at']) as Date,
      });
      return { key, user, tenantStatus: userRow['tenant_status'] as 'active' | 'suspended' };
    },
    async touchApiKey(tenantId, keyId, at) {
      await database.withScope(systemScope(tenantId), async (db) => {
        await db
          .updateTable('brigade.api_keys')
          .set({ last_used_at: at })
          .where('tenant_id', '=', tenantId)
          .where('id', '=', keyId)
          .execute();
      });
    },
    async isOperatorKeyHash(keyHash) {
      return database.withScope({ authKeyHash: keyHash.toString('hex') }, async (db) => {
        const row = await db
          .selectFrom('brigade.operator_keys')
          .select('id')
          .where('key_hash', '=', keyHash)
          .executeTakeFirst();
        return row !== undefined;
      });
    },
    async findOidcProviders(issuer) {
      return database.withScope({ authIssuer: issuer }, async (db) => {
        const rows = await db
          .selectFrom('brigade.oidc_providers')
          .selectAll()
          .where('issuer', '=', issuer)
          .execute();
        return rows.map(toOidcProvider);
      });
    },
    async createOidcProvider(principal, tenantId, input) {
      return database.withScope(scopeFor(principal, tenantId), async (db) => {
        const now = new Date();
        const row = await db
          .insertInto('brigade.oidc_providers')
          .values({
            tenant_id: tenantId,
            name: input.name,
            issuer: input.issuer,
            audience: input.audience,
            jwks_url: input.jwksUrl,
            public_keys_pem: input.publicKeysPem === null ? null : [...input.publicKeysPem],
            algorithms: [...input.algorithms],
            subject_claim: input.subjectClaim,
            email_claim: input.emailClaim,
            name_claim: input.nameClaim,
            role_claim: input.roleClaim,
            role_mapping: JSON.stringify(input.roleMapping),
            default_role: input.defaultRole,
            jit_provisioning: input.jitProvisioning,
            enabled: input.enabled,
            created_at: now,
            updated_at: now,
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        await writeAudit(db, {
          tenantId,
          principal,
          record: {
            action: 'oidc_provider.created',
            targetType: 'oidc_provider',
            targetId: row.id,
            outcome: 'success',
            data: { issuer: row.issuer },
          },
        });
        return toOidcProvider(row);
      });
    },
    async listOidcProviders(principal, tenantId) {
      return database.withScope(scopeFor(principal, tenantId), async (db) => {
        const rows = await db
          .selectFrom('brigade.oidc_providers')
          .selectAll()
          .where('tenant_id', '=', tenantId)
          .orderBy('id')
          .execute();
        return rows.map(toOidcProvider);
      });
    },
    async deleteOidcProvider(principal, tenantId, providerId) {
      return database.withScope(scopeFor(principal, tenantId), async (db) => {
        const deleted = await db
          .deleteFrom('brigade.oidc_providers')
          .where('tenant_id', '=', tenantId)
          .where('id', '=', providerId)
          .executeTakeFirst();
        if (deleted.numDeletedRows === 0n) return false;
        await writeAudit(db, {
          tenantId,
          principal,
          record: {
            action: 'oidc_provider.deleted',
            targetType: 'oidc_provider',
            targetId: providerId,
            outcome: 'success',
          },
        });
        return true;
      });
    },
    async recordAudit(tenantId, principal, audit) {
      await database.withScope(systemScope(tenantId), (db) =>
        writeAudit(db, { tenantId, principal, record: audit }),
      );
    },
  };
}
