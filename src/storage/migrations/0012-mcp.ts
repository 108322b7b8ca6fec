import type { MigrationContext } from './migration-context.ts';

/**
 * MCP servers (issue 6): Streamable HTTP MCP servers a tenant's admins register. Members read
 * them (agents name their tools `mcp:<server>:<tool>`); owners and admins write them. The
 * `auth` column names a credential, never holds a secret: each call carries the calling
 * user's own credential of that name from the vault.
 */
export function mcpMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  const tenant = 'tenant_id = (select brigade.current_tenant_id())';
  return `
create table brigade.mcp_servers (
  tenant_id uuid not null references brigade.tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  name text not null check (name ~ '^[a-z][a-z0-9_-]{0,31}$'),
  url text not null check (char_length(url) between 8 and 2048),
  auth jsonb,
  risk text not null check (risk in ('read', 'write', 'egress', 'sensitive')),
  created_by_user_id uuid,
  created_at timestamptz not null default now(),
  primary key (tenant_id, id),
  unique (id),
  unique (tenant_id, name)
);
alter table brigade.mcp_servers enable row level security;
alter table brigade.mcp_servers force row level security;
create policy mcp_servers_read on brigade.mcp_servers for select using (${tenant});
create policy mcp_servers_write on brigade.mcp_servers for all
  using (${tenant} and brigade.is_tenant_admin())
  with check (${tenant} and brigade.is_tenant_admin());
grant select, insert, delete on brigade.mcp_servers to ${role};
`;
}
