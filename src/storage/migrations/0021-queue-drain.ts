import type { MigrationContext } from './migration-context.ts';

/**
 * A queue_full refusal in one round trip. `create_run` refuses a run beyond the tenant's queue
 * limit by raising; the Retry-After it answers with is estimated from how fast the tenant's
 * queue drains (its live claims and their mean age). That read was a scoped transaction of its
 * own — three round trips on every refusal, under exactly the overload that makes refusals
 * common. `queue_drain` reads the same under the same scope (the creating user's, plus
 * `tenant_queue`, which lets it read its own tenant's ids-only queue entries) in one call.
 */
export function queueDrainMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
create function brigade.queue_drain(p_tenant uuid, p_user uuid, p_stale interval)
  returns table (running int, mean_age_ms float8) language plpgsql volatile as $$
begin
  perform set_config('brigade.tenant_id', p_tenant::text, true),
          set_config('brigade.user_id', p_user::text, true),
          set_config('brigade.tenant_queue', 'on', true);
  return query
    select count(*)::int,
           (extract(epoch from avg(clock_timestamp()
              - coalesce(q.first_claimed_at, q.heartbeat_at))) * 1000)::float8
      from brigade.run_queue q
     where q.tenant_id = p_tenant and q.state = 'claimed'
       and q.heartbeat_at >= clock_timestamp() - p_stale;
end $$;

revoke all on function brigade.queue_drain(uuid, uuid, interval) from public;
grant execute on function brigade.queue_drain(uuid, uuid, interval) to ${role};
`;
}
