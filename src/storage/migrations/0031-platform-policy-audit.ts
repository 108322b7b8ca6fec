import type { MigrationContext } from './migration-context.ts';

/**
 * Platform policies (the operator's, binding every tenant) are audited. The audit log is a
 * hash chain per tenant and a platform policy belongs to no tenant, so until now its changes
 * were in no chain at all. `audit_in_every_tenant` appends the same event to the chain of every
 * tenant it binds, in the caller's transaction: each tenant's admins see, in their own
 * tamper-evident log, the operator changing limits that apply to them. One event per tenant
 * (a change touches every tenant's audit head, in tenant id order, so two changes never wait
 * on each other in opposite orders); rare operator actions, so the fan-out is affordable.
 *
 * Operator scope only; each insert runs under that tenant's scope (set and then restored), so
 * the chain trigger and the append policy apply as to any other event.
 */
export function platformPolicyAuditMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
create function brigade.audit_in_every_tenant(p_event jsonb)
  returns int language plpgsql volatile as $$
declare
  previous text := coalesce(current_setting('brigade.tenant_id', true), '');
  tenant uuid;
  written int := 0;
begin
  if not brigade.is_operator() then
    raise exception 'only the operator writes to every tenant''s audit log' using errcode = '42501';
  end if;
  for tenant in select t.id from brigade.tenants t order by t.id loop
    perform set_config('brigade.tenant_id', tenant::text, true);
    insert into brigade.audit_events (tenant_id, actor_kind, actor_user_id, actor_key_id, action,
                                      target_type, target_id, outcome, reason, data)
    values (tenant, p_event ->> 'actor_kind', (p_event ->> 'actor_user_id')::uuid,
            (p_event ->> 'actor_key_id')::uuid, p_event ->> 'action', p_event ->> 'target_type',
            p_event ->> 'target_id', p_event ->> 'outcome', p_event ->> 'reason',
            coalesce(p_event -> 'data', '{}'::jsonb));
    written := written + 1;
  end loop;
  perform set_config('brigade.tenant_id', previous, true);
  return written;
end $$;
revoke all on function brigade.audit_in_every_tenant(jsonb) from public;
grant execute on function brigade.audit_in_every_tenant(jsonb) to ${role};
`;
}
