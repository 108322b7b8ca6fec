import type { Config } from './config/index.ts';
import type { Logger } from './observability/index.ts';
import type { RunClaim } from './runtime/run-executor.ts';
import { createToolBlockCache } from './runtime/tool-block-cache.ts';
import { createHttpRequestTool } from './runtime/tools/http-request-tool.ts';
import { createMcpStdioPool } from './runtime/tools/mcp-stdio-pool.ts';
import { createMcpToolProvider } from './runtime/tools/mcp-tools.ts';
import { createOAuthTokenClient } from './runtime/tools/oauth-token-client.ts';
import { builtInTools } from './runtime/tools/tool-registry.ts';
import type { Storage } from './storage/open-storage.ts';
import { createArgumentsHasher } from './storage/tools/arguments-hasher.ts';
import { createCredentialStore } from './storage/tools/credential-store.ts';
import { createMcpServerStore } from './storage/tools/mcp-server-store.ts';
import { createToolStore } from './storage/tools/tool-store.ts';
import type { loadVaultKeySource } from './storage/vault-key-provider.ts';

/**
 * Part of the composition root (main.ts): the tools runs may call and what they need — the
 * built-ins, tenant tools and their kill switches, the credentials vault, MCP servers (remote
 * and the operator's stdio ones), the egress rules they all pass, and the keyed hash of tool-call
 * arguments the audit log and approvals show.
 */
export function composeTools(options: {
  readonly config: Config;
  readonly storage: Storage;
  readonly vaultKeys: Awaited<ReturnType<typeof loadVaultKeySource>>;
  readonly logger: Logger;
}) {
  const { config, storage, vaultKeys, logger } = options;
  const tools = [...builtInTools, createHttpRequestTool(config.tools.httpRequest)];
  if (vaultKeys === undefined)
    logger.warn(
      {},
      'no vault master key (BRIGADE_MASTER_KEY or vault.keyProvider): credentials cannot be stored, and tool-call argument hashes in the audit log are plain SHA-256 (not keyed)',
    );
  else
    logger.info(
      { source: vaultKeys.source, provider: vaultKeys.provider.id, masterKeyId: vaultKeys.keyId },
      'credentials vault ready',
    );
  // Tool-call arguments are hashed (audit log, approvals) with a key per tenant derived from
  // its vault data key; without a vault key, plain SHA-256.
  const argumentsHasher = createArgumentsHasher({
    database: storage.database,
    keyProvider: vaultKeys?.provider,
  });
  const toolStore = createToolStore(storage.database, config.limits.perTenant);
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
  /** A credential of the run's user for one tool call (none without a vault key). */
  const resolveCredential = (request: {
    readonly claim: RunClaim;
    readonly actor: Parameters<typeof credentialStore.resolveForCall>[0]['actor'] | undefined;
    readonly name: string;
    readonly toolName: string;
    readonly destination: URL | undefined;
  }) =>
    credentialStore.available
      ? credentialStore.resolveForCall({
          tenantId: request.claim.tenantId,
          userId: request.claim.userId,
          actor: request.actor ?? { kind: 'operator' },
          name: request.name,
          toolName: request.toolName,
          runId: request.claim.runId,
          destination: request.destination,
        })
      : Promise.resolve(undefined);
  const mcpServerStore = createMcpServerStore(storage.database, config.limits.perTenant);
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
    resolveCredential,
    onListError: (server, error) =>
      logger.warn(
        { mcpServer: server.name, err: { message: error.message } },
        'listing the tools of an MCP server failed',
      ),
  });
  return {
    tools,
    argumentsHasher,
    toolStore,
    toolBlocks,
    egress,
    credentialStore,
    resolveCredential,
    mcpServerStore,
    mcpStdio,
    mcpTools,
  };
}
