import type { MigrationContext } from './migration-context.ts';

/**
 * Sets the user of every existing counter of a role, user or API-key policy (idempotent). The
 * owner reads and writes across tenants, which FORCE makes subject to the policies too; it is
 * lifted for the migration's transaction only.
 */
export const counterOwnersBackfill = `
alter table brigade.limit_counters no force row level security;
alter table brigade.policies no force row level security;
alter table brigade.api_keys no force row level security;
update brigade.limit_counters c set user_id = c.subject_id
  from brigade.policies p
 where p.id = c.policy_id and p.level in ('role', 'user');
update brigade.limit_counters c set user_id = k.user_id
  from brigade.policies p, brigade.api_keys k
 where p.id = c.policy_id and p.level = 'api_key' and k.id = c.subject_id;
alter table brigade.limit_counters force row level security;
alter table brigade.policies force row level security;
alter table brigade.api_keys force row level security;
`;

/**
 * A user's limit counters become theirs alone in the database. Until now every member of a
 * tenant could read every counter of the tenant (`limit_counters_tenant`), so a query without
 * a user filter would have shown one user's spending and quota use to another; the API never
 * did, but isolation is enforced by row-level security, not only by the application.
 *
 * A counter of a role, user or API-key policy counts one user's calls; it now carries that
 * user (`user_id`, set by a trigger from the scope of the call that creates the counter, and
 * backfilled here). Such rows are visible and writable only in that user's scope; tenant
 * admins read them (the API's limits views), the scheduler resolves them. Counters of platform,
 * tenant and agent policies count the whole tenant's calls and stay readable tenant-wide: a
 * member's own limits show how much of the tenant's budget is left.
 */
export function userLimitCountersMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
alter table brigade.limit_counters add column user_id uuid;

${counterOwnersBackfill}

-- A new counter's user: the caller in scope, for the policies that count one user's calls
-- (their subject is that user, or that user's key: brigade.binding_limits). Refused without
-- that user in scope, so such a row is never created tenant-wide or for someone else.
create function brigade.limit_counter_owner() returns trigger
  language plpgsql as $$
declare
  policy_level text := (select p.level from brigade.policies p where p.id = new.policy_id);
begin
  new.user_id := null;
  if policy_level in ('role', 'user', 'api_key') then
    new.user_id := brigade.current_user_id();
    if new.user_id is null
       or (policy_level <> 'api_key' and new.subject_id is distinct from new.user_id) then
      raise exception 'a user''s limit counter is created only in that user''s scope'
        using errcode = '42501';
    end if;
  end if;
  return new;
end $$;
revoke all on function brigade.limit_counter_owner() from public;
grant execute on function brigade.limit_counter_owner() to ${role};
create trigger limit_counters_owner before insert on brigade.limit_counters
  for each row execute function brigade.limit_counter_owner();

drop policy limit_counters_tenant on brigade.limit_counters;
create policy limit_counters_read on brigade.limit_counters for select
  using (brigade.is_scheduler()
      or (tenant_id = (select brigade.current_tenant_id())
          and (user_id is null or user_id = (select brigade.current_user_id())
               or brigade.is_tenant_admin())));
create policy limit_counters_insert on brigade.limit_counters for insert
  with check (brigade.is_scheduler()
      or (tenant_id = (select brigade.current_tenant_id())
          and (user_id is null or user_id = (select brigade.current_user_id()))));
create policy limit_counters_update on brigade.limit_counters for update
  using (brigade.is_scheduler()
      or (tenant_id = (select brigade.current_tenant_id())
          and (user_id is null or user_id = (select brigade.current_user_id()))))
  with check (brigade.is_scheduler()
      or (tenant_id = (select brigade.current_tenant_id())
          and (user_id is null or user_id = (select brigade.current_user_id()))));
`;
}
