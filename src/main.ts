import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdaptorServer, type ServerType } from '@hono/node-server';
import { Redis } from 'ioredis';
import type { Config } from './config/index.ts';
import { createAgentService } from './domain/agents/agent-service.ts';
import { createThreadService } from './domain/agents/thread-service.ts';
import { createAuditSigner } from './domain/audit/audit-signing.ts';
import { createConsentService } from './domain/consent/consent-service.ts';
import { createPolicyService } from './domain/guards/policy-service.ts';
import { createUsageService } from './domain/guards/usage-service.ts';
import { hashSecret } from './domain/identity/api-key-secret.ts';
import { createIdentityService } from './domain/identity/identity-service.ts';
import { createModelGateway } from './gateway/model-gateway.ts';
import type { ModelRouteDefinition } from './gateway/model-routes.ts';
import { createPriceTable } from './gateway/pricing.ts';
import { createMemoryCacheStore, createRedisCacheStore } from './gateway/response-cache-store.ts';
import { createApp } from './http/app.ts';
import type { BrigadeApp } from './http/app-env.ts';
import { createAuthenticator } from './http/auth/authenticator.ts';
import { createJwtVerifier } from './http/auth/jwt-verifier.ts';
import { accessLog } from './http/middleware/access-log.ts';
import type { Logger } from './observability/index.ts';
import { createMetrics, type Metrics } from './observability/metrics.ts';
import { createTracing } from './observability/tracing.ts';
import type { CorePluginV1 } from './plugin-api/index.ts';
import { createAgentValidator } from './runtime/agent-validator.ts';
import { createApprovalExpirySweeper } from './runtime/approval-expiry-sweeper.ts';
import { createAuditCheckpointer } from './runtime/audit-checkpointer.ts';
import { createCachingGateway } from './runtime/cached-gateway.ts';
import { createContentCapturePolicy } from './runtime/content-capture.ts';
import { toolLoopCore } from './runtime/cores/tool-loop-core.ts';
import { createCredentialService } from './runtime/credential-service.ts';
import { createEventBatcher } from './runtime/event-batcher.ts';
import { createMcpServerService } from './runtime/mcp-server-service.ts';
import { createMeteredGateway } from './runtime/metered-gateway.ts';
import { createModelCallLimits } from './runtime/model-call-limits.ts';
import { createModelRouteService } from './runtime/model-route-service.ts';
import { createPolicyCache } from './runtime/policy-cache.ts';
import { createRequestLimiter } from './runtime/request-limiter.ts';
import { createRunExecutor } from './runtime/run-executor.ts';
import { createRunScheduler } from './runtime/run-scheduler.ts';
import { createRunSignals } from './runtime/run-signals.ts';
import { createToolBlockCache } from './runtime/tool-block-cache.ts';
import { createToolService } from './runtime/tool-service.ts';
import { createHttpRequestTool } from './runtime/tools/http-request-tool.ts';
import { createMcpStdioPool } from './runtime/tools/mcp-stdio-pool.ts';
import { createMcpToolProvider } from './runtime/tools/mcp-tools.ts';
import { createOAuthTokenClient } from './runtime/tools/oauth-token-client.ts';
import { createTenantHttpTool } from './runtime/tools/tenant-http-tool.ts';
import { builtInTools, validateToolInput } from './runtime/tools/tool-registry.ts';
import { createTtlCache } from './runtime/ttl-cache.ts';
import { createWebhookWorker } from './runtime/webhooks/webhook-worker.ts';
import { createAgentStore } from './storage/agents/agent-store.ts';
import { createThreadStore } from './storage/agents/thread-store.ts';
import { loadAuditSigningKey } from './storage/audit-signing-key.ts';
import { bootstrapOperatorKey } from './storage/bootstrap-operator-key.ts';
import { createConsentStore } from './storage/consent/consent-store.ts';
import { createBudgetStore } from './storage/guards/budget-store.ts';
import { createPolicyStore, loadTenantPolicies } from './storage/guards/policy-store.ts';
import { createUsageStore } from './storage/guards/usage-store.ts';
import { createAuditCheckpointStore } from './storage/identity/audit-checkpoint-store.ts';
import { createAuditStore } from './storage/identity/audit-store.ts';
import { createIdentityStore } from './storage/identity/identity-store.ts';
import { openStorage, type Storage } from './storage/open-storage.ts';
import { createModelRouteStore, loadTenantRoutes } from './storage/routes/model-route-store.ts';
import { createApprovalExpiryStore } from './storage/runs/approval-expiry.ts';
import { createApprovalStore } from './storage/runs/approval-store.ts';
import { createRunStore } from './storage/runs/run-store.ts';
import { createCredentialStore } from './storage/tools/credential-store.ts';
import { createMcpServerStore } from './storage/tools/mcp-server-store.ts';
import { createToolStore } from './storage/tools/tool-store.ts';
import { createSpanStore } from './storage/tracing/span-store.ts';
import { loadVaultKeySource } from './storage/vault-key-provider.ts';
import { createWebhookStore } from './storage/webhooks/webhook-store.ts';

/** Brigade's version, reported by `/healthz` and the OpenAPI document. */
export const version = '0.1.0';

/** A composed Brigade instance: app, storage and lifecycle. */
export interface Brigade {
  readonly app: BrigadeApp;
  readonly storage: Storage;
  /** The operator key generated at this start, if one was (print it once, never log it). */
  readonly generatedOperatorKey: string | undefined;
  /** Prometheus metrics of this process (served at `/metrics`). */
  readonly metrics: Metrics;
  /** Signs audit checkpoints (also run every `audit.checkpoints.pollMs`). */
  readonly auditCheckpointer: { runOnce(): Promise<number> };
  /** Starts listening; resolves with the bound URL. */
  listen(): Promise<string>;
  /**
   * Stops gracefully: readiness turns false, the listener closes, in-flight requests get
   * `shutdownGraceMs` to finish, then connections are closed and storage stops.
   */
  stop(): Promise<void>;
}

/** Options for {@link createBrigade}. */
export interface CreateBrigadeOptions {
  readonly config: Config;
  readonly logger: Logger;
  /** Agent cores besides the built-in `tool-loop`, by their `id` (see docs/writing-a-core.md). */
  readonly cores?: readonly CorePluginV1[];
}

/** The composition root: config → storage → services → HTTP. The only place that wires. */
export async function createBrigade(options: CreateBrigadeOptions): Promise<Brigade> {
  const { config, logger } = options;
  const storage = await openStorage({ config, logger });
  let generatedOperatorKey: string | undefined;
  let signingKey: Awaited<ReturnType<typeof loadAuditSigningKey>>;
  let vaultKeys: Awaited<ReturnType<typeof loadVaultKeySource>>;
  try {
    if (config.operatorKey === undefined)
      generatedOperatorKey = await bootstrapOperatorKey(storage.ownerUrl);
    signingKey = await loadAuditSigningKey({
      configured: config.audit.signingKey,
      keyFile: config.audit.signingKeyFile,
    });
    vaultKeys = await loadVaultKeySource({ vault: config.vault });
  } catch (error) {
    await storage.close().catch(() => undefined);
    throw error;
  }
  const metrics = createMetrics();
  const auditSigner = signingKey === undefined ? undefined : createAuditSigner(signingKey);
  if (auditSigner === undefined)
    logger.warn(
      {},
      'no audit signing key (BRIGADE_AUDIT_SIGNING_KEY): audit checkpoints are not written',
    );
  else logger.info({ keyId: auditSigner.publicKey.keyId }, 'audit checkpoints are signed');
  const auditCheckpoints = createAuditCheckpointStore(storage.database, auditSigner);
  const auditCheckpointer = createAuditCheckpointer({
    store: auditCheckpoints,
    due: {
      everyEvents: config.audit.checkpoints.everyEvents,
      intervalSeconds: config.audit.checkpoints.intervalSeconds,
    },
    pollMs: config.audit.checkpoints.pollMs,
    logger,
  });
  const store = createIdentityStore(storage.database);
  const identity = createIdentityService({ store });
  const authenticator = createAuthenticator({
    store,
    jwt: createJwtVerifier({
      jwksCacheMs: config.auth.jwksCacheMs,
      clockToleranceSeconds: config.auth.jwtClockToleranceSeconds,
    }),
    environmentOperatorKeyHash:
      config.operatorKey === undefined ? undefined : hashSecret(config.operatorKey),
    touchIntervalMs: config.auth.keyLastUsedWriteIntervalMs,
    logger,
  });
  // A tenant's routes, cached for 2 s (dropped at once after a change in this process).
  const routeCache = createTtlCache<ModelRouteDefinition[]>({ ttlMs: 2_000 });
  const gateway = createModelGateway({
    localTokenDelayMs: config.models.local.tokenDelayMs,
    providers: config.providers,
    platformRoutes: config.routes as readonly ModelRouteDefinition[],
    tenantRoutes: (tenantId) =>
      routeCache.get(tenantId, () => loadTenantRoutes(storage.database, tenantId)),
  });
  const redis =
    config.redisUrl === undefined
      ? undefined
      : new Redis(config.redisUrl, {
          enableOfflineQueue: false,
          maxRetriesPerRequest: 1,
          connectTimeout: 2_000,
        });
  let lastStoreWarning = 0;
  const reportStoreError = (error: unknown) => {
    // Logged at most every 30 s while Redis stays unreachable.
    if (Date.now() - lastStoreWarning < 30_000) return;
    lastStoreWarning = Date.now();
    logger.warn(
      { err: { message: error instanceof Error ? error.message : String(error) } },
      'rate-limit store unavailable: limits are per process until it recovers',
    );
  };
  redis?.on('error', reportStoreError);
  const spans = createSpanStore(storage.database);
  const tracing = createTracing({
    sampleRatio: config.tracing.sampleRatio,
    otlpEndpoint: config.tracing.otlpEndpoint,
    otlpHeaders: config.tracing.otlpHeaders,
    userAttribute: config.tracing.userAttribute,
    store: config.tracing.store ? (batch) => spans.write(batch) : undefined,
    version,
    onStoreError: (error) =>
      logger.warn({ err: { message: (error as Error).message } }, 'writing spans failed'),
  });
  const budgets = createBudgetStore(storage.database);
  const webhookStore = createWebhookStore(storage.database);
  const webhookWorker = createWebhookWorker({
    store: webhookStore,
    logger,
    pollMs: config.webhooks.pollMs,
    timeoutMs: config.webhooks.timeoutMs,
    maxAttempts: config.webhooks.maxAttempts,
    retryDelaysMs: config.webhooks.retryDelaysMs,
    allowPrivateNetworks: config.webhooks.allowPrivateNetworks,
  });
  const policyCache = createPolicyCache({
    load: (tenantId) => loadTenantPolicies(storage.database, tenantId),
  });
  const metered = createMeteredGateway({
    gateway,
    budgets,
    prices: createPriceTable({
      prices: config.models.prices,
      unknownModelPrice: config.models.unknownModelPrice,
    }),
    logger,
    onBudgetAlert: () => webhookWorker.wake(),
    tracing,
    captureContent: createContentCapturePolicy(storage.database),
    onUsage: (entry) =>
      metrics.recordModelCall({
        provider: entry.provider,
        model: entry.model,
        status: entry.status,
        inputTokens: entry.inputTokens,
        outputTokens: entry.outputTokens,
        costUsd: entry.cost / 1_000_000_000,
        latencyMs: entry.latencyMs,
      }),
    limits: createModelCallLimits({
      policies: policyCache,
      redis,
      onStoreError: reportStoreError,
    }),
  });
  const cores = new Map<string, CorePluginV1>([[toolLoopCore.id, toolLoopCore]]);
  for (const core of options.cores ?? []) {
    if (core.specificationVersion !== 'core-v1')
      throw new Error(`core ${core.id} is not a core-v1 plugin`);
    cores.set(core.id, core);
  }
  const tools = [...builtInTools, createHttpRequestTool(config.tools.httpRequest)];
  if (vaultKeys === undefined)
    logger.warn(
      {},
      'no vault master key (BRIGADE_MASTER_KEY or vault.keyProvider): credentials cannot be stored',
    );
  else
    logger.info(
      { source: vaultKeys.source, provider: vaultKeys.provider.id, masterKeyId: vaultKeys.keyId },
      'credentials vault ready',
    );
  const toolStore = createToolStore(storage.database);
  // Kill switches, checked before every tool call: cached per tenant for 2 s, dropped at once
  // when this process sets or lifts one.
  const toolBlocks = createToolBlockCache({ load: (tenantId) => toolStore.blocksOf(tenantId) });
  const egress = {
    allowedHosts: config.tools.tenantHttp.allowedHosts,
    allowPrivateNetworks: config.tools.tenantHttp.allowPrivateNetworks,
  };
  const credentialStore = createCredentialStore({
    database: storage.database,
    keyProvider: vaultKeys?.provider,
    // OAuth token endpoints pass the same egress rules as the tools that use the tokens.
    oauth: { refresh: createOAuthTokenClient({ egress }) },
  });
  const mcpServerStore = createMcpServerStore(storage.database);
  // The operator's stdio MCP servers: one process per (tenant, user, server), closed on stop.
  const mcpStdio = createMcpStdioPool({
    servers: config.tools.mcpStdio.servers,
    maxProcesses: config.tools.mcpStdio.maxProcesses,
    logger,
  });
  const mcpTools = createMcpToolProvider({
    servers: (claim) => mcpServerStore.listForRun(claim),
    egress,
    stdio: mcpStdio,
    defaultTimeoutMs: config.tools.tenantHttp.maxTimeoutMs,
    resolveCredential: (request) =>
      credentialStore.available
        ? credentialStore.resolveForCall({
            tenantId: request.claim.tenantId,
            userId: request.claim.userId,
            actor: request.actor ?? { kind: 'operator' },
            name: request.name,
            toolName: request.toolName,
            runId: request.claim.runId,
          })
        : Promise.resolve(undefined),
    onListError: (server, error) =>
      logger.warn(
        { mcpServer: server.name, err: { message: error.message } },
        'listing the tools of an MCP server failed',
      ),
  });
  const agentStore = createAgentStore(storage.database);
  const agents = createAgentService({
    store: agentStore,
    validator: createAgentValidator({
      gateway,
      tools,
      cores,
      tenantToolNames: (tenantId) => toolStore.names(tenantId),
      mcpServerNames: (tenantId) => mcpServerStore.names(tenantId),
    }),
  });
  const toolService = createToolService({
    store: toolStore,
    builtIns: tools,
    egress,
    maxTimeoutMs: config.tools.tenantHttp.maxTimeoutMs,
    maxResponseChars: config.tools.tenantHttp.maxResponseChars,
    agentExists: (principal, agentId) =>
      agents.get(principal, agentId).then(
        () => true,
        () => false,
      ),
    mcpServerNames: (tenantId) => mcpServerStore.names(tenantId),
    onBlocksChanged: (tenantId) => toolBlocks.invalidate(tenantId),
  });
  const signals = createRunSignals({
    connectionString: storage.runtimeConnection.url,
    onError: (error) =>
      logger.warn({ err: { message: error.message } }, 'run signal connection failed'),
  });
  const threads = createThreadService({
    threads: createThreadStore(storage.database),
    runs: createRunStore(storage.database, signals, {
      maxQueuedPerTenant: config.runs.maxQueuedPerTenant,
      staleAfterMs: config.runs.staleAfterMs,
      // A run created while this process has a free slot is claimed by its create.
      arrivals: (owner) => scheduler.arrival(owner),
    }),
  });
  const approvals = createApprovalStore({
    database: storage.database,
    signals,
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
  let activeRuns = (): number => 0;
  const eventFlushMs = () => Math.min(1_000, Math.max(50, activeRuns() * 2.5));
  const scheduler = createRunScheduler({
    database: storage.schedulerDatabase,
    executor: createRunExecutor({
      database: storage.database,
      tracing,
      gateway: metered,
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
      resolveCredential: (request) =>
        credentialStore.available
          ? credentialStore.resolveForCall({
              tenantId: request.claim.tenantId,
              userId: request.claim.userId,
              actor: request.actor ?? { kind: 'operator' },
              name: request.name,
              toolName: request.toolName,
              runId: request.claim.runId,
            })
          : Promise.resolve(undefined),
      allowedLinkHosts: config.tools.outputGuard.allowedLinkHosts,
      redactPii: config.tools.outputGuard.redactPii,
      approvalTtlMs: config.runs.approvalTtlSeconds * 1_000,
      cores,
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
  activeRuns = () => scheduler.active;
  // Reservations nobody settled by their expiry (a process died mid-call and no run resumed
  // them, e.g. an API call) are resolved as orphaned: charged in full, never silently freed.
  const sweep = setInterval(() => {
    budgets
      .resolveExpired()
      .then((resolved) => {
        if (resolved > 0) logger.warn({ resolved }, 'resolved expired budget reservations');
      })
      .catch((error: unknown) =>
        logger.warn({ err: { message: (error as Error).message } }, 'reservation sweep failed'),
      );
    spans
      .prune(config.tracing.retentionHours)
      .catch((error: unknown) =>
        logger.warn({ err: { message: (error as Error).message } }, 'pruning spans failed'),
      );
  }, 30_000);
  sweep.unref();
  webhookWorker.start();
  try {
    await signals.start();
    await scheduler.start();
    auditCheckpointer.start();
    approvalSweeper.start();
  } catch (error) {
    clearInterval(sweep);
    await approvalSweeper.stop();
    await webhookWorker.stop();
    redis?.disconnect();
    await scheduler.stop(0).catch(() => undefined);
    await mcpStdio.closeAll();
    await signals.stop().catch(() => undefined);
    await vaultKeys?.provider.close?.().catch(() => undefined);
    await storage.close().catch(() => undefined);
    throw error;
  }
  const limiter = createRequestLimiter({
    perKey: config.limits.requestsPerMinute.key,
    perUser: config.limits.requestsPerMinute.user,
    perTenant: config.limits.requestsPerMinute.tenant,
    redis,
    onStoreError: reportStoreError,
  });
  let draining = false;
  const app = createApp({
    services: {
      identity,
      agents,
      threads,
      eventHub: signals,
      approvals,
      audit: createAuditStore(storage.database, { verifier: auditSigner }),
      auditCheckpoints,
      consents: createConsentService({ store: createConsentStore(storage.database) }),
      tools: toolService,
      mcpServers: createMcpServerService({
        store: mcpServerStore,
        egress,
        stdio: mcpStdio,
        onDelete: (tenantId, serverId) => {
          mcpTools.forget(tenantId, serverId);
          mcpStdio.closeServer(tenantId, serverId);
        },
      }),
      credentials: createCredentialService({ store: credentialStore, egress }),
      webhooks: webhookStore,
      spans,
      modelRoutes: createModelRouteService({
        store: createModelRouteStore(storage.database),
        gateway,
        platformRoutes: config.routes as readonly ModelRouteDefinition[],
        onChange: (tenantId) => routeCache.invalidate(tenantId),
      }),
      policies: createPolicyService({
        store: createPolicyStore(storage.database),
        onChange: (tenantId) => policyCache.invalidate(tenantId),
      }),
      usage: createUsageService({ store: createUsageStore(storage.database) }),
      chat: {
        gateway: createCachingGateway({
          metered,
          gateway,
          // In-process LRU (10,000 answers, 64 MiB), behind Redis when it is configured.
          store:
            redis === undefined
              ? createMemoryCacheStore({ maxEntries: 10_000, maxBytes: 64 * 1024 * 1024 })
              : createRedisCacheStore({
                  redis,
                  memory: createMemoryCacheStore({
                    maxEntries: 10_000,
                    maxBytes: 64 * 1024 * 1024,
                  }),
                  onError: reportStoreError,
                }),
          budgets,
          logger,
        }),
        knows: (model, tenantId) => gateway.knowsFor(model, tenantId),
      },
    },
    authenticator,
    limiter,
    webhooksAllowPrivateNetworks: config.webhooks.allowPrivateNetworks,
    tracing,
    requestPolicies: (principal) => policyCache.binding(principal, 'requestsPerMinute'),
    logger,
    bodyLimitBytes: config.server.bodyLimitBytes,
    cors: config.server.cors,
    version,
    metrics: { registry: metrics, token: config.metrics.token },
    isReady: async () => {
      if (draining) return false;
      await storage.database.pool.query('select 1');
      return true;
    },
  });
  let server: ServerType | undefined;
  let stopping: Promise<void> | undefined;
  return {
    app,
    storage,
    generatedOperatorKey,
    metrics,
    auditCheckpointer,
    async listen() {
      const wrapped = accessLog(app, logger);
      return new Promise((resolve, reject) => {
        // hostname: the host of requests that name none (HTTP/1.0 health checks send no Host).
        const created = createAdaptorServer({ fetch: wrapped, hostname: config.server.host });
        created.once('error', reject);
        created.listen(
          {
            port: config.server.port,
            host: config.server.host,
            backlog: config.server.listenBacklog,
          },
          () => {
            const info = created.address() as AddressInfo;
            const host = info.family === 'IPv6' ? `[${info.address}]` : info.address;
            resolve(`http://${host}:${info.port}`);
          },
        );
        (created as Server).requestTimeout = config.server.requestTimeoutMs;
        server = created;
      });
    },
    stop() {
      stopping ??= (async () => {
        draining = true;
        const current = server;
        if (current !== undefined) {
          const closed = new Promise<void>((resolve) => current.close(() => resolve()));
          if ('closeIdleConnections' in current) current.closeIdleConnections();
          const grace = new Promise<void>((resolve) =>
            setTimeout(resolve, config.server.shutdownGraceMs).unref(),
          );
          await Promise.race([closed, grace]);
          if ('closeAllConnections' in current) current.closeAllConnections();
        }
        clearInterval(sweep);
        await approvalSweeper.stop();
        await auditCheckpointer.stop();
        await webhookWorker.stop();
        await scheduler.stop(config.server.shutdownGraceMs);
        // After the runs, which may still call their stdio MCP servers.
        await mcpStdio.closeAll();
        // After the runs: their last spans are written before the database closes.
        await tracing.shutdown().catch(() => undefined);
        await signals.stop();
        redis?.disconnect();
        await vaultKeys?.provider.close?.().catch(() => undefined);
        await storage.close();
        logger.flush();
      })();
      return stopping;
    },
  };
}
