import { sql } from 'kysely';
import type { StoredSpan } from '../../observability/tracing.ts';
import type { Database, ScopedDb } from '../postgres/database.ts';
import { type DatabaseScope, renderScopeSwitch } from '../postgres/scope.ts';
import { deleteInBatches } from '../retention/retention-store.ts';

/** A span as `getRunTrace` returns it. */
export interface TraceSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string | null;
  readonly name: string;
  readonly kind: string;
  readonly startedAt: Date;
  readonly endedAt: Date;
  readonly durationMs: number;
  readonly status: string;
  readonly statusMessage: string | null;
  readonly attributes: Readonly<Record<string, unknown>>;
}

/** The built-in span store (migration 0011): written in batches, read under RLS, pruned by age. */
export function createSpanStore(database: Database) {
  return {
    /**
     * Writes finished spans (one call of `brigade.write_spans` per batch, migration 0046;
     * duplicates are ignored). Checked at write time, since spans arrive up to a second after
     * they end: a span of a user who no longer exists, or of a run that no longer exists
     * (deleted with its thread), is dropped — one still buffered then (or the deleting
     * request's own) must not bring their data back — and captured content is kept only while
     * the tenant captures and the user consents (`content_capture`).
     */
    async write(spans: readonly StoredSpan[]): Promise<void> {
      if (spans.length === 0) return;
      await database.withScope({ scheduler: true }, async (db) => {
        await sql`select brigade.write_spans(${JSON.stringify(
          spans.map((span) => ({
            tenant_id: span.tenantId,
            trace_id: span.traceId,
            span_id: span.spanId,
            user_id: span.userId,
            parent_span_id: span.parentSpanId,
            run_id: span.runId,
            name: span.name,
            kind: span.kind,
            started_at: span.startedAt.toISOString(),
            ended_at: span.endedAt.toISOString(),
            status: span.status,
            status_message: span.statusMessage,
            attributes: span.attributes,
          })),
        )}::jsonb)`.execute(db);
      });
    },
    /**
     * The spans of a run's traces, oldest first (RLS: the run's user, or the tenant's admins):
     * every trace the run executed in (with the request that created it, whose child each
     * execution is), not those of later requests that only name the run in their path. With
     * `threadId`, only a run whose own spans name that thread (an admin's read: runs are
     * invisible to admins, so the spans alone say which thread the run is in).
     */
    async runTrace(
      scope: { tenantId: string; userId: string; tenantAdmin: boolean },
      run: { readonly runId: string; readonly threadId?: string | undefined },
    ) {
      const { runId, threadId } = run;
      const inThread =
        threadId === undefined ? sql`` : sql`and attributes ->> 'brigade.thread.id' = ${threadId}`;
      return database.withScope(scope, async (db) => {
        const rows = await sql<{
          trace_id: string;
          span_id: string;
          parent_span_id: string | null;
          name: string;
          kind: string;
          started_at: Date;
          ended_at: Date;
          status: string;
          status_message: string | null;
          attributes: Record<string, unknown>;
        }>`
          select * from brigade.spans
           where tenant_id = ${scope.tenantId}::uuid
             and trace_id in (select trace_id from brigade.spans
                               where tenant_id = ${scope.tenantId}::uuid and run_id = ${runId}::uuid
                                 and kind <> 'server' ${inThread})
           order by started_at, span_id
           limit 5000`.execute(db);
        return rows.rows.map(
          (row): TraceSpan => ({
            traceId: row.trace_id,
            spanId: row.span_id,
            parentSpanId: row.parent_span_id,
            name: row.name,
            kind: row.kind,
            startedAt: row.started_at,
            endedAt: row.ended_at,
            durationMs: row.ended_at.getTime() - row.started_at.getTime(),
            status: row.status,
            statusMessage: row.status_message,
            attributes: row.attributes,
          }),
        );
      });
    },
    /**
     * Deletes spans that ended more than `retentionHours` ago (a backlog in batches, up to a
     * million a call); returns how many. The scheduler may read spans for it (migration 0040).
     */
    prune(retentionHours: number): Promise<number> {
      return deleteInBatches(
        database,
        'brigade.spans',
        sql`ended_at < now() - make_interval(hours => ${retentionHours})`,
      );
    },
  };
}

/** Span attributes that hold captured prompts and answers (content capture). */
const capturedAttributes = ['gen_ai.input.messages', 'gen_ai.output.messages'];

/**
 * Deletes the stored spans of `runIds` in the open transaction (a thread's deletion, whose
 * runs they were), then gives it back `scope`. Deleting spans is the scheduler's right (a
 * DELETE sees only the rows the SELECT policies show: the scheduler's, migration 0040).
 */
export async function deleteRunSpans(
  db: ScopedDb,
  runs: { readonly tenantId: string; readonly runIds: readonly string[] },
  scope: DatabaseScope,
): Promise<void> {
  if (runs.runIds.length === 0) return;
  await sql.raw(renderScopeSwitch({ tenantId: runs.tenantId, scheduler: true })).execute(db);
  await sql`delete from brigade.spans
             where tenant_id = ${runs.tenantId}::uuid and run_id = any(${runs.runIds}::uuid[])`.execute(
    db,
  );
  await sql.raw(renderScopeSwitch(scope)).execute(db);
}

/**
 * Removes captured prompts and answers from the user's stored spans in the open transaction
 * (the `content_capture` consent was revoked), then gives it back `scope`; how many spans
 * held some. In the scheduler's scope, which alone may update spans (migration 0046).
 */
export async function scrubCapturedContent(
  db: ScopedDb,
  subject: { readonly tenantId: string; readonly userId: string },
  scope: DatabaseScope,
): Promise<number> {
  await sql.raw(renderScopeSwitch({ tenantId: subject.tenantId, scheduler: true })).execute(db);
  const scrubbed = await sql`
    update brigade.spans set attributes = attributes - ${capturedAttributes}::text[]
     where tenant_id = ${subject.tenantId}::uuid and user_id = ${subject.userId}::uuid
       and attributes ?| ${capturedAttributes}::text[]`.execute(db);
  await sql.raw(renderScopeSwitch(scope)).execute(db);
  return Number(scrubbed.numAffectedRows ?? 0);
}

/** The span store's type. */
export type SpanStore = ReturnType<typeof createSpanStore>;
