import type { MigrationContext } from './migration-context.ts';

/**
 * The built-in span store: finished spans of sampled traces that belong to a user, so a user
 * (or their tenant's admins) can read a run's trace over the API with no external collector.
 * Written by the process's span writer (scheduler scope), read under RLS, pruned by age.
 */
export function spansMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
-- Prompt and response text on a tenant's spans: off unless its owners turn it on (and then
-- only for users who consented to content_capture).
alter table brigade.tenants add column capture_content boolean not null default false;

create table brigade.spans (
  tenant_id uuid not null references brigade.tenants (id) on delete cascade,
  trace_id text not null,
  span_id text not null,
  user_id uuid not null,
  parent_span_id text,
  run_id uuid,
  name text not null,
  kind text not null,
  started_at timestamptz not null,
  ended_at timestamptz not null,
  status text not null check (status in ('unset', 'ok', 'error')),
  status_message text,
  attributes jsonb not null default '{}',
  primary key (tenant_id, trace_id, span_id)
);
create index spans_run on brigade.spans (tenant_id, run_id, started_at) where run_id is not null;
create index spans_age on brigade.spans (ended_at);
alter table brigade.spans enable row level security;
alter table brigade.spans force row level security;
create policy spans_read on brigade.spans for select
  using (tenant_id = (select brigade.current_tenant_id())
         and (user_id = (select brigade.current_user_id()) or brigade.is_tenant_admin()));
create policy spans_writer on brigade.spans for insert with check (brigade.is_scheduler());
create policy spans_pruner on brigade.spans for delete using (brigade.is_scheduler());
grant select, insert, delete on brigade.spans to ${role};
`;
}
