import type { MigrationContext } from './migration-context.ts';

/**
 * Key lookups in batches (group commit's read-side twin). Every authenticated request looks
 * its key up (`key_identity`, migration 0014): under concurrency, the lookups that arrive
 * while one is in flight in a process now go out together as one call of `key_identities`,
 * which makes each lookup in turn exactly as `key_identity` does. A lookup still reads the
 * database after its request arrived (it waits for the batch in flight, then goes in the
 * next), so a key revoked anywhere stops working for every request that arrives after the
 * revocation committed. Each lookup's tenant scope is cleared before the next one starts.
 */
export function batchedKeyLookupsMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
-- p_hashes: SHA-256 hashes (hex) of presented keys; one row per hash that names a key, with
-- its position (ord from 1) and key_identity's answer. Unknown keys have no row.
create function brigade.key_identities(p_hashes text[])
  returns table (ord int, api_key jsonb, member jsonb) language plpgsql volatile as $$
declare
  i int;
begin
  for i in 1 .. coalesce(array_length(p_hashes, 1), 0) loop
    perform set_config('brigade.tenant_id', '', true);
    return query select i, k.api_key, k.member from brigade.key_identity(p_hashes[i]) k;
  end loop;
  perform set_config('brigade.tenant_id', '', true),
          set_config('brigade.auth_key_hash', '', true);
end $$;

revoke all on function brigade.key_identities(text[]) from public;
grant execute on function brigade.key_identities(text[]) to ${role};
`;
}
