import { type Kysely, sql } from 'kysely';
import { ValidationError } from '../../domain/errors.ts';
import type {
  IdentityStore,
  NewUser,
  Page,
  PageRequest,
} from '../../domain/identity/identity-ports.ts';
import type { User } from '../../domain/identity/identity-types.ts';
import type { Principal } from '../../domain/identity/principal.ts';
import { retryingConflicts } from '../postgres/conflict-retry.ts';
import type { Database, ScopedDb } from '../postgres/database.ts';
import type { DatabaseSchema } from '../postgres/database-schema.ts';
import { isUuid } from '../postgres/scope.ts';
import { auditedChanges, writeAudit } from './audit-writer.ts';
import { toTenant, toUser } from './rows.ts';
import { scopeFor, systemScope } from './scope-for.ts';

/** Turns rows fetched with `limit + 1` into a page and its next cursor. */
export function toPage<T extends { readonly id: string }>(
  rows: readonly T[],
  limit: number,
): Page<T> {
  const data = rows.slice(0, limit);
  const last = data[data.length - 1];
  return { data, nextCursor: rows.length > limit && last !== undefined ? last.id : null };
}

function selectUsers(db: Kysely<DatabaseSchema>) {
  return db
    .selectFrom('brigade.users as u')
    .innerJoin('brigade.memberships as m', (join) =>
      join.onRef('m.tenant_id', '=', 'u.tenant_id').onRef('m.user_id', '=', 'u.id'),
    )
    .selectAll('u')
    .select('m.role');
}

/**
 * Refuses (422) a time zone PostgreSQL does not know: usage days, budget periods and quotas are
 * computed in the database (`at time zone`), whose list is not Node's (`US/Pacific-New` passes
 * `Intl` and would make every report and model call of the tenant fail).
 */
async function assertKnownTimeZone(db: ScopedDb, zone: string): Promise<void> {
  const { rows } = await sql<{ known: boolean }>`
    select exists (select 1 from pg_timezone_names where name = ${zone}) as known`.execute(db);
  if (rows[0]?.known !== true)
    throw new ValidationError([
      { path: 'body.timeZone', message: `'${zone}' is not a time zone this database knows` },
    ]);
}

/**
 * Waits for the run creations of a tenant or user in flight, and holds new ones until this
 * transaction ends: its status change and the runs' access check (migration 0034) serialise.
 */
export async function lockAccess(db: ScopedDb, kind: 'tenant' | 'user', id: string): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtext('brigade.access'), brigade.access_lock_key(${kind}, ${id}::uuid))`.execute(
    db,
  );
}

/**
 * Counts the tenant's active owners (a disabled owner cannot sign in, so it does not keep a
 * tenant owned). With `lock`, locks the owners' membership and user rows too, so concurrent
 * demotions, disablings, re-enablings and erasures of owners serialise: owners' rows only (a
 * tenant of many members is not locked whole), and not FOR UPDATE, which would also hold up
 * every insert whose foreign key checks one of those users (a new thread, key or consent).
 */
export async function activeOwnerCount(
  db: ScopedDb,
  tenantId: string,
  options: { readonly lock: boolean },
): Promise<number> {
  const owners = db
    .selectFrom('brigade.memberships as m')
    .innerJoin('brigade.users as u', (join) =>
      join.onRef('u.tenant_id', '=', 'm.tenant_id').onRef('u.id', '=', 'm.user_id'),
    )
    .select('u.status')
    .where('m.tenant_id', '=', tenantId)
    .where('m.role', '=', 'owner');
  const rows = await (options.lock ? owners.forNoKeyUpdate() : owners).execute();
  return rows.filter((owner) => owner.status === 'active').length;
}

/** Loads one user with its role inside an open transaction. */
export async function loadUser(
  db: ScopedDb,
  tenantId: string,
  userId: string,
): Promise<User | undefined> {
  const row = await selectUsers(db)
    .where('u.tenant_id', '=', tenantId)
    .where('u.id', '=', userId)
    .executeTakeFirst();
  return row === undefined ? undefined : toUser(row);
}

async function insertUser(db: ScopedDb, tenantId: string, input: NewUser): Promise<User> {
  const now = new Date();
  const row = await db
    .insertInto('brigade.users')
    .values({
      tenant_id: tenantId,
      email: input.email,
      display_name: input.displayName,
      external_issuer: input.externalIssuer ?? null,
      external_subject: input.externalSubject ?? null,
      metadata: JSON.stringify(input.metadata),
      created_at: now,
      updated_at: now,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  await db
    .insertInto('brigade.memberships')
    .values({
      tenant_id: tenantId,
      user_id: row.id,
      role: input.role,
      created_at: now,
      updated_at: now,
    })
    .execute();
  return toUser({ ...row, role: input.role });
}

type TenantUserStore = Pick<
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

/** The tenant and user half of the identity store. */
export function createTenantUserStore(database: Database): TenantUserStore {
  const inTenant = <T>(
    principal: Principal,
    tenantId: string,
    work: (db: ScopedDb) => Promise<T>,
  ) => database.withScope(scopeFor(principal, tenantId), work);
  return {
    async createTenant(principal, input) {
      return database.withScope(scopeFor(principal), async (db) => {
        await assertKnownTimeZone(db, input.timeZone);
        const now = new Date();
        const row = await db
          .insertInto('brigade.tenants')
          .values({
            slug: input.slug,
            name: input.name,
            time_zone: input.timeZone,
            metadata: JSON.stringify(input.metadata),
            created_at: now,
            updated_at: now,
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        await writeAudit(db, {
          tenantId: row.id,
          principal,
          record: {
            action: 'tenant.created',
            targetType: 'tenant',
            targetId: row.id,
            outcome: 'success',
            data: { slug: row.slug },
          },
        });
        return toTenant(row);
      });
    },
    async listTenants(principal, page) {
      return database.withScope(scopeFor(principal), async (db) => {
        let query = db
          .selectFrom('brigade.tenants')
          .selectAll()
          .orderBy('id')
          .limit(page.limit + 1);
        if (page.after !== undefined) query = query.where('id', '>', page.after);
        return toPage((await query.execute()).map(toTenant), page.limit);
      });
    },
    async getTenant(principal, tenantId) {
      if (!isUuid(tenantId)) return undefined;
      return database.withScope(scopeFor(principal, tenantId), async (db) => {
        const row = await db
          .selectFrom('brigade.tenants')
          .selectAll()
          .where('id', '=', tenantId)
          .executeTakeFirst();
        return row === undefined ? undefined : toTenant(row);
      });
    },
    async updateTenant(principal, tenantId, patch) {
      if (!isUuid(tenantId)) return undefined;
      // A time-zone change's carry can deadlock with a batch of budget calls (see
      // retryingConflicts); the loser of the two is made again.
      return retryingConflicts(() =>
        database.withScope(scopeFor(principal, tenantId), async (db) => {
          if (patch.status !== undefined) await lockAccess(db, 'tenant', tenantId);
          if (patch.timeZone !== undefined) await assertKnownTimeZone(db, patch.timeZone);
          const before = await db
            .selectFrom('brigade.tenants')
            .selectAll()
            .where('id', '=', tenantId)
            .forNoKeyUpdate()
            .executeTakeFirst();
          if (before === undefined) return undefined;
          const row = await db
            .updateTable('brigade.tenants')
            .set({
              ...(patch.name === undefined ? {} : { name: patch.name }),
              ...(patch.status === undefined ? {} : { status: patch.status }),
              ...(patch.timeZone === undefined ? {} : { time_zone: patch.timeZone }),
              ...(patch.captureContent === undefined
                ? {}
                : { capture_content: patch.captureContent }),
              ...(patch.metadata === undefined ? {} : { metadata: JSON.stringify(patch.metadata) }),
              updated_at: new Date(),
            })
            .where('id', '=', tenantId)
            .returningAll()
            .executeTakeFirst();
          if (row === undefined) return undefined;
          // Spend and quota of the current period carry into the new zone's (migration 0050).
          if (before.time_zone !== row.time_zone)
            await sql`select brigade.carry_limit_counters(${tenantId}::uuid, null, ${before.time_zone}, null)`.execute(
              db,
            );
          await writeAudit(db, {
            tenantId,
            principal,
            record: {
              action:
                patch.status === undefined
                  ? 'tenant.updated'
                  : `tenant.${patch.status === 'suspended' ? 'suspended' : 'reactivated'}`,
              targetType: 'tenant',
              targetId: tenantId,
              outcome: 'success',
              data: {
                fields: Object.keys(patch),
                changes: auditedChanges({
                  before: toTenant(before),
                  patch,
                  recorded: ['status', 'timeZone', 'captureContent'],
                }),
              },
            },
          });
          return toTenant(row);
        }),
      );
    },
    async createUser(principal, tenantId, input) {
      return inTenant(principal, tenantId, async (db) => {
        const user = await insertUser(db, tenantId, input);
        await writeAudit(db, {
          tenantId,
          principal,
          record: {
            action: 'user.created',
            targetType: 'user',
            targetId: user.id,
            outcome: 'success',
            data: { role: user.role },
          },
        });
        return user;
      });
    },
    async listUsers(principal, tenantId, page: PageRequest) {
      return inTenant(principal, tenantId, async (db) => {
        let query = selectUsers(db)
          .where('u.tenant_id', '=', tenantId)
          .orderBy('u.id')
          .limit(page.limit + 1);
        if (page.after !== undefined) query = query.where('u.id', '>', page.after);
        return toPage((await query.execute()).map(toUser), page.limit);
      });
    },
    async getUser(principal, tenantId, userId) {
      return inTenant(principal, tenantId, (db) => loadUser(db, tenantId, userId));
    },
    async updateUser({ principal, tenantId, userId, patch, check }) {
      return inTenant(principal, tenantId, async (db) => {
        // Only a change of role or status can cost the tenant its last active owner.
        const activeOwners =
          patch.role !== undefined || patch.status !== undefined
            ? await activeOwnerCount(db, tenantId, { lock: true })
            : Number.POSITIVE_INFINITY;
        const current = await loadUser(db, tenantId, userId);
        if (current === undefined) return undefined;
        check(current, activeOwners);
        if (patch.status !== undefined) await lockAccess(db, 'user', userId);
        const now = new Date();
        const { role, metadata, displayName, ...rest } = patch;
        await db
          .updateTable('brigade.users')
          .set({
            ...rest,
            ...(displayName === undefined ? {} : { display_name: displayName }),
            ...(metadata === undefined ? {} : { metadata: JSON.stringify(metadata) }),
            updated_at: now,
          })
          .where('tenant_id', '=', tenantId)
          .where('id', '=', userId)
          .execute();
        if (role !== undefined && role !== current.role) {
          await db
            .updateTable('brigade.memberships')
            .set({ role, updated_at: now })
            .where('tenant_id', '=', tenantId)
            .where('user_id', '=', userId)
            .execute();
        }
        const changed = Object.keys(patch);
        await writeAudit(db, {
          tenantId,
          principal,
          record: {
            action:
              role !== undefined && role !== current.role ? 'user.role_changed' : 'user.updated',
            targetType: 'user',
            targetId: userId,
            outcome: 'success',
            data: {
              fields: changed,
              ...(role === undefined ? {} : { from: current.role, to: role }),
              changes: auditedChanges({
                before: current,
                patch,
                recorded: ['role', 'status'],
              }),
            },
          },
        });
        return loadUser(db, tenantId, userId);
      });
    },
    async tenantStatus(tenantId) {
      return database.withScope(systemScope(tenantId), async (db) => {
        const row = await db
          .selectFrom('brigade.tenants')
          .select('status')
          .where('id', '=', tenantId)
          .executeTakeFirst();
        return row?.status;
      });
    },
    async findUserBySubject(provider, subject) {
      return database.withScope(systemScope(provider.tenantId), async (db) => {
        const row = await selectUsers(db)
          .where('u.tenant_id', '=', provider.tenantId)
          .where('u.external_issuer', '=', provider.issuer)
          .where('u.external_subject', '=', subject)
          .executeTakeFirst();
        return row === undefined ? undefined : toUser(row);
      });
    },
    async provisionUser(provider, input) {
      return database.withScope(systemScope(provider.tenantId), async (db) => {
        const user = await insertUser(db, provider.tenantId, input);
        await writeAudit(db, {
          tenantId: provider.tenantId,
          principal: undefined,
          record: {
            action: 'user.provisioned',
            targetType: 'user',
            targetId: user.id,
            outcome: 'success',
            data: { providerId: provider.id, role: user.role },
          },
        });
        return user;
      });
    },
  };
}
