import type { Selectable } from 'kysely';
import type { Message, Thread } from '../../domain/agents/agent-types.ts';
import type { ThreadRunPorts } from '../../domain/agents/thread-service.ts';
import type { ContentPartV1, ProvenanceV1 } from '../../plugin-api/index.ts';
import { scopeFor } from '../identity/scope-for.ts';
import { toPage } from '../identity/tenant-user-store.ts';
import type { Database, ScopedDb } from '../postgres/database.ts';
import type { MessagesTable, ThreadsTable } from '../postgres/database-schema.ts';
import { activeStatuses } from '../runs/run-cancellation.ts';
import type { RunSignalSink } from '../runs/run-rows.ts';
import { deleteRunSpans } from '../tracing/span-store.ts';

/** Maps a threads row. */
export function toThread(row: Selectable<ThreadsTable>): Thread {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    userId: row.user_id,
    title: row.title,
    metadata: row.metadata as Record<string, unknown>,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** Maps a messages row. */
export function toMessage(row: Selectable<MessagesTable>): Message {
  return {
    id: row.id,
    threadId: row.thread_id,
    runId: row.run_id,
    seq: Number(row.seq),
    role: row.role,
    content: row.content as ContentPartV1[],
    provenance: row.provenance as ProvenanceV1,
    inputTokens: row.input_tokens,
    outputTokens: row.output_tokens,
    createdAt: row.created_at,
  };
}

/** Loads a thread of the scoped user inside an open transaction. */
export async function loadThread(db: ScopedDb, threadId: string): Promise<Thread | undefined> {
  const row = await db
    .selectFrom('brigade.threads')
    .selectAll()
    .where('id', '=', threadId)
    .executeTakeFirst();
  return row === undefined ? undefined : toThread(row);
}

/** Persistence of a user's threads and messages (the domain's port); RLS shows a user only their own. */
export type ThreadStore = ThreadRunPorts['threads'];

/** The PostgreSQL {@link ThreadStore}. */
export function createThreadStore(database: Database, signals?: RunSignalSink): ThreadStore {
  return {
    create(principal, input) {
      return database.withScope(scopeFor(principal), async (db) => {
        const now = new Date();
        const row = await db
          .insertInto('brigade.threads')
          .values({
            tenant_id: principal.tenantId,
            user_id: principal.userId,
            title: input.title,
            metadata: JSON.stringify(input.metadata),
            created_at: now,
            updated_at: now,
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        const messages = input.messages ?? [];
        if (messages.length > 0)
          await db
            .insertInto('brigade.messages')
            .values(
              messages.map((message) => ({
                tenant_id: principal.tenantId,
                user_id: principal.userId,
                thread_id: row.id,
                role: message.role,
                content: JSON.stringify(message.content),
                provenance: message.provenance,
                created_at: now,
              })),
            )
            .execute();
        return toThread(row);
      });
    },
    list(principal, page) {
      return database.withScope(scopeFor(principal), async (db) => {
        let query = db
          .selectFrom('brigade.threads')
          .selectAll()
          .orderBy('id')
          .limit(page.limit + 1);
        if (page.after !== undefined) query = query.where('id', '>', page.after);
        return toPage((await query.execute()).map(toThread), page.limit);
      });
    },
    get(principal, threadId) {
      return database.withScope(scopeFor(principal), (db) => loadThread(db, threadId));
    },
    /**
     * Deletes a thread and everything under it. The thread's row is locked first, as a run's
     * creation locks it: a run created meanwhile has committed (run and queue entry) before
     * the queue entries go, so none is left behind to hold a slot forever. The runs' stored
     * spans are deleted in the same transaction (spans still on their way are dropped when
     * written: see the span store). The runs that were active are then asked to stop wherever
     * they execute (`signals`), after the commit.
     */
    async delete(principal, threadId) {
      const active = await database.withScope(scopeFor(principal), async (db) => {
        const locked = await db
          .selectFrom('brigade.threads')
          .select('id')
          .where('id', '=', threadId)
          .forUpdate()
          .executeTakeFirst();
        if (locked === undefined) return undefined;
        // Locked in the order a decision locks them (approval, run, queue entry), so deleting
        // a thread and deciding one of its approvals cannot deadlock.
        await db
          .selectFrom('brigade.approvals')
          .select('id')
          .where('thread_id', '=', threadId)
          .orderBy('id')
          .forUpdate()
          .execute();
        const runs = await db
          .selectFrom('brigade.runs')
          .select(['id', 'status'])
          .where('thread_id', '=', threadId)
          .orderBy('id')
          .forUpdate()
          .execute();
        const running = runs.filter((run) =>
          (activeStatuses as readonly string[]).includes(run.status),
        );
        await db.deleteFrom('brigade.run_queue').where('thread_id', '=', threadId).execute();
        await db.deleteFrom('brigade.threads').where('id', '=', threadId).execute();
        // The runs' spans go too: with content capture they hold the prompts and answers.
        await deleteRunSpans(
          db,
          { tenantId: principal.tenantId, runIds: runs.map((run) => run.id) },
          scopeFor(principal),
        );
        return running.map((run) => run.id);
      });
      if (active === undefined) return false;
      for (const runId of active) {
        signals?.cancelRequested(runId);
        signals?.runChanged(runId);
      }
      return true;
    },
    listMessages(principal, threadId, page) {
      return database.withScope(scopeFor(principal), async (db) => {
        if ((await loadThread(db, threadId)) === undefined) return undefined;
        let query = db
          .selectFrom('brigade.messages')
          .selectAll()
          .where('thread_id', '=', threadId)
          .orderBy('seq')
          .limit(page.limit + 1);
        if (page.after !== undefined) {
          const after = Number.parseInt(page.after, 10);
          if (Number.isInteger(after)) query = query.where('seq', '>', String(after));
        }
        const rows = (await query.execute()).map(toMessage);
        const data = rows.slice(0, page.limit);
        const last = data.at(-1);
        return {
          data,
          nextCursor: rows.length > page.limit && last !== undefined ? String(last.seq) : null,
        };
      });
    },
  };
}
