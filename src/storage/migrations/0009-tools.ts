import type { MigrationContext } from './migration-context.ts';

/**
 * Tools (issue 6): the credentials vault, tenant-defined tools and tool kill switches.
 *
 * - `vault_tenant_keys`: one data key per tenant, wrapped (AES-256-GCM) by the master key,
 *   which never enters the database. Readable in the tenant's scope (a wrapped key is useless
 *   without the master key); only the operator may re-wrap it (master-key rotation).
 * - `vault_user_keys`: one data key per user, wrapped by the tenant key. Only the user's own
 *   scope sees it; deleting it crypto-shreds every credential only that user could read.
 * - `credentials`: secrets encrypted with the user key (`user_id` set) or, for tenant-shared
 *   credentials (`user_id` null), with the tenant key. A user sees only their own; shared ones
 *   are visible to tenant admins (metadata through the API) and to the tool gate executing a
 *   call (`brigade.tool_execution`), never to members over the API.
 * - `tools`: tenant-defined HTTP tools (definition validated by the API); members read them,
 *   admins write.
 * - `tool_blocks`: kill switches, tenant-wide (`agent_id` null) or for one agent.
 */
export function toolsMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  const tenant = 'tenant_id = (select brigade.current_tenant_id())';
  return `
create table brigade.vault_tenant_keys (
  tenant_id uuid primary key references brigade.tenants (id) on delete cascade,
  wrapped_key bytea not null,
  master_key_id text not null check (char_length(master_key_id) between 1 and 64),
  created_at timestamptz not null default now(),
  rewrapped_at timestamptz
);
alter table brigade.vault_tenant_keys enable row level security;
alter table brigade.vault_tenant_keys force row level security;
create policy vault_tenant_keys_read on brigade.vault_tenant_keys for select
  using (${tenant} or brigade.is_operator());
create policy vault_tenant_keys_create on brigade.vault_tenant_keys for insert
  with check (${tenant});
create policy vault_tenant_keys_rewrap on brigade.vault_tenant_keys for update
  using (brigade.is_operator()) with check (brigade.is_operator());
grant select, insert, update on brigade.vault_tenant_keys to ${role};

create table brigade.vault_user_keys (
  tenant_id uuid not null,
  user_id uuid not null,
  wrapped_key bytea not null,
  created_at timestamptz not null default now(),
  primary key (tenant_id, user_id),
  foreign key (tenant_id, user_id) references brigade.users (tenant_id, id) on delete cascade
);
alter table brigade.vault_user_keys enable row level security;
alter table brigade.vault_user_keys force row level security;
create policy vault_user_keys_own on brigade.vault_user_keys for all
  using (${tenant} and user_id = (select brigade.current_user_id()))
  with check (${tenant} and user_id = (select brigade.current_user_id()));
grant select, insert, delete on brigade.vault_user_keys to ${role};

create table brigade.credentials (
  tenant_id uuid not null references brigade.tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  user_id uuid,
  name text not null check (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
  kind text not null check (kind in ('api_key', 'bearer_token', 'basic', 'oauth2')),
  ciphertext bytea not null,
  fingerprint text not null check (char_length(fingerprint) between 1 and 64),
  last4 text not null check (char_length(last4) <= 4),
  created_by_user_id uuid,
  created_at timestamptz not null default now(),
  primary key (tenant_id, id),
  unique (id),
  foreign key (tenant_id, user_id) references brigade.users (tenant_id, id) on delete cascade
);
create unique index credentials_user_name on brigade.credentials (tenant_id, user_id, name)
  where user_id is not null;
create unique index credentials_shared_name on brigade.credentials (tenant_id, name)
  where user_id is null;
alter table brigade.credentials enable row level security;
alter table brigade.credentials force row level security;
create policy credentials_own on brigade.credentials for all
  using (${tenant} and user_id = (select brigade.current_user_id()))
  with check (${tenant} and user_id = (select brigade.current_user_id()));
create policy credentials_shared_read on brigade.credentials for select
  using (${tenant} and user_id is null
         and (brigade.is_tenant_admin()
              or coalesce(current_setting('brigade.tool_execution', true), '') = 'on'));
create policy credentials_shared_create on brigade.credentials for insert
  with check (${tenant} and user_id is null and brigade.is_tenant_admin());
create policy credentials_shared_delete on brigade.credentials for delete
  using (${tenant} and user_id is null and brigade.is_tenant_admin());
grant select, insert, delete on brigade.credentials to ${role};

create table brigade.tools (
  tenant_id uuid not null references brigade.tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  name text not null check (name ~ '^[a-z][a-z0-9_]{0,63}$'),
  definition jsonb not null,
  version int not null default 1,
  created_by_user_id uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  unique (id),
  unique (tenant_id, name)
);
alter table brigade.tools enable row level security;
alter table brigade.tools force row level security;
create policy tools_read on brigade.tools for select using (${tenant});
create policy tools_write on brigade.tools for all
  using (${tenant} and brigade.is_tenant_admin())
  with check (${tenant} and brigade.is_tenant_admin());
grant select, insert, update, delete on brigade.tools to ${role};

create table brigade.tool_blocks (
  tenant_id uuid not null references brigade.tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  tool_name text not null check (tool_name ~ '^[a-z][a-z0-9_]{0,63}$'),
  agent_id uuid,
  reason text check (char_length(reason) <= 500),
  created_by_user_id uuid,
  created_at timestamptz not null default now(),
  primary key (tenant_id, id),
  unique (id),
  foreign key (tenant_id, agent_id) references brigade.agents (tenant_id, id) on delete cascade
);
create unique index tool_blocks_target on brigade.tool_blocks
  (tenant_id, tool_name, coalesce(agent_id, '00000000-0000-0000-0000-000000000000'::uuid));
alter table brigade.tool_blocks enable row level security;
alter table brigade.tool_blocks force row level security;
create policy tool_blocks_read on brigade.tool_blocks for select using (${tenant});
create policy tool_blocks_write on brigade.tool_blocks for all
  using (${tenant} and brigade.is_tenant_admin())
  with check (${tenant} and brigade.is_tenant_admin());
grant select, insert, delete on brigade.tool_blocks to ${role};
`;
}
