import type { Selectable } from 'kysely';
import type { AgentStore } from '../../domain/agents/agent-service.ts';
import type { Agent, AgentInput } from '../../domain/agents/agent-types.ts';
import { auditAgentPoliciesDeleted, removeAgentPolicies } from '../guards/subject-policies.ts';
import { writeAudit } from '../identity/audit-writer.ts';
import { scopeFor } from '../identity/scope-for.ts';
import { toPage } from '../identity/tenant-user-store.ts';
import type { Database } from '../postgres/database.ts';
import type { AgentsTable } from '../postgres/database-schema.ts';
import { assertCapacity, type TenantCapacity } from '../postgres/tenant-capacity.ts';
import { auditApprovalExpired } from '../runs/approval-expiry.ts';
import { agentDeletedReason, lockAgent, releaseParkedRunsOf } from '../runs/parked-runs.ts';

/** Maps an agents row. */
export function toAgent(row: Selectable<AgentsTable>): Agent {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    name: row.name,
    description: row.description,
    instructions: row.instructions,
    model: row.model,
    tools: row.tools,
    coreId: row.core_id,
    maxSteps: row.max_steps,
    runTimeoutMs: row.run_timeout_ms,
    maxOutputTokens: row.max_output_tokens,
    approvalRequiredTools: row.approval_required_tools,
    consentRequiredTools: row.consent_required_tools,
    degradation:
      row.degrade_at_percent === null || row.degrade_model === null
        ? null
        : { atBudgetPercent: row.degrade_at_percent, model: row.degrade_model },
    onDeadline: row.on_deadline,
    historyMessages: row.history_messages,
    metadata: row.metadata as Record<string, unknown>,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function toColumns(input: Partial<AgentInput>) {
  return {
    ...(input.name === undefined ? {} : { name: input.name }),
    ...(input.description === undefined ? {} : { description: input.description }),
    ...(input.instructions === undefined ? {} : { instructions: input.instructions }),
    ...(input.model === undefined ? {} : { model: input.model }),
    ...(input.tools === undefined ? {} : { tools: [...input.tools] }),
    ...(input.coreId === undefined ? {} : { core_id: input.coreId }),
    ...(input.maxSteps === undefined ? {} : { max_steps: input.maxSteps }),
    ...(input.runTimeoutMs === undefined ? {} : { run_timeout_ms: input.runTimeoutMs }),
    ...(input.maxOutputTokens === undefined ? {} : { max_output_tokens: input.maxOutputTokens }),
    ...(input.metadata === undefined ? {} : { metadata: JSON.stringify(input.metadata) }),
    ...(input.approvalRequiredTools === undefined
      ? {}
      : { approval_required_tools: [...input.approvalRequiredTools] }),
    ...(input.consentRequiredTools === undefined
      ? {}
      : { consent_required_tools: [...input.consentRequiredTools] }),
    ...(input.degradation === undefined
      ? {}
      : {
          degrade_at_percent: input.degradation?.atBudgetPercent ?? null,
          degrade_model: input.degradation?.model ?? null,
        }),
    ...(input.onDeadline === undefined ? {} : { on_deadline: input.onDeadline }),
    ...(input.historyMessages === undefined ? {} : { history_messages: input.historyMessages }),
  };
}

/** The PostgreSQL {@link AgentStore}. */
export function createAgentStore(database: Database, capacity?: TenantCapacity): AgentStore {
  return {
    create(principal, input) {
      return database.withScope(scopeFor(principal), async (db) => {
        if (capacity !== undefined)
          await assertCapacity(db, {
            resource: 'agents',
            tenantId: principal.tenantId,
            max: capacity.agents,
          });
        const now = new Date();
        const row = await db
          .insertInto('brigade.agents')
          .values({
            tenant_id: principal.tenantId,
            name: input.name,
            description: input.description,
            instructions: input.instructions,
            model: input.model,
            tools: [...input.tools],
            core_id: input.coreId,
            max_steps: input.maxSteps,
            run_timeout_ms: input.runTimeoutMs,
            max_output_tokens: input.maxOutputTokens,
            approval_required_tools: [...input.approvalRequiredTools],
            consent_required_tools: [...input.consentRequiredTools],
            degrade_at_percent: input.degradation?.atBudgetPercent ?? null,
            degrade_model: input.degradation?.model ?? null,
            on_deadline: input.onDeadline,
            history_messages: input.historyMessages,
            metadata: JSON.stringify(input.metadata),
            created_by_user_id: principal.userId,
            created_at: now,
            updated_at: now,
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        await writeAudit(db, {
          tenantId: principal.tenantId,
          principal,
          record: {
            action: 'agent.created',
            targetType: 'agent',
            targetId: row.id,
            outcome: 'success',
            data: { name: row.name },
          },
        });
        return toAgent(row);
      });
    },
    list(principal, page) {
      return database.withScope(scopeFor(principal), async (db) => {
        let query = db
          .selectFrom('brigade.agents')
          .selectAll()
          .where('tenant_id', '=', principal.tenantId)
          .orderBy('id')
          .limit(page.limit + 1);
        if (page.after !== undefined) query = query.where('id', '>', page.after);
        return toPage((await query.execute()).map(toAgent), page.limit);
      });
    },
    get(principal, agentId) {
      return database.withScope(scopeFor(principal), async (db) => {
        const row = await db
          .selectFrom('brigade.agents')
          .selectAll()
          .where('tenant_id', '=', principal.tenantId)
          .where('id', '=', agentId)
          .executeTakeFirst();
        return row === undefined ? undefined : toAgent(row);
      });
    },
    update(principal, agentId, patch) {
      return database.withScope(scopeFor(principal), async (db) => {
        const row = await db
          .updateTable('brigade.agents')
          .set({ ...toColumns(patch), updated_at: new Date() })
          .where('tenant_id', '=', principal.tenantId)
          .where('id', '=', agentId)
          .returningAll()
          .executeTakeFirst();
        if (row === undefined) return undefined;
        await writeAudit(db, {
          tenantId: principal.tenantId,
          principal,
          record: {
            action: 'agent.updated',
            targetType: 'agent',
            targetId: agentId,
            outcome: 'success',
            data: { fields: Object.keys(patch) },
          },
        });
        return toAgent(row);
      });
    },
    delete(principal, agentId) {
      const scope = scopeFor(principal);
      return database.withScope(scope, async (db) => {
        // Locks in the order the run paths take them: the agent's advisory lock (a run about
        // to park waits for it), the agent, its policies' counters (cascading), the approvals
        // and runs of its parked runs, and the tenant's audit head last (every audit event).
        await lockAgent(db, { agentId, shared: false });
        const result = await db
          .deleteFrom('brigade.agents')
          .where('tenant_id', '=', principal.tenantId)
          .where('id', '=', agentId)
          .executeTakeFirst();
        if (result.numDeletedRows === 0n) return false;
        const target = { tenantId: principal.tenantId, agentId, principal, restore: scope };
        // Its policies go with it; its runs waiting for an approval end as its queued runs do.
        const policies = await removeAgentPolicies(db, target);
        const released = await releaseParkedRunsOf(db, target);
        await auditAgentPoliciesDeleted(db, target, policies);
        for (const approval of released.approvals)
          await auditApprovalExpired(db, approval, agentDeletedReason);
        const policiesDeleted = policies.length;
        const parkedRunsReleased = released.runs;
        await writeAudit(db, {
          tenantId: principal.tenantId,
          principal,
          record: {
            action: 'agent.deleted',
            targetType: 'agent',
            targetId: agentId,
            outcome: 'success',
            data: { policiesDeleted, parkedRunsReleased },
          },
        });
        return true;
      });
    },
  };
}
