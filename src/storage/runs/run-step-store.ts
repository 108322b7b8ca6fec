import type { RunStep } from '../../domain/agents/agent-types.ts';
import type { ThreadRunPorts } from '../../domain/agents/thread-service.ts';
import { scopeFor } from '../identity/scope-for.ts';
import type { Database } from '../postgres/database.ts';

/** The PostgreSQL run-steps port: a run's checkpoints, readable only in its user's scope. */
export function createRunStepStore(database: Database): NonNullable<ThreadRunPorts['runSteps']> {
  return {
    list(principal, threadId, runId) {
      return database.withScope(scopeFor(principal), async (db) => {
        const run = await db
          .selectFrom('brigade.runs')
          .select('id')
          .where('id', '=', runId)
          .where('thread_id', '=', threadId)
          .executeTakeFirst();
        if (run === undefined) return undefined;
        const rows = await db
          .selectFrom('brigade.run_steps')
          .select(['step_key', 'kind', 'output', 'created_at'])
          .where('tenant_id', '=', principal.tenantId)
          .where('run_id', '=', runId)
          .orderBy('created_at')
          .orderBy('step_key')
          .execute();
        // The approvals its tool calls waited for (a call asks again after an outdated
        // approval: the last one decided it).
        const approvals = await db
          .selectFrom('brigade.approvals')
          .select(['id', 'tool_call_id', 'status', 'decision', 'edited_arguments'])
          .where('tenant_id', '=', principal.tenantId)
          .where('run_id', '=', runId)
          .orderBy('created_at')
          .execute();
        const byCall = new Map(approvals.map((row) => [`tool:${row.tool_call_id}`, row]));
        return rows.map((row): RunStep => {
          const approval = row.kind === 'tool' ? byCall.get(row.step_key) : undefined;
          return {
            key: row.step_key,
            type: row.kind,
            output: row.output,
            createdAt: row.created_at,
            ...(approval === undefined
              ? {}
              : {
                  approval: {
                    id: approval.id,
                    status: approval.status,
                    ...(approval.decision === 'edit'
                      ? { editedInput: approval.edited_arguments }
                      : {}),
                  },
                }),
          };
        });
      });
    },
  };
}
