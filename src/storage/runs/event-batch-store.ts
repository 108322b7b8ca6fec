import { type Database, sqlLiteral } from '../postgres/database.ts';
import { isUuid } from '../postgres/scope.ts';

/** One run's events to append from `firstSeq` on, their data already serialised as JSON. */
export interface SerializedEventBatch {
  readonly run: {
    readonly tenantId: string;
    readonly userId: string;
    readonly runId: string;
    readonly firstSeq: number;
    /** The executor holding the run's claim: the batch is fenced with it (migration 0042). */
    readonly executorId?: string | undefined;
  };
  readonly events: readonly { readonly type: string; readonly json: string }[];
}

/**
 * Appends the events of many runs in one transaction and one round trip: one insert per
 * (tenant, user) scope, each under that scope, so row-level security checks every row as it
 * does for {@link appendEvents}. All or nothing. The runs with an executor id are fenced first,
 * in one statement before every insert (`brigade.assert_claim`, migration 0042, in run id
 * order, so two writes fencing the same runs lock them in the same order): a run whose claim
 * its executor lost fails the whole write with `BRG17` (see run-claim.ts).
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
  const parts = [...byScope.values()]
    .filter((scope) => scope.rows.length > 0)
    .map((scope) => ({
      scope: { tenantId: scope.tenantId, userId: scope.userId },
      statements: [
        `insert into brigade.run_events (tenant_id, user_id, run_id, seq, type, data) values ${scope.rows.join(', ')}`,
      ],
    }));
  const fence = fenceStatement(batches);
  const first = parts[0];
  // The fence sets each run's scope itself; the parts after it set theirs again.
  await database.writeScopes(
    fence === undefined || first === undefined
      ? parts
      : [{ scope: first.scope, statements: [fence] }, ...parts],
  );
}

/** One `assert_claim` per fenced run of `batches`, in run id order; undefined for none. */
function fenceStatement(batches: readonly SerializedEventBatch[]): string | undefined {
  const claims = new Map<string, string>();
  for (const { run, events } of batches) {
    if (run.executorId === undefined || events.length === 0) continue;
    claims.set(
      run.runId,
      `(${sqlLiteral(run.tenantId)}::uuid, ${sqlLiteral(run.userId)}::uuid, ${sqlLiteral(run.runId)}::uuid, ${sqlLiteral(run.executorId)})`,
    );
  }
  if (claims.size === 0) return undefined;
  const rows = [...claims.entries()]
    .sort(([left], [right]) => (left < right ? -1 : left > right ? 1 : 0))
    .map(([, row]) => row);
  return `select brigade.assert_claim(c.tenant_id, c.user_id, c.run_id, c.executor_id)
    from (values ${rows.join(', ')}) as c(tenant_id, user_id, run_id, executor_id)`;
}
