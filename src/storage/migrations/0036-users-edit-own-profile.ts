import type { MigrationContext } from './migration-context.ts';

/**
 * A user edits their own profile (display name and metadata, `updateUser` on themselves with
 * the `profile:update-own` scope). Until now only a tenant admin's scope could write
 * `brigade.users` (migration 0001), so a member's or viewer's own edit, which the API allows,
 * was refused by row-level security. The new policy lets a scope update its own user row only,
 * and a trigger keeps such an update to those two columns (and `updated_at`): identity fields,
 * the e-mail and the status stay an admin's to change.
 */
export function usersEditOwnProfileMigration({ runtimeRole }: MigrationContext): string {
  return `
create policy users_edit_own_profile on brigade.users for update
  using (tenant_id = (select brigade.current_tenant_id())
         and id = (select brigade.current_user_id()))
  with check (tenant_id = (select brigade.current_tenant_id())
              and id = (select brigade.current_user_id()));

create function brigade.users_own_profile_only() returns trigger language plpgsql as $$
begin
  if not brigade.is_tenant_admin() and not brigade.is_operator()
     and (new.tenant_id, new.id, new.email, new.status, new.external_issuer,
          new.external_subject, new.created_at)
         is distinct from
         (old.tenant_id, old.id, old.email, old.status, old.external_issuer,
          old.external_subject, old.created_at) then
    raise exception 'only the display name and metadata of one''s own user may change'
      using errcode = '42501';
  end if;
  return new;
end $$;
create trigger users_own_profile_only before update on brigade.users
  for each row execute function brigade.users_own_profile_only();
grant execute on function brigade.users_own_profile_only() to "${runtimeRole}";
`;
}
