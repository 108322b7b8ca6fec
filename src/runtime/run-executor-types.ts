/** The run executor's contract: what it is given, what it executes, and how it is called. */
import type { UserPrincipal } from '../domain/identity/principal.ts';
import type { HttpToolDefinition } from '../domain/tools/tool-types.ts';
import type { Tracing } from '../observability/tracing.ts';
import type { CorePluginV1 } from '../plugin-api/index.ts';
import type { Database } from '../storage/postgres/database.ts';
import type { SuccessorClaim } from '../storage/runs/run-checkpoints.ts';
import type { RunSignalSink } from '../storage/runs/run-rows.ts';
import type { ArgumentsHasher } from '../storage/tools/arguments-hasher.ts';
import type { EventBatcher } from './event-batcher.ts';
import type { MeteredGateway } from './metered-gateway.ts';
import type { RunMemoryOptions } from './run-memory.ts';
import type { createStepRecorder } from './run-steps.ts';
import type { PiiKind } from './tools/pii-redaction.ts';
import type { ToolDefinition } from './tools/tool-registry.ts';

/**
 * Why a run's execution was aborted. `claim-lost`: its claim went stale and another process
 * resumed the run (its heartbeat found out, see run-scheduler.ts, or the claim fence refused a
 * write, see storage/runs/run-claim.ts): this process stops without writing anything.
 */
export type AbortReason = 'cancel' | 'timeout' | 'shutdown' | 'claim-lost';

/** A claimed run to execute. */
export interface RunClaim {
  readonly runId: string;
  readonly tenantId: string;
  readonly userId: string;
  /**
   * The scheduler that claimed it: every write of the execution is fenced with it (migration
   * 0042), and a failure is recorded only while it still holds the claim. Undefined: not fenced.
   */
  readonly executorId?: string | undefined;
  /** The run's thread, once its execution loaded it (spans carry it). */
  readonly threadId?: string | undefined;
}

/** Minimal logger the executor writes to. */
export interface ExecutorLogger {
  info(object: object, message: string): void;
  warn(object: object, message: string): void;
  error(object: object, message: string): void;
}

/** Options for {@link createRunExecutor}. */
export interface RunExecutorOptions {
  readonly database: Database;
  /** One `invoke_agent` span per execution, with model and tool spans inside. */
  readonly tracing?: Tracing | undefined;
  /** Every model call: budgets reserved and settled, usage recorded. */
  readonly gateway: MeteredGateway;
  /** Counts a tool call against the daily tool-call quotas (throws `quota_exceeded`). */
  readonly consumeToolQuota?: Parameters<typeof createStepRecorder>[0]['consumeToolQuota'];
  /** Resolves budget reservations a dead process left open for this run. */
  readonly resolveOrphans?: (claim: RunClaim) => Promise<number>;
  readonly tools: readonly ToolDefinition[];
  /** Builds an executable tool from a tenant's HTTP tool definition. */
  readonly tenantTool?: (definition: HttpToolDefinition) => ToolDefinition;
  /**
   * Tools of the tenant's MCP servers for the `mcp:<server>:<tool>` names an agent lists (see
   * tools/mcp-tools.ts); they pass the same gate as every other tool.
   */
  readonly mcpTools?: (request: {
    readonly claim: RunClaim;
    readonly actor: UserPrincipal | undefined;
    readonly names: readonly string[];
    /** The run's: aborted when it is cancelled. */
    readonly signal: AbortSignal;
  }) => Promise<readonly ToolDefinition[]>;
  /**
   * The kill switches in force now for an agent (a short-lived cache: see
   * tool-block-cache.ts). The gate asks before every tool call, so a switch set while a run
   * executes stops its next call; without it only the switches read when the run started or
   * resumed apply.
   */
  readonly blockedTools?: (subject: {
    readonly tenantId: string;
    readonly agentId: string;
  }) => Promise<ReadonlySet<string>>;
  /** Decrypts a credential of the run's user for one tool call (the vault). */
  readonly resolveCredential?: Parameters<typeof createStepRecorder>[0]['resolveCredential'];
  /** Hosts markdown links and images in assistant text may point to (the output guard). */
  readonly allowedLinkHosts?: readonly string[];
  /** Personal data the output guard redacts from answers (`tools.outputGuard.redactPii`). */
  readonly redactPii?: readonly PiiKind[];
  readonly cores: ReadonlyMap<string, CorePluginV1>;
  /** Thread and long-term memory for cores (`context.memory`); without it cores get none. */
  readonly memory?: RunMemoryOptions;
  /** The tool gate's consent check (the consent service): tools that need consent. */
  readonly requireConsent?: Parameters<typeof createStepRecorder>[0]['requireConsent'];
  /**
   * The context window (tokens) a run's prompt on `model` must fit, when known: older messages
   * of a long thread are then left out (see history-window.ts). Without it only the agent's
   * `historyMessages` limit applies.
   */
  readonly contextWindow?: (model: string, tenantId: string) => Promise<number | undefined>;
  readonly logger: ExecutorLogger;
  /** Wakes readers and schedulers after commits. */
  readonly signals: RunSignalSink;
  /** How long buffered events (deltas) may wait before a write; grows with load. */
  readonly eventFlushMs?: () => number;
  /** Writes flushed events of all runs together (see event-batcher.ts). */
  readonly eventBatcher?: EventBatcher;
  /** How long tool output may be, in characters of JSON, before it is cut. */
  readonly toolOutputLimit?: number;
  readonly toolTimeoutMs?: number;
  readonly approvalTtlMs?: number;
  /**
   * Hashes tool-call arguments for `tool.called` and approvals: keyed per tenant with a vault
   * key (storage/tools/arguments-hasher.ts), plain SHA-256 without one.
   */
  readonly argumentsHasher: ArgumentsHasher;
  /** Run outcomes and queue waits for `/metrics` (ids never become labels). */
  readonly metrics?: {
    recordRunOutcome(outcome: 'completed' | 'failed' | 'cancelled' | 'expired'): void;
    observeQueueWait(seconds: number): void;
  };
}

/** Executes one run to a terminal state (or until aborted for shutdown). */
export interface RunExecutor {
  /**
   * Executes a claimed run to its end (or until it parks for an approval). With `successors`,
   * the call that ends the run also claims the runs that take its slot (migration 0024).
   */
  execute(claim: RunClaim, controller: AbortController, successors?: SuccessorClaim): Promise<void>;
}
