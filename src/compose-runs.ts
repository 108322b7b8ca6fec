import type { composeTools } from './compose-tools.ts';
import type { Config } from './config/index.ts';
import type { AgentService } from './domain/agents/agent-service.ts';
import { createThreadService } from './domain/agents/thread-service.ts';
import { createConsentService } from './domain/consent/consent-service.ts';
import { NotFoundError } from './domain/errors.ts';
import { createMemoryService } from './domain/memory/memory-service.ts';
import { parseMcpToolName } from './domain/tools/mcp-types.ts';
import type { ModelGateway } from './gateway/model-gateway.ts';
import type { Logger } from './observability/index.ts';
import type { Metrics } from './observability/metrics.ts';
import type { Tracing } from './observability/tracing.ts';
import type { CorePluginV1 } from './plugin-api/index.ts';
import { createApprovalExpirySweeper } from './runtime/approval-expiry-sweeper.ts';
import { createEventBatcher } from './runtime/event-batcher.ts';
import { contextWindowFor } from './runtime/history-window.ts';
import type { MeteredGateway } from './runtime/metered-gateway.ts';
import { createRunExecutor } from './runtime/run-executor.ts';
import { createRunScheduler } from './runtime/run-scheduler.ts';
import { createRunSignals } from './runtime/run-signals.ts';
import { createMcpStdioCloser } from './runtime/tools/mcp-stdio-closer.ts';
import { createTenantHttpTool } from './runtime/tools/tenant-http-tool.ts';
import { validateToolInput } from './runtime/tools/tool-registry.ts';
import { createThreadStore } from './storage/agents/thread-store.ts';
import { createConsentStore } from './storage/consent/consent-store.ts';
import type { BudgetStore } from './storage/guards/budget-store.ts';
import { createMemoryStore } from './storage/memory/memory-store.ts';
import type { Storage } from './storage/open-storage.ts';
import { createApprovalExpiryStore } from './storage/runs/approval-expiry.ts';
import { createApprovalStore } from './storage/runs/approval-store.ts';
import { cancelRunsOf } from './storage/runs/run-cancellation.ts';
import { createRunStepStore } from './storage/runs/run-step-store.ts';
import { createRunStore } from './storage/runs/run-store.ts';

/**
 * Part of the composition root (main.ts): threads and runs — the cross-process run signals,
 * the run store with claim on arrival, approvals and their expiry sweep, and the scheduler
 * with its executor (checkpointed, metered model calls, gated tool calls, and the memory cores
 * keep, with the consents that long-term memory needs). `endAccess` ends what a disabled or
 * erased user (or a suspended tenant) has under way, in every process: their runs, then their
 * stdio MCP server processes (`mcpStdioCloser`, which also closes those of a changed
 * credential or a deleted registration).
 */
export function composeRuns(options: {
  readonly config: Config;
  readonly storage: Storage;
  readonly logger: Logger;
  readonly tracing: Tracing;
  readonly metered: MeteredGateway;
  /** The model gateway: the context windows of a run's model (the history window). */
  readonly gateway: Pick<ModelGateway, 'deployments'>;
  readonly budgets: BudgetStore;
  readonly toolRuntime: ReturnType<typeof composeTools>;
  readonly cores: ReadonlyMap<string, CorePluginV1>;
  readonly metrics: Metrics;
  /** The agents a consent's scope may name. */
  readonly agents: Pick<AgentService, 'get'>;
}) {
  const { config, storage, logger, tracing, metered, budgets, cores, metrics } = options;
  const {
    tools,
    egress,
    toolStore,
    toolBlocks,
    mcpTools,
    resolveCredential,
    argumentsHasher,
    mcpStdio,
    mcpServerStore,
  } = options.toolRuntime;
  const signals = createRunSignals({
    connectionString: storage.runtimeConnection.url,
    // The embedded database has one server process (its data directory's lock refuses a
    // second; the CLI's admin commands that share it touch no runs, and `users delete`
    // refuses to run beside it): nobody to signal.
    crossProcess: storage.embedded === undefined,
    onError: (error) =>
      logger.warn({ err: { message: error.message } }, 'run signal connection failed'),
  });
  const mcpStdioCloser = createMcpStdioCloser({ pool: mcpStdio, signals });
  const endAccess = async (subject: {
    readonly tenantId: string;
    readonly userId?: string;
    readonly reason: string;
  }) => {
    try {
      // Runs first: a run's cancel is signalled before the close (in order, on one connection),
      // so no call of a cancelled run starts a process again after it.
      return await cancelRunsOf(storage.database, signals, subject);
    } finally {
      mcpStdioCloser.close(
        subject.userId === undefined
          ? { tenantId: subject.tenantId }
          : { tenantId: subject.tenantId, userId: subject.userId },
        subject.reason,
      );
    }
  };
  const threads = createThreadService({
    threads: createThreadStore(storage.database, signals),
    runSteps: createRunStepStore(storage.database),
    runs: createRunStore(storage.database, signals, {
      maxQueuedPerTenant: config.runs.maxQueuedPerTenant,
      staleAfterMs: config.runs.staleAfterMs,
      // A run created while this process has a free slot is claimed by its create.
      arrivals: (owner) => scheduler.arrival(owner),
      // The creating request's span: the run's executions are its children.
      traceParent: () => tracing.traceParent(),
    }),
  });
  const consents = createConsentService({
    store: createConsentStore(storage.database),
    targets: {
      // Only "no such agent" is a no: a database outage stays a 503, not the client's 422.
      agentUsable: (principal, agentId) =>
        options.agents.get(principal, agentId).then(
          () => true,
          (error: unknown) => {
            if (error instanceof NotFoundError) return false;
            throw error;
          },
        ),
      async toolExists(tenantId, toolName) {
        if (tools.some((tool) => tool.name === toolName)) return true;
        const mcp = parseMcpToolName(toolName);
        if (mcp !== undefined) return (await mcpServerStore.names(tenantId)).includes(mcp.server);
        return (await toolStore.names(tenantId)).includes(toolName);
      },
    },
  });
  const memoryStore = createMemoryStore(storage.database);
  const memories = createMemoryService({ store: memoryStore });
  const approvals = createApprovalStore({
    database: storage.database,
    signals,
    argumentsHasher,
    validateArguments: async (toolName, input, tenantId) => {
      const tool = tools.find((candidate) => candidate.name === toolName);
      if (tool !== undefined) return validateToolInput(tool.inputSchema, input);
      if (toolName.startsWith('mcp:')) {
        const mcpSchema = mcpTools.schemaOf(tenantId, toolName);
        return mcpSchema === undefined
          ? [`the tool list of '${toolName}' is not loaded; retry after the run resumes`]
          : validateToolInput(mcpSchema, input);
      }
      const schema = await toolStore.schemaOf(tenantId, toolName);
      return schema === undefined
        ? [`unknown tool '${toolName}'`]
        : validateToolInput(schema, input);
    },
  });
  // Approvals nobody decided in time: expired, audited, and their runs resumed (every process
  // sweeps; skip-locked claims keep two from handling one run).
  const approvalSweeper = createApprovalExpirySweeper({
    store: createApprovalExpiryStore({ database: storage.database, signals }),
    pollMs: config.runs.approvalSweepMs,
    logger,
  });
  // Streaming deltas are written in batches; with many runs streaming at once the batches
  // grow (up to 1 s) so event writes stay near 400 transactions a second per process.
  const eventFlushMs = () => Math.min(1_000, Math.max(50, scheduler.active * 2.5));
  const scheduler = createRunScheduler({
    database: storage.schedulerDatabase,
    executor: createRunExecutor({
      database: storage.database,
      tracing,
      gateway: metered,
      contextWindow: async (model, tenantId) =>
        contextWindowFor(await options.gateway.deployments(model, tenantId)),
      consumeToolQuota: (claim, { agentId, keyId }) =>
        budgets.consumeQuota(
          { tenantId: claim.tenantId, userId: claim.userId, agentId, keyId },
          'tool_calls',
        ),
      resolveOrphans: (claim) =>
        budgets.resolveRunReservations({
          tenantId: claim.tenantId,
          userId: claim.userId,
          runId: claim.runId,
        }),
      tools,
      tenantTool: (definition) =>
        createTenantHttpTool({
          definition,
          egress,
          defaultTimeoutMs: config.tools.tenantHttp.maxTimeoutMs,
          defaultMaxResponseChars: config.tools.tenantHttp.maxResponseChars,
        }),
      mcpTools: (request) => mcpTools.toolsFor(request),
      blockedTools: (subject) => toolBlocks.blockedFor(subject),
      resolveCredential,
      allowedLinkHosts: config.tools.outputGuard.allowedLinkHosts,
      redactPii: config.tools.outputGuard.redactPii,
      approvalTtlMs: config.runs.approvalTtlSeconds * 1_000,
      argumentsHasher,
      cores,
      requireConsent: (subject, purpose, scope) => consents.requireConsent(subject, purpose, scope),
      memory: {
        store: memoryStore,
        requireLongTermConsent: (subject) => consents.requireConsent(subject, 'long_term_memory'),
        maxEntriesPerUser: config.memory.maxEntriesPerUser,
      },
      logger,
      signals,
      eventFlushMs,
      eventBatcher: createEventBatcher(storage.database),
      metrics,
    }),
    logger,
    signals,
    concurrency: config.runs.concurrency,
    pollIntervalMs: config.runs.pollIntervalMs,
    staleAfterMs: config.runs.staleAfterMs,
    maxConcurrentPerTenant: config.runs.maxConcurrentPerTenant,
    maxConcurrentPerUser: config.runs.maxConcurrentPerUser,
  });
  return {
    signals,
    threads,
    approvals,
    approvalSweeper,
    scheduler,
    consents,
    memories,
    endAccess,
    mcpStdioCloser,
  };
}
