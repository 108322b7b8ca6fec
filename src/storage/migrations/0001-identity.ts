import type { MigrationContext } from './migration-context.ts';

/**
 * Tenants, users, memberships, API keys, OIDC providers, operator keys and the audit log, with
 * row-level security enabled and forced on every table (DESIGN.md invariant 3).
 */
export function identityMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
create schema if not exists brigade;
revoke all on schema brigade from public;
grant usage on schema brigade to ${role};

-- Scope of the current transaction, set with set_config(..., true) (= SET LOCAL) by the
-- application. An unset or empty value means "no scope": policies then match nothing.
create or replace function brigade.current_tenant_id() returns uuid
  language sql stable parallel safe
  as $$ select nullif(current_setting('brigade.tenant_id', true), '')::uuid $$;
create or replace function brigade.current_user_id() returns uuid
  language sql stable parallel safe
  as $$ select nullif(current_setting('brigade.user_id', true), '')::uuid $$;
create or replace function brigade.is_operator() returns boolean
  language sql stable parallel safe
  as $$ select coalesce(current_setting('brigade.operator', true), '') = 'on' $$;
create or replace function brigade.is_tenant_admin() returns boolean
  language sql stable parallel safe
  as $$ select coalesce(current_setting('brigade.tenant_admin', true), '') = 'on'
               and brigade.current_tenant_id() is not null $$;
create or replace function brigade.auth_key_hash() returns bytea
  language sql stable parallel safe
  as $$ select decode(nullif(current_setting('brigade.auth_key_hash', true), ''), 'hex') $$;
create or replace function brigade.auth_issuer() returns text
  language sql stable parallel safe
  as $$ select nullif(current_setting('brigade.auth_issuer', true), '') $$;
revoke all on all functions in schema brigade from public;
grant execute on all functions in schema brigade to ${role};

create table brigade.tenants (
  id uuid primary key default gen_random_uuid(),
  slug text not null unique check (slug ~ '^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$'),
  name text not null check (char_length(name) between 1 and 200),
  status text not null default 'active' check (status in ('active', 'suspended')),
  time_zone text not null default 'UTC',
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
alter table brigade.tenants enable row level security;
alter table brigade.tenants force row level security;
create policy tenants_read on brigade.tenants for select
  using (brigade.is_operator() or id = (select brigade.current_tenant_id()));
create policy tenants_insert on brigade.tenants for insert with check (brigade.is_operator());
create policy tenants_update on brigade.tenants for update
  using (brigade.is_operator() or (id = (select brigade.current_tenant_id()) and brigade.is_tenant_admin()));
grant select, insert, update on brigade.tenants to ${role};

create table brigade.users (
  tenant_id uuid not null references brigade.tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  email text check (email is null or char_length(email) <= 320),
  display_name text check (display_name is null or char_length(display_name) <= 200),
  status text not null default 'active' check (status in ('active', 'disabled')),
  external_issuer text,
  external_subject text,
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  unique (id)
);
create unique index users_email_key on brigade.users (tenant_id, lower(email)) where email is not null;
create unique index users_external_key on brigade.users (tenant_id, external_issuer, external_subject)
  where external_subject is not null;
alter table brigade.users enable row level security;
alter table brigade.users force row level security;
create policy users_tenant on brigade.users for all
  using (tenant_id = (select brigade.current_tenant_id()))
  with check (tenant_id = (select brigade.current_tenant_id()) and brigade.is_tenant_admin());
grant select, insert, update, delete on brigade.users to ${role};

create table brigade.memberships (
  tenant_id uuid not null,
  user_id uuid not null,
  role text not null check (role in ('owner', 'admin', 'member', 'viewer')),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, user_id),
  foreign key (tenant_id, user_id) references brigade.users (tenant_id, id) on delete cascade
);
alter table brigade.memberships enable row level security;
alter table brigade.memberships force row level security;
create policy memberships_tenant on brigade.memberships for all
  using (tenant_id = (select brigade.current_tenant_id()))
  with check (tenant_id = (select brigade.current_tenant_id()) and brigade.is_tenant_admin());
grant select, insert, update, delete on brigade.memberships to ${role};

create table brigade.api_keys (
  tenant_id uuid not null,
  id uuid not null default gen_random_uuid(),
  user_id uuid not null,
  name text not null check (char_length(name) between 1 and 100),
  prefix text not null,
  key_hash bytea not null unique,
  scopes text[],
  expires_at timestamptz,
  last_used_at timestamptz,
  revoked_at timestamptz,
  rotated_from_id uuid,
  created_by_user_id uuid,
  created_at timestamptz not null default now(),
  primary key (tenant_id, id),
  unique (id),
  foreign key (tenant_id, user_id) references brigade.users (tenant_id, id) on delete cascade
);
create index api_keys_user on brigade.api_keys (tenant_id, user_id);
alter table brigade.api_keys enable row level security;
alter table brigade.api_keys force row level security;
-- Users see their own keys, admins every key of their tenant.
create policy api_keys_scoped on brigade.api_keys for all
  using (tenant_id = (select brigade.current_tenant_id())
         and (brigade.is_tenant_admin() or user_id = (select brigade.current_user_id())))
  with check (tenant_id = (select brigade.current_tenant_id())
         and (brigade.is_tenant_admin() or user_id = (select brigade.current_user_id())));
-- Authentication: whoever presents the secret (and so knows its hash) may read that one row.
create policy api_keys_authenticate on brigade.api_keys for select
  using (key_hash = (select brigade.auth_key_hash()));
grant select, insert, update on brigade.api_keys to ${role};

create table brigade.oidc_providers (
  tenant_id uuid not null references brigade.tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  name text not null check (char_length(name) between 1 and 100),
  issuer text not null,
  audience text not null,
  jwks_url text,
  public_keys_pem text[],
  algorithms text[] not null,
  subject_claim text not null default 'sub',
  email_claim text not null default 'email',
  name_claim text not null default 'name',
  role_claim text,
  role_mapping jsonb not null default '{}',
  default_role text not null default 'member' check (default_role in ('admin', 'member', 'viewer')),
  jit_provisioning boolean not null default false,
  enabled boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  unique (id),
  unique (tenant_id, issuer, audience),
  check (jwks_url is not null or public_keys_pem is not null)
);
create index oidc_providers_issuer on brigade.oidc_providers (issuer);
alter table brigade.oidc_providers enable row level security;
alter table brigade.oidc_providers force row level security;
create policy oidc_providers_tenant on brigade.oidc_providers for all
  using (tenant_id = (select brigade.current_tenant_id()))
  with check (tenant_id = (select brigade.current_tenant_id()) and brigade.is_tenant_admin());
create policy oidc_providers_authenticate on brigade.oidc_providers for select
  using (enabled and issuer = (select brigade.auth_issuer()));
grant select, insert, update, delete on brigade.oidc_providers to ${role};

-- Hashes of platform-operator keys. Like API keys, a row is visible only to whoever presents
-- the secret whose hash it is; written only by the owner at bootstrap.
create table brigade.operator_keys (
  id uuid primary key default gen_random_uuid(),
  key_hash bytea not null unique,
  source text not null check (source in ('generated', 'environment')),
  created_at timestamptz not null default now()
);
alter table brigade.operator_keys enable row level security;
alter table brigade.operator_keys force row level security;
create policy operator_keys_read on brigade.operator_keys for select
  using (key_hash = (select brigade.auth_key_hash()));
-- The owner (the role running this migration) manages operator keys at bootstrap.
do $$ begin
  execute format('create policy operator_keys_owner on brigade.operator_keys for all to %I using (true) with check (true)', current_user);
end $$;
grant select on brigade.operator_keys to ${role};

-- Append-only, per-tenant hash-chained audit log (DESIGN.md invariant 11). The runtime role
-- may only INSERT and SELECT; sequence numbers and hashes are assigned by the trigger.
create table brigade.audit_heads (
  tenant_id uuid primary key references brigade.tenants (id) on delete cascade,
  seq bigint not null,
  hash bytea not null
);
alter table brigade.audit_heads enable row level security;
alter table brigade.audit_heads force row level security;
create policy audit_heads_tenant on brigade.audit_heads for all
  using (tenant_id = (select brigade.current_tenant_id()))
  with check (tenant_id = (select brigade.current_tenant_id()));
grant select, insert, update on brigade.audit_heads to ${role};

create table brigade.audit_events (
  tenant_id uuid not null references brigade.tenants (id) on delete cascade,
  seq bigint not null,
  id uuid not null default gen_random_uuid(),
  occurred_at timestamptz not null default clock_timestamp(),
  actor_kind text not null check (actor_kind in ('operator', 'user', 'system')),
  actor_user_id uuid,
  actor_key_id uuid,
  action text not null,
  target_type text,
  target_id text,
  outcome text not null check (outcome in ('success', 'failure', 'denied')),
  reason text,
  data jsonb not null default '{}',
  prev_hash bytea not null,
  hash bytea not null,
  primary key (tenant_id, seq)
);
alter table brigade.audit_events enable row level security;
alter table brigade.audit_events force row level security;
create policy audit_events_read on brigade.audit_events for select
  using (tenant_id = (select brigade.current_tenant_id()));
create policy audit_events_append on brigade.audit_events for insert
  with check (tenant_id = (select brigade.current_tenant_id()));
grant select, insert on brigade.audit_events to ${role};

create or replace function brigade.audit_chain() returns trigger language plpgsql as $$
declare
  head brigade.audit_heads%rowtype;
begin
  insert into brigade.audit_heads (tenant_id, seq, hash)
    values (new.tenant_id, 0, '\\x'::bytea)
    on conflict (tenant_id) do nothing;
  select * into head from brigade.audit_heads where tenant_id = new.tenant_id for update;
  if not found then
    raise exception 'audit head not visible in this scope' using errcode = '42501';
  end if;
  new.seq := head.seq + 1;
  new.prev_hash := head.hash;
  new.hash := sha256(head.hash || convert_to(concat_ws('|',
    new.tenant_id::text, new.seq::text, new.id::text,
    to_char(new.occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    new.actor_kind, coalesce(new.actor_user_id::text, ''), coalesce(new.actor_key_id::text, ''),
    new.action, coalesce(new.target_type, ''), coalesce(new.target_id, ''), new.outcome,
    coalesce(new.reason, ''), new.data::text), 'UTF8'));
  update brigade.audit_heads set seq = new.seq, hash = new.hash where tenant_id = new.tenant_id;
  return new;
end $$;
grant execute on function brigade.audit_chain() to ${role};
create trigger audit_events_chain before insert on brigade.audit_events
  for each row execute function brigade.audit_chain();
`;
}
