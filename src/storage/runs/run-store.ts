import type { Selectable } from 'kysely';
import { sql } from 'kysely';
import type { ThreadRunPorts } from '../../domain/agents/thread-service.ts';
import { AppError, NotFoundError } from '../../domain/errors.ts';
import type { UserPrincipal } from '../../domain/identity/principal.ts';
import { loadThread } from '../agents/thread-store.ts';
import { consumeQuotaIn, type ReserveResult, refuseQuota } from '../guards/budget-store.ts';
import { scopeFor } from '../identity/scope-for.ts';
import {
  afterCreation,
  creationMicros,
  parseCreationCursor,
  toCreationPage,
} from '../postgres/creation-order.ts';
import type { Database, ScopedDb } from '../postgres/database.ts';
import type { RunsTable } from '../postgres/database-schema.ts';
import { queueFull, type RunAdmissionOptions, refuseQueueFull } from './run-admission.ts';
import {
  activeStatuses,
  appendEvents,
  cancelActive,
  cancelOne,
  lockPendingApprovals,
  type Signals,
  sendSignals,
} from './run-cancellation.ts';
import { type RunSignalSink, toRun, toRunEvent } from './run-rows.ts';

export { appendEvents };

/** Persistence of runs, their events and their queue entries (the domain's port). */
export type RunStore = ThreadRunPorts['runs'];

/** The prepared call of brigade.read_run_events (migration 0014). */
const readEventsStatement = {
  name: 'brigade_read_run_events',
  text: 'select * from brigade.read_run_events($1, $2, $3, $4, $5, $6)',
};

/**
 * The common-case create: one prepared call of brigade.create_run (migration 0016), and in the
 * same statement (one transaction) brigade.claim_on_arrival (0017) for this process's free slot.
 */
const createStatement = {
  name: 'brigade_create_run',
  text: `select r.*, brigade.claim_on_arrival(r.id, $11, $12::interval, $13, $14) as arrival
           from brigade.create_run($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $15) r`,
};

/**
 * The PostgreSQL {@link RunStore}. Creating a run counts the tenant's queued runs in the same
 * statement that locks the thread and refuses one beyond `maxQueuedPerTenant` (`queue_full`).
 * The count is a snapshot, so concurrent creates of one tenant can each see room: the limit
 * may be overshot by the number of run creations of that tenant in flight at the same moment.
 */
export function createRunStore(
  database: Database,
  sink: RunSignalSink,
  admission: RunAdmissionOptions = {},
): RunStore {
  const maxQueued = admission.maxQueuedPerTenant ?? 0;
  const staleAfterMs = admission.staleAfterMs ?? 10_000;
  const traceParent = () => admission.traceParent?.() ?? null;
  /** Runs `work` in a scoped transaction, then sends the signals it collected. */
  async function withSignals<T>(
    principal: UserPrincipal,
    work: (db: ScopedDb, signals: Signals) => Promise<T>,
    options: { tenantQueue?: boolean } = {},
  ): Promise<T> {
    const signals: Signals = { changed: new Set(), cancelled: new Set() };
    const scope = { ...scopeFor(principal), ...(options.tenantQueue ? { tenantQueue: true } : {}) };
    const result = await database.withScope(scope, (db) => work(db, signals));
    sendSignals(sink, signals);
    return result;
  }
  /**
   * The full create: one transaction of several statements. Taken when the thread has an
   * active run and the strategy is not 'enqueue' (reject, interrupt, rollback); the common
   * case is one call of brigade.create_run (below), which makes the same checks.
   */
  function createInTransaction(principal: UserPrincipal, input: Parameters<RunStore['create']>[1]) {
    return withSignals(
      principal,
      async (db, signals) => {
        // The thread's lock first, then (on a snapshot taken after it, which sees a run a create
        // that held the lock just committed) its active run, the agent and the depth of the
        // tenant's queue (counted up to the limit; the tenant_queue scope shows its entries).
        // `no key update` (`create_run`'s `for update` conflicts with it, so creates and the
        // thread's deletion still take turns): the thread's running run passes the foreign-key
        // checks (`key share`) of the messages it writes meanwhile. With `for update` it waited
        // there holding its own row, which this create waits for to cancel it: a deadlock, and
        // a 503. (`create_run` keeps `for update`: it never waits for a run's row, and measured,
        // `no key update` there added ~8 ms to every create at concurrency 1.)
        const locked = await sql`
          select 1 from brigade.threads t
           where t.id = ${input.threadId} for no key update of t`.execute(db);
        if (locked.rows.length === 0) return undefined;
        const found = await sql<{
          busy_id: string | null;
          agent_exists: boolean;
          queued: number;
        }>`
          select (select r.id from brigade.runs r
                   where r.thread_id = t.id and r.status in ('queued', 'running', 'requires_action')
                   limit 1) as busy_id,
                 exists (select 1 from brigade.agents a where a.id = ${input.agentId}) as agent_exists,
                 (select count(*) from (select 1 from brigade.run_queue q
                   where q.tenant_id = ${principal.tenantId} and q.state = 'queued'
                   limit ${maxQueued}) d)::int as queued
            from brigade.threads t where t.id = ${input.threadId}`.execute(db);
        const thread = found.rows[0];
        if (thread === undefined) return undefined;
        if (!thread.agent_exists) throw new NotFoundError('agent_not_found', 'Agent not found.');
        if (maxQueued > 0 && thread.queued >= maxQueued) {
          throw await queueFull(db, {
            tenantId: principal.tenantId,
            userId: principal.userId,
            queued: thread.queued,
            limit: maxQueued,
            staleAfterMs,
          });
        }
        // The daily run quotas: counted in this transaction, so a refused or failed create
        // counts nothing.
        await consumeQuotaIn(
          db,
          {
            tenantId: principal.tenantId,
            userId: principal.userId,
            keyId: principal.keyId ?? null,
            agentId: input.agentId,
          },
          'runs',
        );
        if (thread.busy_id !== null) {
          if (input.strategy === 'reject') {
            throw new AppError('thread_busy', 'The thread already has an active run.', {
              details: { activeRunId: thread.busy_id },
            });
          }
          if (input.strategy === 'interrupt' || input.strategy === 'rollback') {
            await cancelActive(db, {
              threadId: input.threadId,
              rollback: input.strategy === 'rollback',
              signals,
            });
          }
        }
        // The run, its input message, its queue entry and its first event: one statement.
        const content =
          input.input === undefined ? null : JSON.stringify([{ type: 'text', text: input.input }]);
        const inserted = await sql<Selectable<RunsTable>>`
          with r as (
            insert into brigade.runs (tenant_id, user_id, thread_id, agent_id, strategy, priority, api_key_id, trace_parent)
            values (${principal.tenantId}, ${principal.userId}, ${input.threadId}, ${input.agentId}, ${input.strategy}, ${input.priority}, ${principal.keyId ?? null}, ${traceParent()})
            returning *),
          m as (
            insert into brigade.messages (tenant_id, user_id, thread_id, run_id, role, content, provenance)
            select tenant_id, user_id, thread_id, id, 'user', ${content}::jsonb, 'user'
              from r where ${content}::jsonb is not null),
          q as (
            insert into brigade.run_queue (run_id, tenant_id, user_id, thread_id, priority)
            select id, tenant_id, user_id, thread_id, priority from r),
          e as (
            insert into brigade.run_events (tenant_id, user_id, run_id, seq, type, data)
            select tenant_id, user_id, id, 1, 'run-queued',
                   jsonb_build_object('runId', id, 'threadId', thread_id, 'agentId', agent_id)
              from r)
          select * from r`.execute(db);
        const row = inserted.rows[0];
        if (row === undefined) throw new Error('run insert returned nothing');
        signals.changed.add(row.id);
        return toRun(row);
      },
      { tenantQueue: true },
    );
  }

  return {
    async create(principal, input) {
      const content =
        input.input === undefined ? null : JSON.stringify([{ type: 'text', text: input.input }]);
      const slot = admission.arrivals?.(principal);
      let rows: Record<string, unknown>[];
      try {
        rows = await database.callPrepared(createStatement, [
          principal.tenantId,
          principal.userId,
          principal.role === 'owner' || principal.role === 'admin',
          principal.keyId ?? null,
          input.threadId,
          input.agentId,
          input.strategy,
          input.priority,
          content,
          maxQueued,
          slot?.executorId ?? null,
          `${Math.ceil(staleAfterMs / 1000)} seconds`,
          slot?.maxPerTenant ?? 0,
          slot?.maxPerUser ?? 0,
          traceParent(),
        ]);
      } catch (error) {
        slot?.release();
        const { code, detail } = error as { code?: string; detail?: string };
        if (code === 'BRG11') return undefined;
        if (code === 'BRG12') throw new NotFoundError('agent_not_found', 'Agent not found.');
        if (code === 'BRG13')
          throw await refuseQueueFull(database, {
            tenantId: principal.tenantId,
            userId: principal.userId,
            queued: Number(detail),
            limit: maxQueued,
            staleAfterMs,
          });
        if (code === 'BRG14') return createInTransaction(principal, input);
        if (code === 'BRG15') refuseQuota('runs', JSON.parse(String(detail)) as ReserveResult);
        throw error;
      }
      const row = rows[0] as
        | (Selectable<RunsTable> & { arrival: 'claimed' | 'capped' | 'queued' })
        | undefined;
      if (row === undefined) {
        slot?.release();
        throw new Error('run insert returned nothing');
      }
      sink.runChanged(row.id);
      if (slot !== undefined && row.arrival === 'claimed') {
        slot.launch({ runId: row.id, tenantId: row.tenant_id, userId: row.user_id });
      } else {
        slot?.release();
        // A run whose tenant or user is at its cap waits for one of their runs to finish, and
        // that wakes the schedulers: a wake-up now would only make them claim nothing.
        if (row.arrival !== 'capped' && slot?.atCap !== true) sink.queueChanged();
      }
      return toRun(row);
    },
    get(principal, threadId, runId) {
      return database.withScope(scopeFor(principal), async (db) => {
        const row = await db
          .selectFrom('brigade.runs')
          .selectAll()
          .where('id', '=', runId)
          .where('thread_id', '=', threadId)
          .executeTakeFirst();
        return row === undefined ? undefined : toRun(row);
      });
    },
    list(principal, threadId, page) {
      const after = page.after === undefined ? undefined : parseCreationCursor(page.after);
      return database.withScope(scopeFor(principal), async (db) => {
        if ((await loadThread(db, threadId)) === undefined) return undefined;
        let query = db
          .selectFrom('brigade.runs')
          .selectAll()
          .select(creationMicros())
          .where('thread_id', '=', threadId)
          .orderBy('created_at')
          .orderBy('id')
          .limit(page.limit + 1);
        if (after !== undefined) query = query.where(afterCreation(after));
        return toCreationPage(await query.execute(), { limit: page.limit, map: toRun });
      });
    },
    async events(principal, { runId, afterSeq, limit }) {
      // Streams read often: one prepared call of brigade.read_run_events (migration 0014),
      // which sets the reader's scope itself.
      const rows = await database.callPrepared(readEventsStatement, [
        principal.tenantId,
        principal.userId,
        principal.role === 'owner' || principal.role === 'admin',
        runId,
        afterSeq,
        limit,
      ]);
      return rows.map((row) => toRunEvent(row as unknown as Parameters<typeof toRunEvent>[0]));
    },
    requestCancel(principal, threadId, runId) {
      return withSignals(principal, async (db, signals) => {
        await lockPendingApprovals(db, { runId });
        const row = await db
          .selectFrom('brigade.runs')
          .selectAll()
          .where('id', '=', runId)
          .where('thread_id', '=', threadId)
          .forUpdate()
          .executeTakeFirst();
        if (row === undefined) return undefined;
        if (!(activeStatuses as readonly string[]).includes(row.status)) {
          throw new AppError('run_not_active', `The run is already ${row.status}.`);
        }
        await cancelOne(db, { id: row.id, tenantId: row.tenant_id, userId: row.user_id, signals });
        const updated = await db
          .selectFrom('brigade.runs')
          .selectAll()
          .where('id', '=', runId)
          .executeTakeFirstOrThrow();
        return toRun(updated);
      });
    },
  };
}
