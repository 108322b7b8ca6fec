import type { MigrationContext } from './migration-context.ts';

/**
 * A run is created only for an active user of an active tenant, checked in the inserting
 * transaction, so a request authenticated just before its user was disabled (or its tenant
 * suspended) cannot leave a run behind the cancellation that followed (runtime cancels the
 * active runs after the status change commits: storage/runs/run-cancellation.ts).
 *
 * The check and the status change serialise on transaction-level advisory locks, one per user
 * and one per tenant: every run insert takes both shared, a status change takes its one
 * exclusive. A create that took its locks first commits before the status change can, and the
 * cancellation after it sees the run; a create that comes after waits for the change to
 * commit and reads the new status (each statement of the function reads anew). Advisory
 * rather than row locks: row-level security hides the tenant row from members' FOR SHARE, and
 * 64 concurrent creates of one user sharing a row lock would each make a new MultiXact.
 * Refused: SQLSTATE BRG16.
 */
export function runsRequireAccessMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
create function brigade.access_lock_key(p_kind text, p_id uuid) returns int
  language sql immutable parallel safe
  as $$ select hashtext(p_kind || ':' || p_id::text) $$;

create function brigade.runs_require_access() returns trigger
  language plpgsql
  as $$
begin
  perform pg_advisory_xact_lock_shared(
    hashtext('brigade.access'), brigade.access_lock_key('tenant', new.tenant_id));
  perform pg_advisory_xact_lock_shared(
    hashtext('brigade.access'), brigade.access_lock_key('user', new.user_id));
  if not exists (select 1 from brigade.tenants t
                  where t.id = new.tenant_id and t.status = 'active')
     or not exists (select 1 from brigade.users u
                     where u.tenant_id = new.tenant_id and u.id = new.user_id
                       and u.status = 'active') then
    raise exception 'the user is disabled or the organisation suspended' using errcode = 'BRG16';
  end if;
  return new;
end
$$;

create trigger runs_require_access before insert on brigade.runs
  for each row execute function brigade.runs_require_access();

grant execute on function brigade.access_lock_key(text, uuid) to ${role};
grant execute on function brigade.runs_require_access() to ${role};
`;
}
