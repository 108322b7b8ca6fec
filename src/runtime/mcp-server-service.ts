import { asTenantUser } from '../domain/agents/agent-service.ts';
import { AppError, ConflictError, NotFoundError, ValidationError } from '../domain/errors.ts';
import { assertCan, type Principal } from '../domain/identity/principal.ts';
import type { McpServerDefinition, StoredMcpServer } from '../domain/tools/mcp-types.ts';
import type { McpServerStore } from '../storage/tools/mcp-server-store.ts';
import { type EgressPolicy, staticEgressProblems } from './tools/egress-guard.ts';
import type { McpStdioPool } from './tools/mcp-stdio-pool.ts';
import { type McpConnect, probeMcpServer } from './tools/mcp-tools.ts';

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * A tenant's MCP servers. Every member lists them (agents name their tools); owners and
 * admins register and delete them. A registration is checked before it is saved, so a bad
 * server fails at registration, not at run time:
 * - Streamable HTTP: the URL passes the tenant-HTTP egress policy (no private or loopback
 *   address unless `tools.tenantHttp.allowPrivateNetworks`) and the server answers (a 401 or
 *   403 counts: it wants each user's credential).
 * - stdio: `command` must name a server the operator declared (`tools.mcpStdio.servers`), a
 *   credential only goes to one that declares `credentialEnv`, and the process must start and
 *   list its tools (run once, without a credential). Tenants never choose what runs on the
 *   host: that would be remote code execution.
 */
export function createMcpServerService(options: {
  readonly store: McpServerStore;
  readonly egress: EgressPolicy;
  /** Names taken by the operator's servers. */
  readonly reservedNames?: readonly string[];
  readonly connect?: McpConnect;
  /** The operator's stdio servers; absent: none are declared. */
  readonly stdio?: McpStdioPool | undefined;
  /** Called after a server is deleted (drops its cached tool list). */
  readonly onDelete?: (tenantId: string, serverId: string) => void;
}) {
  const { store } = options;

  async function checkHttp(url: string): Promise<void> {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new ValidationError([{ path: 'body.url', message: 'not a valid URL' }]);
    }
    // A fragment is never sent: a URL with one names something other than what is called.
    if (parsed.hash !== '' || url.includes('#'))
      throw new ValidationError([{ path: 'body.url', message: 'may not have a #fragment' }]);
    const problems = staticEgressProblems(parsed, options.egress);
    if (problems.length > 0)
      throw new ValidationError(problems.map((message) => ({ path: 'body.url', message })));
    const unreachable = await probeMcpServer({
      url: parsed,
      egress: options.egress,
      ...(options.connect === undefined ? {} : { connect: options.connect }),
    });
    if (unreachable !== undefined)
      throw new ValidationError([{ path: 'body.url', message: unreachable }]);
  }

  async function checkStdio(definition: McpServerDefinition & { transport: 'stdio' }) {
    const declared = options.stdio?.declared(definition.command);
    if (options.stdio === undefined || declared === undefined)
      throw new AppError(
        'unknown_mcp_command',
        `No stdio MCP server named '${definition.command}' is declared in the operator's configuration.`,
        { details: { command: definition.command } },
      );
    if (definition.auth?.header !== undefined)
      throw new ValidationError([
        {
          path: 'body.auth.header',
          message: 'a stdio server gets the credential in its environment',
        },
      ]);
    if (definition.auth !== undefined && declared.credentialEnv === undefined)
      throw new ValidationError([
        {
          path: 'body.auth',
          message: `the declared server '${definition.command}' takes no credential`,
        },
      ]);
    try {
      await options.stdio.probe(definition.command);
    } catch (error) {
      throw new ValidationError([{ path: 'body.command', message: (error as Error).message }]);
    }
  }

  return {
    async create(principal: Principal, definition: McpServerDefinition): Promise<StoredMcpServer> {
      const user = asTenantUser(principal);
      assertCan(user, 'tool:manage');
      if (options.reservedNames?.includes(definition.name) === true)
        throw new ConflictError(`An MCP server named '${definition.name}' exists already.`);
      if ((await store.list(user)).some((server) => server.name === definition.name))
        throw new ConflictError(`An MCP server named '${definition.name}' exists already.`);
      if (definition.transport === 'stdio') await checkStdio(definition);
      else await checkHttp(definition.url);
      return store.create(user, definition);
    },
    async list(principal: Principal): Promise<StoredMcpServer[]> {
      const user = asTenantUser(principal);
      assertCan(user, 'agent:read');
      return store.list(user);
    },
    async delete(principal: Principal, serverId: string): Promise<void> {
      const user = asTenantUser(principal);
      assertCan(user, 'tool:manage');
      if (!uuidPattern.test(serverId) || !(await store.delete(user, serverId)))
        throw new NotFoundError('not_found', 'MCP server not found.');
      options.onDelete?.(user.tenantId, serverId);
    },
  };
}

/** The MCP server service's type. */
export type McpServerService = ReturnType<typeof createMcpServerService>;
