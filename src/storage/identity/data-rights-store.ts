import { sql } from 'kysely';
import { ConflictError } from '../../domain/errors.ts';
import type { DataRightsStore, ErasureRequest } from '../../domain/identity/data-rights-service.ts';
import type { User } from '../../domain/identity/identity-types.ts';
import { retryingConflicts } from '../postgres/conflict-retry.ts';
import type { Database, ScopedDb } from '../postgres/database.ts';
import { type DatabaseScope, renderScopeSwitch } from '../postgres/scope.ts';
import { writeAudit } from './audit-writer.ts';
import { exportBatches } from './data-export-reader.ts';
import { scopeFor, systemScope } from './scope-for.ts';
import { activeOwnerCount, loadUser, lockAccess } from './tenant-user-store.ts';

/** Replaces the scope of the open transaction (see `renderScopeSwitch`). */
async function switchScope(db: ScopedDb, scope: DatabaseScope): Promise<void> {
  await sql.raw(renderScopeSwitch(scope)).execute(db);
}

/**
 * Locks the tenant's owners (so concurrent erasures, demotions or disablings cannot remove
 * every active owner), loads the target and runs the request's check; undefined when no such
 * user.
 */
async function checked(db: ScopedDb, request: ErasureRequest): Promise<User | undefined> {
  const { tenantId, userId } = request;
  const activeOwners = await activeOwnerCount(db, tenantId, { lock: true });
  const target = await loadUser(db, tenantId, userId);
  if (target === undefined) return undefined;
  request.check(target, activeOwners);
  // Run creations of this user in flight finish first; later ones see the new status.
  await lockAccess(db, 'user', userId);
  return target;
}

/** Deletes the user's spans; the transaction must be the scheduler's and the tenant admin's. */
async function deleteSpans(db: ScopedDb, subject: { tenantId: string; userId: string }) {
  await sql`delete from brigade.spans where tenant_id = ${subject.tenantId} and user_id = ${subject.userId}`.execute(
    db,
  );
}

function sweepSpans(database: Database, subject: { tenantId: string; userId: string }) {
  const scope = { tenantId: subject.tenantId, tenantAdmin: true, scheduler: true };
  return database.withScope(scope, (db) => deleteSpans(db, subject));
}

/**
 * Deletes the user's threads (and all that cascades from them), then what is the user's and
 * has no foreign key to cascade from their row: the ids-only queue entries of their runs and
 * their spans (which may hold captured content), under the scheduler's scope, and the policies
 * that bind the user or one of their keys (the operator's too: a policy binding nobody is
 * left to nobody).
 */
async function deleteRemnants(db: ScopedDb, request: ErasureRequest): Promise<number> {
  const { tenantId, userId } = request;
  const keyIds = (
    await db
      .selectFrom('brigade.api_keys')
      .select('id')
      .where('tenant_id', '=', tenantId)
      .where('user_id', '=', userId)
      .execute()
  ).map((row) => row.id);
  // Their threads first, in their own scope (only it sees them), with the runs, messages,
  // events, steps, approvals and thread memory that cascade from them: a run finishing
  // meanwhile locks its run row, then its queue entry (finish_run), so this takes them in
  // that order too — the other way round the two deadlock.
  await switchScope(db, { tenantId, userId });
  // Their threads, then their approvals, before the cascade reaches the approvals through the
  // runs: thread, approval, then run is the order a thread's deletion takes, and approval,
  // then run, the order of a decision, the approval gate and the expiry sweep.
  await db
    .selectFrom('brigade.threads')
    .select('id')
    .where('user_id', '=', userId)
    .orderBy('id')
    .forUpdate()
    .execute();
  await db
    .selectFrom('brigade.approvals')
    .select('id')
    .where('user_id', '=', userId)
    .orderBy('id')
    .forUpdate()
    .execute();
  await db.deleteFrom('brigade.threads').where('user_id', '=', userId).execute();
  // The scheduler's right to delete spans, and the tenant admin's to see them (a DELETE with
  // a WHERE clause sees only the rows the SELECT policies show).
  await switchScope(db, { tenantId, tenantAdmin: true, scheduler: true });
  await db
    .deleteFrom('brigade.run_queue')
    .where('tenant_id', '=', tenantId)
    .where('user_id', '=', userId)
    .execute();
  await deleteSpans(db, request);
  await switchScope(db, { operator: true });
  const policies = await db
    .deleteFrom('brigade.policies')
    .where('tenant_id', '=', tenantId)
    .where((where) =>
      where.or([
        where.and([where('level', '=', 'user'), where('subject_id', '=', userId)]),
        ...(keyIds.length === 0
          ? []
          : [where.and([where('level', '=', 'api_key'), where('subject_id', 'in', keyIds)])]),
      ]),
    )
    .executeTakeFirst();
  await switchScope(db, systemScope(tenantId));
  return Number(policies.numDeletedRows);
}

/**
 * The erasure's one transaction. It does not check the request again (beginErasure decided,
 * and disabled the user), except that the tenant keeps an active owner: someone may have
 * re-enabled this owner and demoted the other meanwhile.
 */
async function eraseOnce(database: Database, request: ErasureRequest): Promise<boolean> {
  const { tenantId, userId, principal } = request;
  return database.withScope(systemScope(tenantId), async (db) => {
    const target = await checked(db, { ...request, check: keepsAnOwner });
    if (target === undefined) return false;
    const policies = await deleteRemnants(db, request);
    // Cascades to the memberships, keys, consents, vault keys, personal credentials and
    // long-term memory.
    await db
      .deleteFrom('brigade.users')
      .where('tenant_id', '=', tenantId)
      .where('id', '=', userId)
      .execute();
    await writeAudit(db, {
      tenantId,
      principal,
      record: {
        action: 'user.deleted',
        targetType: 'user',
        targetId: userId,
        outcome: 'success',
        reason: request.reason,
        data: { role: target.role, policiesDeleted: policies },
      },
    });
    return true;
  });
}

function keepsAnOwner(target: User, activeOwners: number): void {
  if (target.role === 'owner' && target.status === 'active' && activeOwners <= 1) {
    throw new ConflictError('A tenant must keep at least one active owner.');
  }
}

/** The PostgreSQL {@link DataRightsStore}. */
export function createDataRightsStore(database: Database): DataRightsStore {
  return {
    exportBatches: (principal) => exportBatches(database, principal),
    async recordExport(principal) {
      await database.withScope(scopeFor(principal), (db) =>
        writeAudit(db, {
          tenantId: principal.tenantId,
          principal,
          record: {
            action: 'user.data_exported',
            targetType: 'user',
            targetId: principal.userId,
            outcome: 'success',
          },
        }),
      );
    },
    async checkErasure(request) {
      const { tenantId, userId } = request;
      return database.withScope(systemScope(tenantId), async (db) => {
        const target = await loadUser(db, tenantId, userId);
        if (target === undefined) return undefined;
        request.check(target, await activeOwnerCount(db, tenantId, { lock: false }));
        return target;
      });
    },
    async beginErasure(request) {
      const { tenantId, userId, principal } = request;
      // The system's scope in the tenant: the service has decided the principal may do this
      // (a member erasing themselves has no right to change user rows otherwise).
      return database.withScope(systemScope(tenantId), async (db) => {
        const target = await checked(db, request);
        if (target === undefined) return undefined;
        await db
          .updateTable('brigade.users')
          .set({ status: 'disabled', updated_at: new Date() })
          .where('tenant_id', '=', tenantId)
          .where('id', '=', userId)
          .execute();
        await writeAudit(db, {
          tenantId,
          principal,
          record: {
            action: 'user.deletion_started',
            targetType: 'user',
            targetId: userId,
            outcome: 'success',
            reason: request.reason,
            data: { role: target.role },
          },
        });
        return target;
      });
    },
    async erase(request) {
      // A deadlock with a transaction of the user's runs (or a serialisation failure) rolls
      // the whole erasure back; it is safe to try again.
      const erased = await retryingConflicts(() => eraseOnce(database, request));
      // A span batch that checked the user's membership before the deletion committed may
      // have committed after the delete above: sweep once more (later batches drop them).
      if (erased) await sweepSpans(database, request);
      return erased;
    },
  };
}
