import type { MigrationContext } from './migration-context.ts';

/**
 * Accountability (issue 7): an append-only audit log the runtime role can only INSERT into,
 * signed audit checkpoints, and per-user consent records.
 *
 * - `audit_chain()` becomes SECURITY DEFINER (it runs as the owner, with a fixed search_path),
 *   so the runtime role no longer needs, and loses, INSERT and UPDATE on `audit_heads`: it can
 *   only append events. The trigger refuses an event for a tenant other than the scope's, since
 *   the owner may not be bound by row-level security.
 * - `audit_checkpoints` holds Ed25519 signatures over (tenant, seq, hash) of the chain; the
 *   signing key never enters the database. Append-only like the log. The operator scope may
 *   read every tenant's heads and checkpoints (sequence numbers and hashes, no content) so one
 *   query finds the tenants a checkpoint is due for.
 * - `consents` are user-owned: a user reads and changes its own, tenant admins read their
 *   tenant's, and the operator may record a consent given out of band.
 */
export function accountabilityMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
create or replace function brigade.audit_chain() returns trigger
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
  as $$
declare
  head brigade.audit_heads%rowtype;
begin
  if new.tenant_id is distinct from brigade.current_tenant_id() then
    raise exception 'audit event outside the current tenant scope' using errcode = '42501';
  end if;
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
revoke all on function brigade.audit_chain() from public;
revoke all on function brigade.audit_chain() from ${role};
revoke insert, update, delete, truncate on brigade.audit_heads from ${role};
create policy audit_heads_operator on brigade.audit_heads for select
  using (brigade.is_operator());

create table brigade.audit_checkpoints (
  tenant_id uuid not null references brigade.tenants (id) on delete cascade,
  seq bigint not null check (seq > 0),
  hash bytea not null,
  signed_at timestamptz not null,
  key_id text not null check (char_length(key_id) between 1 and 100),
  signature bytea not null,
  primary key (tenant_id, seq)
);
alter table brigade.audit_checkpoints enable row level security;
alter table brigade.audit_checkpoints force row level security;
create policy audit_checkpoints_read on brigade.audit_checkpoints for select
  using (tenant_id = (select brigade.current_tenant_id()) or brigade.is_operator());
create policy audit_checkpoints_append on brigade.audit_checkpoints for insert
  with check (tenant_id = (select brigade.current_tenant_id()));
grant select, insert on brigade.audit_checkpoints to ${role};

create table brigade.consents (
  tenant_id uuid not null,
  id uuid not null default gen_random_uuid(),
  user_id uuid not null,
  purpose text not null
    check (purpose ~ '^(content_capture|long_term_memory|tool:[a-z][a-z0-9_]{0,63})$'),
  scope text not null default '*' check (char_length(scope) between 1 and 200),
  version text not null check (char_length(version) between 1 and 50),
  status text not null default 'granted' check (status in ('granted', 'revoked')),
  granted_at timestamptz not null default now(),
  granted_by_kind text not null check (granted_by_kind in ('user', 'operator')),
  granted_by_user_id uuid,
  revoked_at timestamptz,
  revoked_by_kind text check (revoked_by_kind in ('user', 'operator')),
  revoked_by_user_id uuid,
  primary key (tenant_id, id),
  unique (id),
  foreign key (tenant_id, user_id) references brigade.users (tenant_id, id) on delete cascade,
  check ((status = 'granted') = (revoked_at is null))
);
create unique index consents_active on brigade.consents (tenant_id, user_id, purpose, scope)
  where status = 'granted';
create index consents_user on brigade.consents (tenant_id, user_id, granted_at);
alter table brigade.consents enable row level security;
alter table brigade.consents force row level security;
create policy consents_read on brigade.consents for select
  using (tenant_id = (select brigade.current_tenant_id())
         and (user_id = (select brigade.current_user_id()) or brigade.is_tenant_admin()));
create policy consents_insert on brigade.consents for insert
  with check (tenant_id = (select brigade.current_tenant_id())
              and (user_id = (select brigade.current_user_id()) or brigade.is_operator()));
create policy consents_update on brigade.consents for update
  using (tenant_id = (select brigade.current_tenant_id())
         and (user_id = (select brigade.current_user_id()) or brigade.is_operator()))
  with check (tenant_id = (select brigade.current_tenant_id())
              and (user_id = (select brigade.current_user_id()) or brigade.is_operator()));
grant select, insert, update on brigade.consents to ${role};
`;
}
