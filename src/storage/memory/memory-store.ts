import { type ExpressionBuilder, type Selectable, sql } from 'kysely';
import { AppError } from '../../domain/errors.ts';
import type { UserPrincipal } from '../../domain/identity/principal.ts';
import type {
  MemoryEntry,
  MemoryFilter,
  MemoryStore,
  MemorySubject,
} from '../../domain/memory/memory-types.ts';
import type { JsonValueV1 } from '../../plugin-api/index.ts';
import { writeAudit } from '../identity/audit-writer.ts';
import { toPage } from '../identity/tenant-user-store.ts';
import type { Database, ScopedDb } from '../postgres/database.ts';
import type { DatabaseSchema, MemoriesTable } from '../postgres/database-schema.ts';

type MemoryRow = Selectable<MemoriesTable>;

function toEntry(row: MemoryRow): MemoryEntry {
  return {
    id: row.id,
    scope: row.thread_id === null ? 'user' : 'thread',
    threadId: row.thread_id,
    key: row.key,
    value: row.value as JsonValueV1,
    runId: row.run_id,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** A subject's own scope: its user in its tenant (never an admin's view). */
const scopeOf = (subject: { tenantId: string; userId: string }) => ({
  tenantId: subject.tenantId,
  userId: subject.userId,
});

/** The rows of one namespace: a thread's, or the user's long-term ones (no thread). */
function ofNamespace(subject: MemorySubject) {
  return (eb: ExpressionBuilder<DatabaseSchema, 'brigade.memories'>) =>
    eb.and([
      eb('tenant_id', '=', subject.tenantId),
      eb('user_id', '=', subject.userId),
      subject.threadId === null
        ? eb('thread_id', 'is', null)
        : eb('thread_id', '=', subject.threadId),
    ]);
}

/** Selects the rows of one namespace. */
function inNamespace(db: ScopedDb, subject: MemorySubject) {
  return db.selectFrom('brigade.memories').where(ofNamespace(subject));
}

/** The condition of a filter: a thread's rows, long-term or thread ones, or all of them. */
function covers(filter: MemoryFilter) {
  return (eb: ExpressionBuilder<DatabaseSchema, 'brigade.memories'>) =>
    filter.threadId !== undefined
      ? eb('thread_id', '=', filter.threadId)
      : filter.scope === 'user'
        ? eb('thread_id', 'is', null)
        : filter.scope === 'thread'
          ? eb('thread_id', 'is not', null)
          : sql<boolean>`true`;
}

/**
 * Serialises the memory writes of one user, and a revocation of their `long_term_memory`
 * consent with them (consent-store.ts), until the transaction ends.
 */
export async function lockUserMemory(db: ScopedDb, userId: string): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtext('brigade.memory'), hashtext(${userId}))`.execute(
    db,
  );
}

/** Whether the user holds a granted `long_term_memory` consent of scope `*`. */
export async function hasLongTermConsent(
  db: ScopedDb,
  subject: { readonly tenantId: string; readonly userId: string },
): Promise<boolean> {
  const granted = await db
    .selectFrom('brigade.consents')
    .select('id')
    .where('tenant_id', '=', subject.tenantId)
    .where('user_id', '=', subject.userId)
    .where('purpose', '=', 'long_term_memory')
    .where('status', '=', 'granted')
    .where('scope', '=', '*')
    .executeTakeFirst();
  return granted !== undefined;
}

/**
 * The consent check again, inside the locked write: the run checked it before, but a
 * revocation may have committed since, and its erasure must not be outlived by this write.
 */
async function assertLongTermConsent(db: ScopedDb, subject: MemorySubject): Promise<void> {
  if (!(await hasLongTermConsent(db, subject))) {
    throw new AppError(
      'consent_required',
      "This needs the user's consent for 'long_term_memory'; grant it with POST /v1/me/consents.",
      { details: { purpose: 'long_term_memory', scope: '*' } },
    );
  }
}

/**
 * The PostgreSQL {@link MemoryStore}. Writes of one user serialise on a transaction-level
 * advisory lock, so the entry cap holds under concurrent runs (count, then insert, in one
 * locked transaction); reads take no lock.
 */
export function createMemoryStore(database: Database): MemoryStore {
  return {
    get(subject, key) {
      return database.withScope(scopeOf(subject), async (db) => {
        const row = await inNamespace(db, subject)
          .selectAll()
          .where('key', '=', key)
          .executeTakeFirst();
        return row === undefined ? undefined : toEntry(row);
      });
    },
    set(subject, entry, maxEntries) {
      return database.withScope(scopeOf(subject), async (db) => {
        await lockUserMemory(db, subject.userId);
        if (subject.threadId === null) await assertLongTermConsent(db, subject);
        const now = new Date();
        const updated = await inNamespace(db, subject)
          .where('key', '=', entry.key)
          .select('id')
          .executeTakeFirst();
        if (updated !== undefined) {
          await db
            .updateTable('brigade.memories')
            .set({ value: entry.json, run_id: entry.runId, updated_at: now })
            .where('id', '=', updated.id)
            .execute();
          return;
        }
        const { count } = await db
          .selectFrom('brigade.memories')
          .select((eb) => eb.fn.countAll<string>().as('count'))
          .where('tenant_id', '=', subject.tenantId)
          .where('user_id', '=', subject.userId)
          .executeTakeFirstOrThrow();
        if (Number(count) >= maxEntries)
          throw new AppError(
            'memory_limit_exceeded',
            `The user's memory is full (${maxEntries} entries across thread and long-term memory); delete entries first.`,
            { details: { maxEntries } },
          );
        await db
          .insertInto('brigade.memories')
          .values({
            tenant_id: subject.tenantId,
            user_id: subject.userId,
            thread_id: subject.threadId,
            key: entry.key,
            value: entry.json,
            run_id: entry.runId,
            created_at: now,
            updated_at: now,
          })
          .execute();
      });
    },
    delete(subject, key) {
      return database.withScope(scopeOf(subject), async (db) => {
        const deleted = await db
          .deleteFrom('brigade.memories')
          .where(ofNamespace(subject))
          .where('key', '=', key)
          .executeTakeFirst();
        return deleted.numDeletedRows > 0n;
      });
    },
    list(subject, options) {
      return database.withScope(scopeOf(subject), async (db) => {
        const rows = await inNamespace(db, subject)
          .selectAll()
          .$if(options.prefix.length > 0, (query) =>
            query.where(sql<boolean>`starts_with(key, ${options.prefix})`),
          )
          .orderBy('key')
          .limit(options.limit)
          .execute();
        return rows.map(toEntry);
      });
    },
    listOwn(principal, query) {
      return database.withScope(ownScope(principal), async (db) => {
        let select = db
          .selectFrom('brigade.memories')
          .selectAll()
          .where('tenant_id', '=', principal.tenantId)
          .where('user_id', '=', principal.userId)
          .where(covers(query))
          .orderBy('id')
          .limit(query.limit + 1);
        if (query.after !== undefined) select = select.where('id', '>', query.after);
        return toPage((await select.execute()).map(toEntry), query.limit);
      });
    },
    deleteOwn(principal, memoryId) {
      return database.withScope(ownScope(principal), async (db) => {
        const deleted = await db
          .deleteFrom('brigade.memories')
          .where('tenant_id', '=', principal.tenantId)
          .where('user_id', '=', principal.userId)
          .where('id', '=', memoryId)
          .returning('thread_id')
          .executeTakeFirst();
        if (deleted === undefined) return false;
        await writeAudit(db, {
          tenantId: principal.tenantId,
          principal,
          record: {
            action: 'memory.deleted',
            targetType: 'memory',
            targetId: memoryId,
            outcome: 'success',
            // Never the key or the value: the audit log outlives the memory it describes.
            data: {
              scope: deleted.thread_id === null ? 'user' : 'thread',
              threadId: deleted.thread_id,
            },
          },
        });
        return true;
      });
    },
    clearOwn(principal, filter) {
      return database.withScope(ownScope(principal), async (db) => {
        const deleted = await db
          .deleteFrom('brigade.memories')
          .where('tenant_id', '=', principal.tenantId)
          .where('user_id', '=', principal.userId)
          .where(covers(filter))
          .executeTakeFirst();
        const count = Number(deleted.numDeletedRows);
        await writeAudit(db, {
          tenantId: principal.tenantId,
          principal,
          record: {
            action: 'memory.cleared',
            targetType: 'user',
            targetId: principal.userId,
            outcome: 'success',
            data: {
              scope: filter.scope ?? null,
              threadId: filter.threadId ?? null,
              deleted: count,
            },
          },
        });
        return count;
      });
    },
  };
}

/**
 * The caller's own scope, without the tenant-admin flag: memory is the user's alone, and the
 * policy reads user_id only, so an admin's scope would show nothing more anyway.
 */
function ownScope(principal: UserPrincipal) {
  return { tenantId: principal.tenantId, userId: principal.userId };
}
