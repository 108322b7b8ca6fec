import type { MigrationContext } from './migration-context.ts';

/**
 * Captured prompts and answers (`gen_ai.input.messages`, `gen_ai.output.messages` on `chat`
 * spans) no longer outlive what allowed them:
 *
 * - Deleting a thread deletes its runs' spans (thread-store.ts), and revoking the
 *   `content_capture` consent strips the captured content from the user's stored spans
 *   (consent-store.ts). The strip is an UPDATE of `attributes` only, in the scheduler's scope
 *   (policy `spans_scrubber`), as the prune and the erasure delete spans in it.
 * - Spans reach the store up to a second after they end, and a process decides to capture
 *   from a flag and a consent it caches for 5 s: a span of a run whose thread was just
 *   deleted, or with content captured just before a revocation, would still be written after
 *   it. `write_spans` checks at write time instead: spans of a run that no longer exists are
 *   dropped, and captured content is kept only while the tenant captures and the user's
 *   `content_capture` consent is granted (scope `*`, or the run's agent). It reads runs, tenants and consents in
 *   each span owner's own scope (SECURITY INVOKER, as the checkpoint functions), one group of
 *   spans per user, then inserts in the scheduler's scope as before — one round trip a batch.
 */
export function spanContentLifetimeMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
grant update (attributes) on brigade.spans to ${role};
create policy spans_scrubber on brigade.spans for update
  using (brigade.is_scheduler()) with check (brigade.is_scheduler());

create function brigade.write_spans(p_spans jsonb)
  returns void language plpgsql volatile as $$
declare
  owner record;
  alive uuid[] := '{}';
  capturing text[] := '{}';
  capturing_runs uuid[] := '{}';
  saved_tenant text := coalesce(current_setting('brigade.tenant_id', true), '');
  saved_user text := coalesce(current_setting('brigade.user_id', true), '');
begin
  for owner in
    select s.tenant_id, s.user_id,
           array_agg(distinct s.run_id) filter (where s.run_id is not null) as runs,
           bool_or(s.attributes ?| array['gen_ai.input.messages', 'gen_ai.output.messages'])
             as captured
      from jsonb_to_recordset(p_spans) as s(tenant_id uuid, user_id uuid, run_id uuid,
                                            attributes jsonb)
     group by s.tenant_id, s.user_id
  loop
    -- The owner's own scope: their runs and consents, their tenant's flag.
    perform set_config('brigade.tenant_id', owner.tenant_id::text, true),
            set_config('brigade.user_id', owner.user_id::text, true);
    if owner.runs is not null then
      if owner.captured then
        -- Locked (KEY SHARE) until the spans are in: a thread's deletion, which locks its
        -- runs, commits before (the runs are gone) or after (it deletes these spans too), so
        -- no captured content outlives it. Spans without content (ids only) are not worth a
        -- row lock on every run of the batch.
        alive := alive || array(select r.id from brigade.runs r where r.id = any(owner.runs)
                                   for key share);
      else
        alive := alive || array(select r.id from brigade.runs r where r.id = any(owner.runs));
      end if;
    end if;
    if owner.captured
       and exists (select 1 from brigade.tenants t
                    where t.id = owner.tenant_id and t.capture_content) then
      -- Consents locked (SHARE) likewise against a revocation's scrub.
      if exists (select 1 from brigade.consents c
                  where c.tenant_id = owner.tenant_id and c.user_id = owner.user_id
                    and c.purpose = 'content_capture' and c.status = 'granted'
                    and c.scope = '*' for share) then
        capturing := capturing || (owner.tenant_id::text || '/' || owner.user_id::text);
      elsif owner.runs is not null then
        -- A consent scoped to an agent covers that agent's runs only.
        capturing_runs := capturing_runs || array(
          select r.id from brigade.runs r
           where r.id = any(owner.runs)
             and exists (select 1 from brigade.consents c
                          where c.tenant_id = owner.tenant_id and c.user_id = owner.user_id
                            and c.purpose = 'content_capture' and c.status = 'granted'
                            and c.scope = r.agent_id::text)
           for key share of r);
      end if;
    end if;
  end loop;
  perform set_config('brigade.tenant_id', saved_tenant, true),
          set_config('brigade.user_id', saved_user, true);
  insert into brigade.spans
    (tenant_id, trace_id, span_id, user_id, parent_span_id, run_id, name, kind,
     started_at, ended_at, status, status_message, attributes)
  -- A span of a run that is gone (or that its owner's scope cannot see) is dropped: a deleted
  -- thread leaves nothing that names its runs.
  select s.tenant_id, s.trace_id, s.span_id, s.user_id, s.parent_span_id, s.run_id, s.name,
         s.kind, s.started_at, s.ended_at, s.status, s.status_message,
         case when (s.tenant_id::text || '/' || s.user_id::text) = any(capturing)
                   or s.run_id = any(capturing_runs)
              then s.attributes
              else s.attributes - 'gen_ai.input.messages' - 'gen_ai.output.messages' end
    from jsonb_to_recordset(p_spans) as s(tenant_id uuid, trace_id text, span_id text,
                                          user_id uuid, parent_span_id text, run_id uuid,
                                          name text, kind text, started_at timestamptz,
                                          ended_at timestamptz, status text,
                                          status_message text, attributes jsonb)
   where (s.run_id is null or s.run_id = any(alive))
     and exists (select 1 from brigade.memberships m
                  where m.tenant_id = s.tenant_id and m.user_id = s.user_id)
  on conflict do nothing;
end $$;

revoke all on function brigade.write_spans(jsonb) from public;
grant execute on function brigade.write_spans(jsonb) to ${role};
`;
}
