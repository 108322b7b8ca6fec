import { type Database, sqlLiteral } from '../postgres/database.ts';
import { isUuid } from '../postgres/scope.ts';

/** One run's events to append from `firstSeq` on, their data already serialised as JSON. */
export interface SerializedEventBatch {
  readonly run: {
    readonly tenantId: string;
    readonly userId: string;
    readonly runId: string;
    readonly firstSeq: number;
  };
  readonly events: readonly { readonly type: string; readonly json: string }[];
}

/**
 * Appends the events of many runs in one transaction and one round trip: one insert per
 * (tenant, user) scope, each under that scope, so row-level security checks every row as it
 * does for {@link appendEvents}. All or nothing.
 */
export async function appendEventBatches(
  database: Database,
  batches: readonly SerializedEventBatch[],
): Promise<void> {
  const byScope = new Map<string, { tenantId: string; userId: string; rows: string[] }>();
  for (const { run, events } of batches) {
    // Tenant and user are validated by the scope switch, the run id here; every value is an
    // escaped literal besides.
    if (!isUuid(run.runId)) throw new Error('invalid run id');
    const key = `${run.tenantId}/${run.userId}`;
    let scope = byScope.get(key);
    if (scope === undefined) {
      scope = { tenantId: run.tenantId, userId: run.userId, rows: [] };
      byScope.set(key, scope);
    }
    const prefix = `(${sqlLiteral(run.tenantId)}, ${sqlLiteral(run.userId)}, ${sqlLiteral(run.runId)}`;
    for (const [index, event] of events.entries()) {
      scope.rows.push(
        `${prefix}, ${sqlLiteral(run.firstSeq + index)}, ${sqlLiteral(event.type)}, ${sqlLiteral(event.json)}::jsonb)`,
      );
    }
  }
  await database.writeScopes(
    [...byScope.values()]
      .filter((scope) => scope.rows.length > 0)
      .map((scope) => ({
        scope: { tenantId: scope.tenantId, userId: scope.userId },
        statements: [
          `insert into brigade.run_events (tenant_id, user_id, run_id, seq, type, data) values ${scope.rows.join(', ')}`,
        ],
      })),
  );
}
