import { sql } from 'kysely';
import type { UserPrincipal } from '../../domain/identity/principal.ts';
import type { HttpToolDefinition, StoredTool, ToolBlock } from '../../domain/tools/tool-types.ts';
import { writeAudit } from '../identity/audit-writer.ts';
import { scopeFor } from '../identity/scope-for.ts';
import type { Database, ScopedDb } from '../postgres/database.ts';
import { assertCapacity, type TenantCapacity } from '../postgres/tenant-capacity.ts';

interface ToolRow {
  id: string;
  tenant_id: string;
  name: string;
  definition: HttpToolDefinition;
  version: number;
  created_at: Date;
  updated_at: Date;
}

interface BlockRow {
  id: string;
  tool_name: string;
  agent_id: string | null;
  reason: string | null;
  created_at: Date;
}

/** Converts a stored row (the name column is authoritative). */
export function toStoredTool(row: ToolRow): StoredTool {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    definition: { ...row.definition, name: row.name },
    version: row.version,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

/** Converts a stored kill-switch row. */
export function toToolBlock(row: BlockRow): ToolBlock {
  return {
    id: row.id,
    toolName: row.tool_name,
    agentId: row.agent_id,
    reason: row.reason,
    createdAt: new Date(row.created_at),
  };
}

async function audit(
  db: ScopedDb,
  principal: UserPrincipal,
  record: { action: string; targetType: string; targetId: string; data: Record<string, unknown> },
): Promise<void> {
  await writeAudit(db, {
    tenantId: principal.tenantId,
    principal,
    record: { ...record, outcome: 'success' },
  });
}

/** Tenant tools and kill switches in PostgreSQL (RLS: the tenant reads, its admins write). */
export function createToolStore(database: Database, capacity?: TenantCapacity) {
  return {
    create(principal: UserPrincipal, definition: HttpToolDefinition): Promise<StoredTool> {
      return database.withScope(scopeFor(principal), async (db) => {
        if (capacity !== undefined)
          await assertCapacity(db, {
            resource: 'tools',
            tenantId: principal.tenantId,
            max: capacity.tools,
          });
        const result = await sql<ToolRow>`
          insert into brigade.tools (tenant_id, name, definition, created_by_user_id)
          values (${principal.tenantId}, ${definition.name}, ${JSON.stringify(definition)}::jsonb,
                  ${principal.userId})
          returning *`.execute(db);
        const row = result.rows[0];
        if (row === undefined) throw new Error('tool not stored');
        await audit(db, principal, {
          action: 'tool.created',
          targetType: 'tool',
          targetId: row.id,
          data: { name: definition.name, risk: definition.risk },
        });
        return toStoredTool(row);
      });
    },
    /**
     * Creates several tools in one transaction (an OpenAPI import): all or none. Each writes a
     * `tool.created` audit event with its `source`; a name taken meanwhile fails them all.
     */
    createMany(
      principal: UserPrincipal,
      tools: readonly { readonly definition: HttpToolDefinition; readonly operationId: string }[],
      source: string,
    ): Promise<StoredTool[]> {
      return database.withScope(scopeFor(principal), async (db) => {
        if (capacity !== undefined)
          await assertCapacity(db, {
            resource: 'tools',
            tenantId: principal.tenantId,
            max: capacity.tools,
            adding: tools.length,
          });
        const created: StoredTool[] = [];
        for (const { definition, operationId } of tools) {
          const result = await sql<ToolRow>`
            insert into brigade.tools (tenant_id, name, definition, created_by_user_id)
            values (${principal.tenantId}, ${definition.name}, ${JSON.stringify(definition)}::jsonb,
                    ${principal.userId})
            returning *`.execute(db);
          const row = result.rows[0];
          if (row === undefined) throw new Error('tool not stored');
          await audit(db, principal, {
            action: 'tool.created',
            targetType: 'tool',
            targetId: row.id,
            data: { name: definition.name, risk: definition.risk, source, operationId },
          });
          created.push(toStoredTool(row));
        }
        return created;
      });
    },
    /**
     * Refuses as {@link createMany} would when `adding` more tools would pass the tenant's cap
     * (an import's dry run); writes nothing.
     */
    checkRoom(principal: UserPrincipal, adding: number): Promise<void> {
      return database.withScope(scopeFor(principal), async (db) => {
        if (capacity !== undefined)
          await assertCapacity(db, {
            resource: 'tools',
            tenantId: principal.tenantId,
            max: capacity.tools,
            adding,
          });
      });
    },
    list(principal: UserPrincipal): Promise<StoredTool[]> {
      return database.withScope(scopeFor(principal), async (db) => {
        const result = await sql<ToolRow>`select * from brigade.tools order by name`.execute(db);
        return result.rows.map(toStoredTool);
      });
    },
    get(principal: UserPrincipal, toolId: string): Promise<StoredTool | undefined> {
      return database.withScope(scopeFor(principal), async (db) => {
        const result = await sql<ToolRow>`select * from brigade.tools where id = ${toolId}`.execute(
          db,
        );
        const row = result.rows[0];
        return row === undefined ? undefined : toStoredTool(row);
      });
    },
    update(
      principal: UserPrincipal,
      toolId: string,
      definition: HttpToolDefinition,
    ): Promise<StoredTool | undefined> {
      return database.withScope(scopeFor(principal), async (db) => {
        const result = await sql<ToolRow>`
          update brigade.tools
             set name = ${definition.name}, definition = ${JSON.stringify(definition)}::jsonb,
                 version = version + 1, updated_at = now()
           where id = ${toolId}
          returning *`.execute(db);
        const row = result.rows[0];
        if (row === undefined) return undefined;
        await audit(db, principal, {
          action: 'tool.updated',
          targetType: 'tool',
          targetId: row.id,
          data: { name: definition.name, risk: definition.risk, version: row.version },
        });
        return toStoredTool(row);
      });
    },
    delete(principal: UserPrincipal, toolId: string): Promise<boolean> {
      return database.withScope(scopeFor(principal), async (db) => {
        const result = await sql<{ name: string }>`
          delete from brigade.tools where id = ${toolId} returning name`.execute(db);
        const row = result.rows[0];
        if (row === undefined) return false;
        await audit(db, principal, {
          action: 'tool.deleted',
          targetType: 'tool',
          targetId: toolId,
          data: { name: row.name },
        });
        return true;
      });
    },
    createBlock(
      principal: UserPrincipal,
      block: { toolName: string; agentId: string | null; reason: string | null },
    ): Promise<ToolBlock> {
      return database.withScope(scopeFor(principal), async (db) => {
        const result = await sql<BlockRow>`
          insert into brigade.tool_blocks (tenant_id, tool_name, agent_id, reason, created_by_user_id)
          values (${principal.tenantId}, ${block.toolName}, ${block.agentId}, ${block.reason},
                  ${principal.userId})
          returning *`.execute(db);
        const row = result.rows[0];
        if (row === undefined) throw new Error('kill switch not stored');
        await audit(db, principal, {
          action: 'tool.disabled',
          targetType: 'tool_block',
          targetId: row.id,
          data: { tool: block.toolName, agentId: block.agentId, reason: block.reason },
        });
        return toToolBlock(row);
      });
    },
    listBlocks(principal: UserPrincipal): Promise<ToolBlock[]> {
      return database.withScope(scopeFor(principal), async (db) => {
        const result = await sql<BlockRow>`
          select * from brigade.tool_blocks order by tool_name, created_at`.execute(db);
        return result.rows.map(toToolBlock);
      });
    },
    deleteBlock(principal: UserPrincipal, blockId: string): Promise<boolean> {
      return database.withScope(scopeFor(principal), async (db) => {
        const result = await sql<BlockRow>`
          delete from brigade.tool_blocks where id = ${blockId} returning *`.execute(db);
        const row = result.rows[0];
        if (row === undefined) return false;
        await audit(db, principal, {
          action: 'tool.enabled',
          targetType: 'tool_block',
          targetId: blockId,
          data: { tool: row.tool_name, agentId: row.agent_id },
        });
        return true;
      });
    },
    /** The argument schema of the tenant's tool `name` (re-validating edited approvals). */
    schemaOf(
      tenantId: string,
      name: string,
    ): Promise<Readonly<Record<string, unknown>> | undefined> {
      return database.withScope({ tenantId }, async (db) => {
        const result = await sql<{ definition: HttpToolDefinition }>`
          select definition from brigade.tools where name = ${name}`.execute(db);
        return result.rows[0]?.definition.inputSchema;
      });
    },
    /**
     * Every kill switch of the tenant, as the tool gate checks them (one round trip; the
     * gate caches the answer for a moment, see runtime/tool-block-cache.ts).
     */
    async blocksOf(tenantId: string): Promise<{ toolName: string; agentId: string | null }[]> {
      const [rows = []] = await database.readScoped({ tenantId }, [
        'select tool_name, agent_id from brigade.tool_blocks',
      ]);
      return rows.map((row) => ({
        toolName: String(row['tool_name']),
        agentId: row['agent_id'] == null ? null : String(row['agent_id']),
      }));
    },
    /** The names of the tenant's tools (agent validation). */
    names(tenantId: string): Promise<string[]> {
      return database.withScope({ tenantId }, async (db) => {
        const result = await sql<{ name: string }>`select name from brigade.tools`.execute(db);
        return result.rows.map((row) => row.name);
      });
    },
  };
}

/** The tool store's type. */
export type ToolStore = ReturnType<typeof createToolStore>;
