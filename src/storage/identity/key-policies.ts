import { sql } from 'kysely';
import type { ScopedDb } from '../postgres/database.ts';
import { type DatabaseScope, renderScopeSwitch } from '../postgres/scope.ts';

/**
 * Moves the policies that bind one API key (level `api_key`) to its rotation successor, with
 * their counters, inside the rotation's transaction; returns how many moved. Without it a key
 * bound by a budget, quota or rate limit could shed it by rotating itself (members rotate their
 * own keys). The rotation runs in its caller's scope, which may not write policies: this one
 * narrow change is made in the operator's scope (for the policies, the operator's too) and the
 * scheduler's (for the counters), then `scope` is restored.
 */
export async function moveKeyPolicies(
  db: ScopedDb,
  move: { tenantId: string; from: string; to: string; scope: DatabaseScope },
): Promise<number> {
  const { tenantId, from, to } = move;
  await sql.raw(renderScopeSwitch({ operator: true })).execute(db);
  const moved = await db
    .updateTable('brigade.policies')
    .set({ subject_id: to, version: sql<number>`version + 1`, updated_at: new Date() })
    .where('tenant_id', '=', tenantId)
    .where('level', '=', 'api_key')
    .where('subject_id', '=', from)
    .returning('id')
    .execute();
  if (moved.length > 0) {
    await sql.raw(renderScopeSwitch({ tenantId, scheduler: true })).execute(db);
    await db
      .updateTable('brigade.limit_counters')
      .set({ subject_id: to })
      .where(
        'policy_id',
        'in',
        moved.map((policy) => policy.id),
      )
      .where('subject_id', '=', from)
      .execute();
  }
  await sql.raw(renderScopeSwitch(move.scope)).execute(db);
  return moved.length;
}
