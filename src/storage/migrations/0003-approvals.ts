import type { MigrationContext } from './migration-context.ts';

/**
 * Approvals: a tool call that needs its user's consent parks the run (it holds no
 * concurrency slot) until the user approves, rejects or edits the exact call.
 */
export function approvalsMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
alter table brigade.agents add column approval_required_tools text[] not null default '{}';

alter table brigade.run_queue drop constraint run_queue_state_check;
alter table brigade.run_queue add constraint run_queue_state_check check (state in ('queued', 'claimed', 'parked'));

create table brigade.approvals (
  tenant_id uuid not null,
  id uuid not null default gen_random_uuid(),
  user_id uuid not null,
  thread_id uuid not null,
  run_id uuid not null,
  tool_call_id text not null,
  tool_name text not null,
  arguments jsonb not null,
  arguments_hash text not null,
  reason text not null,
  status text not null default 'pending' check (status in ('pending', 'approved', 'rejected', 'expired')),
  decision text check (decision in ('approve', 'reject', 'edit')),
  edited_arguments jsonb,
  decision_reason text,
  decided_at timestamptz,
  expires_at timestamptz not null,
  created_at timestamptz not null default now(),
  primary key (tenant_id, id),
  unique (id),
  unique (tenant_id, run_id, tool_call_id),
  foreign key (tenant_id, run_id) references brigade.runs (tenant_id, id) on delete cascade
);
create index approvals_pending on brigade.approvals (tenant_id, user_id) where status = 'pending';
alter table brigade.approvals enable row level security;
alter table brigade.approvals force row level security;
create policy approvals_owner on brigade.approvals for all
  using (tenant_id = (select brigade.current_tenant_id()) and user_id = (select brigade.current_user_id()))
  with check (tenant_id = (select brigade.current_tenant_id()) and user_id = (select brigade.current_user_id()));
grant select, insert, update on brigade.approvals to ${role};
`;
}
