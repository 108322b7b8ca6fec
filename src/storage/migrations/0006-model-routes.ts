import type { MigrationContext } from './migration-context.ts';

/**
 * Tenant model routes: a name an agent or API caller uses instead of a model, with its
 * deployments, strategy, retries, breaker settings and fallbacks (the definition is validated
 * by the API; see src/gateway/route-schema.ts). Every member reads them; admins write.
 */
export function modelRoutesMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
create table brigade.model_routes (
  tenant_id uuid not null references brigade.tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  name text not null check (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
  definition jsonb not null,
  version int not null default 1,
  created_by_user_id uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  unique (id),
  unique (tenant_id, name)
);
alter table brigade.model_routes enable row level security;
alter table brigade.model_routes force row level security;
create policy model_routes_read on brigade.model_routes for select
  using (tenant_id = (select brigade.current_tenant_id()));
create policy model_routes_write on brigade.model_routes for all
  using (tenant_id = (select brigade.current_tenant_id()) and brigade.is_tenant_admin())
  with check (tenant_id = (select brigade.current_tenant_id()) and brigade.is_tenant_admin());
grant select, insert, update, delete on brigade.model_routes to ${role};
`;
}
