import type { Selectable } from 'kysely';
import type { Run, RunEvent } from '../../domain/agents/agent-types.ts';
import type { RunEventsTable, RunsTable } from '../postgres/database-schema.ts';

/** Maps a runs row. */
export function toRun(row: Selectable<RunsTable>): Run {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    threadId: row.thread_id,
    userId: row.user_id,
    agentId: row.agent_id,
    status: row.status,
    strategy: row.strategy,
    priority: row.priority,
    errorCode: row.error_code,
    errorMessage: row.error_message,
    errorDetails: row.error_details ?? null,
    inputTokens: row.input_tokens,
    outputTokens: row.output_tokens,
    stepCount: row.step_count,
    pendingAction: row.pending_action,
    createdAt: row.created_at,
    firstClaimedAt: row.first_claimed_at ?? null,
    apiKeyId: row.api_key_id ?? null,
    incompleteReason: row.incomplete_reason ?? null,
    degraded: row.degraded ?? false,
    startedAt: row.started_at,
    completedAt: row.completed_at,
    deadlineAt: row.deadline_at,
  };
}

/** Maps a run_events row. */
export function toRunEvent(row: Selectable<RunEventsTable>): RunEvent {
  return {
    runId: row.run_id,
    seq: row.seq,
    type: row.type,
    data: row.data as Record<string, unknown>,
    createdAt: row.created_at,
  };
}

/**
 * A new run's first event, as both create paths commit it (`create_run`, migration 0016, and
 * the transaction in run-store.ts): seq 1, `run-queued`, its data in jsonb's key order.
 */
export function queuedEvent(run: Run): RunEvent {
  return {
    runId: run.id,
    seq: 1,
    type: 'run-queued',
    data: { runId: run.id, agentId: run.agentId, threadId: run.threadId },
    createdAt: run.createdAt,
  };
}

/** NOTIFY channel that wakes stream readers when a run has new events (payload: run id). */
export const runEventsChannel = 'brigade_run_events';
/** NOTIFY channel that wakes schedulers when a run was queued. */
export const runQueueChannel = 'brigade_run_queue';
/** NOTIFY channel asking the process executing a run to abort it (payload: run id). */
export const runCancelChannel = 'brigade_run_cancel';
/**
 * NOTIFY channel asking every process to drop its own copies of cached model answers (payload:
 * a cache key prefix, `<tenant>/<user>/` or `<tenant>/shared/`): an erasure purged them here.
 */
export const cachePurgeChannel = 'brigade_cache_purge';
/**
 * NOTIFY channel asking every process to close the stdio MCP server processes it pools for a
 * user whose access ended or a credential that changed (payload: a target,
 * `<tenant>/<user>/<credential name>/<registration>`, absent parts empty).
 */
export const mcpStdioCloseChannel = 'brigade_mcp_stdio_close';
/**
 * NOTIFY channel telling every process that signals it should have heard were dropped (a
 * process had more waiting to send than it keeps): it checks again, as after reconnecting.
 */
export const resyncChannel = 'brigade_resync';

/** Events one transaction committed for a run, in sequence order, and whose run it is. */
export interface CommittedEvents {
  readonly userId: string;
  readonly events: readonly RunEvent[];
}

/**
 * Where stores report changes after their transaction commits: the runtime wakes local
 * readers at once and tells other processes with batched NOTIFYs (a NOTIFY inside every
 * writing transaction would serialise all their commits on PostgreSQL's notify lock).
 */
export interface RunSignalSink {
  /**
   * A run changed. `committed`: the events this process just committed for it, which local
   * streams of the run's user may send without reading them back (see RunSubscription.take).
   */
  runChanged(runId: string, committed?: CommittedEvents): void;
  /**
   * The queue changed: wakes the schedulers of every process, or with `remoteOnly` those of
   * the other processes (this one already claimed what it could).
   */
  queueChanged(options?: { readonly remoteOnly?: boolean }): void;
  cancelRequested(runId: string): void;
}
