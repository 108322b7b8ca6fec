import { sql } from 'kysely';
import type { StoredSpan } from '../../observability/tracing.ts';
import type { Database } from '../postgres/database.ts';
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
     * Writes finished spans (one statement per batch; duplicates are ignored). A span of a user
     * who no longer exists is dropped: one still buffered when the user was deleted (or the
     * deleting request's own) must not bring their data back.
     */
    async write(spans: readonly StoredSpan[]): Promise<void> {
      if (spans.length === 0) return;
      await database.withScope({ scheduler: true }, async (db) => {
        await sql`
          insert into brigade.spans
            (tenant_id, trace_id, span_id, user_id, parent_span_id, run_id, name, kind,
             started_at, ended_at, status, status_message, attributes)
          select * from jsonb_to_recordset(${JSON.stringify(
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
          )}::jsonb) as s(tenant_id uuid, trace_id text, span_id text, user_id uuid,
                          parent_span_id text, run_id uuid, name text, kind text,
                          started_at timestamptz, ended_at timestamptz, status text,
                          status_message text, attributes jsonb)
           where s.user_id is null
              or exists (select 1 from brigade.memberships m
                          where m.tenant_id = s.tenant_id and m.user_id = s.user_id)
          on conflict do nothing`.execute(db);
      });
    },
    /**
     * The spans of a run's traces, oldest first (RLS: the run's user, or the tenant's admins):
     * every trace the run executed in (with the request that created it, whose child each
     * execution is), not those of later requests that only name the run in their path.
     */
    async runTrace(
      scope: { tenantId: string; userId: string; tenantAdmin: boolean },
      runId: string,
    ) {
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
                                 and kind <> 'server')
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

/** The span store's type. */
export type SpanStore = ReturnType<typeof createSpanStore>;
