import { sql } from 'kysely';
import type { Principal } from '../../domain/identity/principal.ts';
import { writeAudit } from '../identity/audit-writer.ts';
import type { ScopedDb } from '../postgres/database.ts';
import { type DatabaseScope, renderScopeSwitch } from '../postgres/scope.ts';

/**
 * Deletes the policies that bind one agent of `tenantId` (its counters cascade), inside the
 * caller's transaction, when the agent itself is deleted: a policy binding nothing would
 * outlive it, still listed, editable and counted against `limits.perTenant.policies`. The
 * operator's policies go too (as when a user is erased): the deletion runs under the operator's
 * scope, then `restore` (the caller's scope) comes back. Returns what went, for
 * {@link auditAgentPoliciesDeleted}: the caller writes those audit events last, after the other
 * rows it locks (the tenant's audit head is the last lock every writer takes).
 */
export async function removeAgentPolicies(
  db: ScopedDb,
  target: { readonly tenantId: string; readonly agentId: string; readonly restore: DatabaseScope },
): Promise<readonly { readonly id: string; readonly version: number }[]> {
  const { tenantId, agentId } = target;
  await sql.raw(renderScopeSwitch({ operator: true })).execute(db);
  const deleted = await db
    .deleteFrom('brigade.policies')
    .where('tenant_id', '=', tenantId)
    .where('level', '=', 'agent')
    .where('subject_id', '=', agentId)
    .returning(['id', 'version'])
    .execute();
  await sql.raw(renderScopeSwitch(target.restore)).execute(db);
  return deleted;
}

/** Writes `policy.deleted` for each policy {@link removeAgentPolicies} removed, by `principal`. */
export async function auditAgentPoliciesDeleted(
  db: ScopedDb,
  target: { readonly tenantId: string; readonly agentId: string; readonly principal: Principal },
  deleted: readonly { readonly id: string; readonly version: number }[],
): Promise<void> {
  const { tenantId, agentId, principal } = target;
  for (const policy of deleted)
    await writeAudit(db, {
      tenantId,
      principal,
      record: {
        action: 'policy.deleted',
        targetType: 'policy',
        targetId: policy.id,
        outcome: 'success',
        data: { level: 'agent', version: policy.version, reason: 'agent_deleted', agentId },
      },
    });
}
