import { composeAuditCheckpoints } from './compose-audit.ts';
import { composeDataRights } from './compose-data-rights.ts';
import { composeRuns } from './compose-runs.ts';
import { composeTools } from './compose-tools.ts';
import type { Config } from './config/index.ts';
import { createAgentService } from './domain/agents/agent-service.ts';
import { createPolicyService } from './domain/guards/policy-service.ts';
import { createUsageService } from './domain/guards/usage-service.ts';
import { hashSecret } from './domain/identity/api-key-secret.ts';
import { createIdentityService } from './domain/identity/identity-service.ts';
import { createModelGateway } from './gateway/model-gateway.ts';
import { createModelNames } from './gateway/model-names.ts';
import type { ModelRouteDefinition } from './gateway/model-routes.ts';
import { createPriceTable } from './gateway/pricing.ts';
import { createResponseCacheStore } from './gateway/response-cache-store.ts';
import { createApp } from './http/app.ts';
import type { BrigadeApp } from './http/app-env.ts';
import { createAuthenticator } from './http/auth/authenticator.ts';
import { createJwtVerifier, jwksUrlProblems } from './http/auth/jwt-verifier.ts';
import { createHttpServer } from './http/http-server.ts';
import type { Logger } from './observability/index.ts';
import { createMetrics, type Metrics } from './observability/metrics.ts';
import { createTracing } from './observability/tracing.ts';
import type { CorePluginV1 } from './plugin-api/index.ts';
import { createAgentValidator } from './runtime/agent-validator.ts';
import { createCachingGateway } from './runtime/cached-gateway.ts';
import { createContentCapturePolicy } from './runtime/content-capture.ts';
import { toolLoopCore } from './runtime/cores/tool-loop-core.ts';
import { createCredentialService } from './runtime/credential-service.ts';
import { createMaintenanceSweeper } from './runtime/maintenance-sweeper.ts';
import { createMcpServerService } from './runtime/mcp-server-service.ts';
import { createMeteredGateway, modelCallSample } from './runtime/metered-gateway.ts';
import { createModelCallLimits } from './runtime/model-call-limits.ts';
import { createModelRouteService } from './runtime/model-route-service.ts';
import { createPolicyCache } from './runtime/policy-cache.ts';
import { createRateLimitStoreHealth } from './runtime/rate-limit-store-health.ts';
import { createRedisClient, storeErrorReporter } from './runtime/redis-client.ts';
import { createRequestLimiter } from './runtime/request-limiter.ts';
import { createToolService } from './runtime/tool-service.ts';
import { createTtlCache } from './runtime/ttl-cache.ts';
import { createWebhookWorker } from './runtime/webhooks/webhook-worker.ts';
import { createAgentStore } from './storage/agents/agent-store.ts';
import { loadAuditSigningKey } from './storage/audit-signing-key.ts';
import { bootstrapOperatorKey } from './storage/bootstrap-operator-key.ts';
import { createBudgetStore } from './storage/guards/budget-store.ts';
import { createPolicyStore, loadTenantPolicies } from './storage/guards/policy-store.ts';
import { createUsageStore } from './storage/guards/usage-store.ts';
import { createAuditStore } from './storage/identity/audit-store.ts';
import { createIdentityStore } from './storage/identity/identity-store.ts';
import { openStorage, type Storage } from './storage/open-storage.ts';
import { createRetentionStore } from './storage/retention/retention-store.ts';
import { createModelRouteStore, loadTenantRoutes } from './storage/routes/model-route-store.ts';
import { loadRunQueueDepth } from './storage/runs/run-queue-depth.ts';
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
  /** Expired reservations and rows past retention (also run every `retention.sweepMs`). */
  readonly maintenance: { runOnce(): Promise<number> };
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

/**
 * The composition root: config → storage → services → HTTP. The only place that wires, with
 * its parts in the compose-*.ts files beside it (tools, runs, audit, data rights).
 */
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
  const {
    signer: auditSigner,
    checkpoints: auditCheckpoints,
    checkpointer: auditCheckpointer,
  } = composeAuditCheckpoints({
    database: storage.database,
    signingKey,
    config: config.audit.checkpoints,
    logger,
  });
  const store = createIdentityStore(storage.database, config.limits.perTenant);
  const authenticator = createAuthenticator({
    store,
    jwt: createJwtVerifier({
      jwksCacheMs: config.auth.jwksCacheMs,
      clockToleranceSeconds: config.auth.jwtClockToleranceSeconds,
      allowPrivateNetworks: config.auth.jwksAllowPrivateNetworks,
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
  const queueDepth = () => loadRunQueueDepth(storage.database);
  const modelNames = createModelNames(config);
  const redis = config.redisUrl === undefined ? undefined : createRedisClient(config.redisUrl);
  const storeHealth = createRateLimitStoreHealth({ redis });
  const sources = {
    breakers: gateway.breakerStates,
    queueDepth,
    rateLimitStore: storeHealth.state,
  };
  const metrics = createMetrics({ sources, labels: modelNames });
  const reportStoreError = storeErrorReporter(logger);
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
  const webhookStore = createWebhookStore(storage.database, vaultKeys?.provider, {
    maxPerTenant: config.webhooks.maxPerTenant,
  });
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
      platformRoutes: config.routes as readonly ModelRouteDefinition[],
    }),
    logger,
    onBudgetAlert: () => webhookWorker.wake(),
    tracing,
    captureContent: createContentCapturePolicy(storage.database),
    modelNames,
    onUsage: (entry) => metrics.recordModelCall(modelCallSample(entry)),
    limits: createModelCallLimits({
      policies: policyCache,
      redis,
      onStoreError: reportStoreError,
      onFallback: storeHealth.fellBack,
    }),
  });
  const cores = new Map<string, CorePluginV1>([[toolLoopCore.id, toolLoopCore]]);
  for (const core of options.cores ?? []) {
    if (core.specificationVersion !== 'core-v1')
      throw new Error(`core ${core.id} is not a core-v1 plugin`);
    cores.set(core.id, core);
  }
  const toolRuntime = composeTools({ config, storage, vaultKeys, logger });
  const { tools, toolStore, toolBlocks, egress, mcpServerStore, mcpStdio, mcpTools } = toolRuntime;
  const agentStore = createAgentStore(storage.database, config.limits.perTenant);
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
  const runtime = composeRuns({
    config,
    storage,
    logger,
    tracing,
    metered,
    gateway,
    budgets,
    toolRuntime,
    cores,
    metrics,
    agents,
  });
  const { signals, threads, approvals, approvalSweeper, scheduler, consents, memories } = runtime;
  const { endAccess, mcpStdioCloser: stdioCloser } = runtime;
  const identity = createIdentityService({
    store,
    endAccess,
    jwksUrlProblems: (url) => jwksUrlProblems(new URL(url), config.auth.jwksAllowPrivateNetworks),
  });
  const maintenance = createMaintenanceSweeper({
    pollMs: config.retention.sweepMs,
    tasks: {
      resolveExpiredReservations: () => budgets.resolveExpired(),
      pruneSpans: () => spans.prune(config.tracing.retentionHours),
      pruneRetained: (settings) => createRetentionStore(storage.database).prune(settings),
    },
    retention: config.retention,
    logger,
  });
  maintenance.start();
  webhookWorker.start();
  try {
    await signals.start();
    await scheduler.start();
    auditCheckpointer.start();
    approvalSweeper.start();
  } catch (error) {
    await maintenance.stop();
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
    onFallback: storeHealth.fellBack,
  });
  let draining = false;
  const responseCache = createResponseCacheStore(redis, reportStoreError);
  const app = createApp({
    services: {
      identity,
      agents,
      threads,
      eventHub: signals,
      approvals,
      audit: createAuditStore(storage.database, { verifier: auditSigner }),
      auditCheckpoints,
      consents,
      memories,
      dataRights: composeDataRights({
        database: storage.database,
        signals,
        responseCache,
        endAccess,
      }),
      tools: toolService,
      mcpServers: createMcpServerService({
        store: mcpServerStore,
        egress,
        stdio: mcpStdio,
        onDelete: (tenantId, serverId) => {
          mcpTools.forget(tenantId, serverId);
          stdioCloser.close({ tenantId, serverId }, 'deleted');
        },
      }),
      credentials: createCredentialService({
        store: toolRuntime.credentialStore,
        egress,
        onChange: ({ tenantId, userId, name }) =>
          stdioCloser.close({ tenantId, userId, credential: name }, 'credential changed'),
      }),
      webhooks: webhookStore,
      spans,
      modelRoutes: createModelRouteService({
        store: createModelRouteStore(storage.database, config.limits.perTenant, config.routes),
        gateway,
        platformRoutes: config.routes as readonly ModelRouteDefinition[],
        onChange: (tenantId) => routeCache.invalidate(tenantId),
      }),
      policies: createPolicyService({
        store: createPolicyStore(storage.database, config.limits.perTenant),
        onChange: (tenantId) => policyCache.invalidate(tenantId),
        configured: { ...config.limits, runs: config.runs },
      }),
      usage: createUsageService({ store: createUsageStore(storage.database) }),
      chat: {
        gateway: createCachingGateway({ metered, gateway, store: responseCache, budgets, logger }),
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
    streamReauthMs: config.server.streamReauthMs,
    cors: config.server.cors,
    version,
    metrics: { registry: metrics, token: config.metrics.token },
    isReady: async () => {
      if (draining) return false;
      await storage.database.pool.query('select 1');
      return true;
    },
  });
  const http = createHttpServer({ app, logger, server: config.server });
  let stopping: Promise<void> | undefined;
  return {
    app,
    storage,
    generatedOperatorKey,
    metrics,
    auditCheckpointer,
    maintenance,
    listen: () => http.listen(),
    stop() {
      stopping ??= (async () => {
        draining = true;
        await http.close();
        await maintenance.stop();
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
