import { asTenantUser } from '../domain/agents/agent-service.ts';
import { ConflictError, NotFoundError, ValidationError } from '../domain/errors.ts';
import { assertCan, type Principal } from '../domain/identity/principal.ts';
import type { McpServerDefinition, StoredMcpServer } from '../domain/tools/mcp-types.ts';
import type { McpServerStore } from '../storage/tools/mcp-server-store.ts';
import { type EgressPolicy, staticEgressProblems } from './tools/egress-guard.ts';
import { type McpConnect, probeMcpServer } from './tools/mcp-tools.ts';

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * A tenant's Streamable HTTP MCP servers. Every member lists them (agents name their tools);
 * owners and admins register and delete them. A registration is checked before it is saved:
 * the URL passes the tenant-HTTP egress policy (no private or loopback address unless
 * `tools.tenantHttp.allowPrivateNetworks`) and the server answers (a 401 or 403 counts: it
 * wants each user's credential), so a bad server fails at registration, not at run time.
 * Stdio servers never come from tenants: they would run processes on the host.
 */
export function createMcpServerService(options: {
  readonly store: McpServerStore;
  readonly egress: EgressPolicy;
  /** Names taken by the operator's servers. */
  readonly reservedNames?: readonly string[];
  readonly connect?: McpConnect;
  /** Called after a server is deleted (drops its cached tool list). */
  readonly onDelete?: (tenantId: string, serverId: string) => void;
}) {
  const { store } = options;
  return {
    async create(principal: Principal, definition: McpServerDefinition): Promise<StoredMcpServer> {
      const user = asTenantUser(principal);
      assertCan(user, 'tool:manage');
      let url: URL;
      try {
        url = new URL(definition.url);
      } catch {
        throw new ValidationError([{ path: 'body.url', message: 'not a valid URL' }]);
      }
      const problems = staticEgressProblems(url, options.egress);
      if (problems.length > 0)
        throw new ValidationError(problems.map((message) => ({ path: 'body.url', message })));
      if (options.reservedNames?.includes(definition.name) === true)
        throw new ConflictError(`An MCP server named '${definition.name}' exists already.`);
      if ((await store.list(user)).some((server) => server.name === definition.name))
        throw new ConflictError(`An MCP server named '${definition.name}' exists already.`);
      const unreachable = await probeMcpServer({
        url,
        egress: options.egress,
        ...(options.connect === undefined ? {} : { connect: options.connect }),
      });
      if (unreachable !== undefined)
        throw new ValidationError([{ path: 'body.url', message: unreachable }]);
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
