import { sql } from 'kysely';
import type { UserPrincipal } from '../../domain/identity/principal.ts';
import type {
  McpServerAuth,
  McpServerDefinition,
  StoredMcpServer,
} from '../../domain/tools/mcp-types.ts';
import type { ToolRisk } from '../../domain/tools/tool-types.ts';
import { writeAudit } from '../identity/audit-writer.ts';
import { scopeFor } from '../identity/scope-for.ts';
import type { Database } from '../postgres/database.ts';
import { assertCapacity, type TenantCapacity } from '../postgres/tenant-capacity.ts';

interface McpServerRow {
  id: string;
  tenant_id: string;
  name: string;
  url: string;
  auth: McpServerAuth | null;
  risk: ToolRisk;
  created_at: Date;
}

/**
 * Stdio servers are kept as `stdio://<declared name>` in the `url` column: a tenant's HTTP
 * server can never have that scheme (only http and https pass the egress check), and no
 * migration was needed for the second transport.
 */
const stdioPrefix = 'stdio://';

function endpointOf(definition: McpServerDefinition): string {
  return definition.transport === 'stdio' ? `${stdioPrefix}${definition.command}` : definition.url;
}

function toServer(row: McpServerRow): StoredMcpServer {
  const common = {
    id: row.id,
    tenantId: row.tenant_id,
    name: row.name,
    ...(row.auth === null ? {} : { auth: row.auth }),
    risk: row.risk,
    createdAt: new Date(row.created_at),
  };
  return row.url.startsWith(stdioPrefix)
    ? { ...common, transport: 'stdio', command: row.url.slice(stdioPrefix.length) }
    : { ...common, transport: 'http', url: row.url };
}

/** A tenant's MCP servers in PostgreSQL (RLS: the tenant reads, its admins write). */
export function createMcpServerStore(database: Database, capacity?: TenantCapacity) {
  return {
    create(principal: UserPrincipal, definition: McpServerDefinition): Promise<StoredMcpServer> {
      return database.withScope(scopeFor(principal), async (db) => {
        if (capacity !== undefined)
          await assertCapacity(db, {
            resource: 'mcpServers',
            tenantId: principal.tenantId,
            max: capacity.mcpServers,
          });
        const result = await sql<McpServerRow>`
          insert into brigade.mcp_servers (tenant_id, name, url, auth, risk, created_by_user_id)
          values (${principal.tenantId}, ${definition.name}, ${endpointOf(definition)},
                  ${definition.auth === undefined ? null : JSON.stringify(definition.auth)}::jsonb,
                  ${definition.risk}, ${principal.userId})
          returning *`.execute(db);
        const row = result.rows[0];
        if (row === undefined) throw new Error('MCP server not stored');
        await writeAudit(db, {
          tenantId: principal.tenantId,
          principal,
          record: {
            action: 'mcp_server.created',
            targetType: 'mcp_server',
            targetId: row.id,
            outcome: 'success',
            data: { name: row.name, url: row.url, risk: row.risk },
          },
        });
        return toServer(row);
      });
    },
    list(principal: UserPrincipal): Promise<StoredMcpServer[]> {
      return database.withScope(scopeFor(principal), async (db) => {
        const result = await sql<McpServerRow>`
          select * from brigade.mcp_servers order by name`.execute(db);
        return result.rows.map(toServer);
      });
    },
    delete(principal: UserPrincipal, serverId: string): Promise<boolean> {
      return database.withScope(scopeFor(principal), async (db) => {
        const result = await sql<{ name: string }>`
          delete from brigade.mcp_servers where id = ${serverId} returning name`.execute(db);
        const row = result.rows[0];
        if (row === undefined) return false;
        await writeAudit(db, {
          tenantId: principal.tenantId,
          principal,
          record: {
            action: 'mcp_server.deleted',
            targetType: 'mcp_server',
            targetId: serverId,
            outcome: 'success',
            data: { name: row.name },
          },
        });
        return true;
      });
    },
    /** The tenant's servers as a run of `scope` sees them (the tool gate). */
    listForRun(scope: { readonly tenantId: string; readonly userId: string }) {
      return database.withScope({ tenantId: scope.tenantId, userId: scope.userId }, async (db) => {
        const result = await sql<McpServerRow>`select * from brigade.mcp_servers`.execute(db);
        return result.rows.map(toServer);
      });
    },
    /** The names of the tenant's servers (agent validation). */
    names(tenantId: string): Promise<string[]> {
      return database.withScope({ tenantId }, async (db) => {
        const result = await sql<{ name: string }>`select name from brigade.mcp_servers`.execute(
          db,
        );
        return result.rows.map((row) => row.name);
      });
    },
  };
}

/** The MCP server store's type. */
export type McpServerStore = ReturnType<typeof createMcpServerStore>;
