import type { ContentPartV1, ProvenanceV1 } from '../../plugin-api/index.ts';

/** A configured agent of a tenant. */
export interface Agent {
  readonly id: string;
  readonly tenantId: string;
  readonly name: string;
  readonly description: string | null;
  readonly instructions: string;
  /** Model route or `provider:model`; `local` is the built-in offline model. */
  readonly model: string;
  readonly tools: readonly string[];
  readonly coreId: string;
  readonly maxSteps: number;
  readonly runTimeoutMs: number;
  readonly maxOutputTokens: number;
  /** Tools whose every call waits for the user's approval. */
  readonly approvalRequiredTools: readonly string[];
  /**
   * Tools whose calls need the calling user's `tool:<tool name>` consent, granted for every
   * agent (`*`) or this one; refused with `consent_required` otherwise.
   */
  readonly consentRequiredTools: readonly string[];
  /** Past this share of a budget binding the run, model calls go to the cheaper `model`. */
  readonly degradation: AgentDegradation | null;
  /** At the run's deadline: fail (`expired`), or complete with the partial answer. */
  readonly onDeadline: 'fail' | 'partial';
  /** How many of the thread's earlier messages a run sends to the model, newest (null: all that fit). */
  readonly historyMessages: number | null;
  readonly metadata: Readonly<Record<string, unknown>>;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** Graceful degradation of an agent as its budget runs out. */
export interface AgentDegradation {
  readonly atBudgetPercent: number;
  /** A cheaper model or route. */
  readonly model: string;
}

/** Fields an admin sets on an agent. */
export type AgentInput = Omit<Agent, 'id' | 'tenantId' | 'createdAt' | 'updatedAt'>;

/** A conversation owned by one user. */
export interface Thread {
  readonly id: string;
  readonly tenantId: string;
  readonly userId: string;
  readonly title: string | null;
  readonly metadata: Readonly<Record<string, unknown>>;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** A message of a thread. */
export interface Message {
  readonly id: string;
  readonly threadId: string;
  readonly runId: string | null;
  readonly seq: number;
  readonly role: 'user' | 'assistant' | 'tool' | 'system';
  readonly content: readonly ContentPartV1[];
  readonly provenance: ProvenanceV1;
  readonly inputTokens: number | null;
  readonly outputTokens: number | null;
  readonly createdAt: Date;
}

/** Lifecycle states of a run. */
export type RunStatus =
  | 'queued'
  | 'running'
  | 'requires_action'
  | 'completed'
  | 'failed'
  | 'cancelled'
  | 'expired';

/** What happens when a run is created on a thread that already has an active run. */
export type ConcurrencyStrategy = 'reject' | 'enqueue' | 'interrupt' | 'rollback';

/**
 * How urgently a run is claimed: inside one tenant, `interactive` runs are claimed before
 * `batch` runs (tenants still share capacity fairly, whatever their runs' priorities).
 */
export type RunPriority = 'interactive' | 'batch';

/** One execution of an agent on a thread. */
export interface Run {
  readonly id: string;
  readonly tenantId: string;
  readonly threadId: string;
  readonly userId: string;
  readonly agentId: string;
  readonly status: RunStatus;
  readonly strategy: ConcurrencyStrategy;
  readonly priority: RunPriority;
  /** The API key that created the run (null for a JWT login); usage is attributed to it. */
  readonly apiKeyId: string | null;
  /** Why a completed run's answer is partial (`deadline`), else null. */
  readonly incompleteReason: string | null;
  /** Whether its model calls went to the agent's degradation model. */
  readonly degraded: boolean;
  readonly errorCode: string | null;
  readonly errorMessage: string | null;
  /** A refusal's structured details (`budget_exceeded`, `quota_exceeded`), else null. */
  readonly errorDetails: Readonly<Record<string, unknown>> | null;
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly stepCount: number;
  readonly pendingAction: unknown;
  readonly createdAt: Date;
  /** When a scheduler first claimed the run; null until it started. */
  readonly firstClaimedAt: Date | null;
  readonly startedAt: Date | null;
  readonly completedAt: Date | null;
  readonly deadlineAt: Date | null;
}

/** A completed step of a run: a model call (`model:N`) or a tool call (`tool:<callId>`). */
export interface RunStep {
  readonly key: string;
  readonly type: 'model' | 'tool';
  /** The checkpoint: the model's result, or the tool's outcome. */
  readonly output: unknown;
  readonly createdAt: Date;
  /** A tool step's call, when it waited for the user's approval: how that was decided. */
  readonly approval?: StepApproval;
}

/** The approval a tool step waited for: its decision, and the arguments an edit ran with. */
export interface StepApproval {
  readonly id: string;
  readonly status: 'pending' | 'approved' | 'rejected' | 'expired';
  /** Set when the user edited the call's arguments: what the tool ran with. */
  readonly editedInput?: unknown;
}

/** A persisted run event, as streamed over SSE. */
export interface RunEvent {
  readonly runId: string;
  readonly seq: number;
  readonly type: string;
  readonly data: Readonly<Record<string, unknown>>;
  readonly createdAt: Date;
}
