import type { MigrationContext } from './migration-context.ts';

/**
 * Agents (tenant-wide), and threads, messages, runs, run events and run steps (owned by one
 * user: only that user's scope sees them, not even the tenant's admins).
 */
export function agentsThreadsRunsMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  const userOwned = (table: string) => `
alter table brigade.${table} enable row level security;
alter table brigade.${table} force row level security;
create policy ${table}_owner on brigade.${table} for all
  using (tenant_id = (select brigade.current_tenant_id()) and user_id = (select brigade.current_user_id()))
  with check (tenant_id = (select brigade.current_tenant_id()) and user_id = (select brigade.current_user_id()));
grant select, insert, update, delete on brigade.${table} to ${role};`;
  return `
create table brigade.agents (
  tenant_id uuid not null references brigade.tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  name text not null check (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
  description text,
  instructions text not null default '' check (char_length(instructions) <= 100000),
  model text not null,
  tools text[] not null default '{}',
  core_id text not null default 'tool-loop',
  max_steps int not null default 8 check (max_steps between 1 and 100),
  run_timeout_ms int not null default 120000 check (run_timeout_ms between 1000 and 3600000),
  max_output_tokens int not null default 1024 check (max_output_tokens between 1 and 200000),
  metadata jsonb not null default '{}',
  created_by_user_id uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  unique (id),
  unique (tenant_id, name)
);
alter table brigade.agents enable row level security;
alter table brigade.agents force row level security;
create policy agents_read on brigade.agents for select
  using (tenant_id = (select brigade.current_tenant_id()));
create policy agents_write on brigade.agents for all
  using (tenant_id = (select brigade.current_tenant_id()) and brigade.is_tenant_admin())
  with check (tenant_id = (select brigade.current_tenant_id()) and brigade.is_tenant_admin());
grant select, insert, update, delete on brigade.agents to ${role};

create table brigade.threads (
  tenant_id uuid not null references brigade.tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  user_id uuid not null,
  title text check (title is null or char_length(title) <= 500),
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  unique (id),
  foreign key (tenant_id, user_id) references brigade.users (tenant_id, id) on delete cascade
);
create index threads_user on brigade.threads (tenant_id, user_id, id);
${userOwned('threads')}

create table brigade.runs (
  tenant_id uuid not null,
  id uuid not null default gen_random_uuid(),
  thread_id uuid not null,
  user_id uuid not null,
  agent_id uuid not null,
  status text not null default 'queued'
    check (status in ('queued', 'running', 'requires_action', 'completed', 'failed', 'cancelled', 'expired')),
  strategy text not null default 'enqueue' check (strategy in ('reject', 'enqueue', 'interrupt', 'rollback')),
  error_code text,
  error_message text,
  input_tokens int not null default 0,
  output_tokens int not null default 0,
  step_count int not null default 0,
  pending_action jsonb,
  cancel_requested_at timestamptz,
  deadline_at timestamptz,
  created_at timestamptz not null default now(),
  started_at timestamptz,
  completed_at timestamptz,
  primary key (tenant_id, id),
  unique (id),
  foreign key (tenant_id, thread_id) references brigade.threads (tenant_id, id) on delete cascade
);
create index runs_thread on brigade.runs (tenant_id, thread_id, created_at);
create index runs_active on brigade.runs (status) where status in ('queued', 'running');
${userOwned('runs')}

create table brigade.messages (
  tenant_id uuid not null,
  id uuid not null default gen_random_uuid(),
  thread_id uuid not null,
  user_id uuid not null,
  seq bigint generated always as identity,
  run_id uuid,
  role text not null check (role in ('user', 'assistant', 'tool', 'system')),
  content jsonb not null,
  provenance text not null,
  input_tokens int,
  output_tokens int,
  created_at timestamptz not null default now(),
  primary key (tenant_id, id),
  unique (id),
  foreign key (tenant_id, thread_id) references brigade.threads (tenant_id, id) on delete cascade
);
create index messages_thread on brigade.messages (tenant_id, thread_id, seq);
${userOwned('messages')}

create table brigade.run_events (
  tenant_id uuid not null,
  run_id uuid not null,
  seq int not null,
  user_id uuid not null,
  type text not null,
  data jsonb not null default '{}',
  created_at timestamptz not null default clock_timestamp(),
  primary key (tenant_id, run_id, seq),
  foreign key (tenant_id, run_id) references brigade.runs (tenant_id, id) on delete cascade
);
${userOwned('run_events')}

create table brigade.run_steps (
  tenant_id uuid not null,
  run_id uuid not null,
  step_key text not null,
  user_id uuid not null,
  kind text not null check (kind in ('model', 'tool')),
  output jsonb not null,
  created_at timestamptz not null default clock_timestamp(),
  primary key (tenant_id, run_id, step_key),
  foreign key (tenant_id, run_id) references brigade.runs (tenant_id, id) on delete cascade
);
${userOwned('run_steps')}

-- The scheduler's work list: ids and timing only, never content (so runs can be claimed
-- across tenants by a process-level scheduler scope without exposing any user data).
create table brigade.run_queue (
  run_id uuid primary key,
  tenant_id uuid not null,
  user_id uuid not null,
  thread_id uuid not null,
  state text not null default 'queued' check (state in ('queued', 'claimed')),
  executor_id text,
  heartbeat_at timestamptz,
  enqueued_at timestamptz not null default clock_timestamp()
);
create index run_queue_thread on brigade.run_queue (thread_id);
alter table brigade.run_queue enable row level security;
alter table brigade.run_queue force row level security;
create policy run_queue_scheduler on brigade.run_queue for all
  using (coalesce(current_setting('brigade.scheduler', true), '') = 'on'
         or (tenant_id = (select brigade.current_tenant_id()) and user_id = (select brigade.current_user_id())))
  with check (coalesce(current_setting('brigade.scheduler', true), '') = 'on'
         or (tenant_id = (select brigade.current_tenant_id()) and user_id = (select brigade.current_user_id())));
grant select, insert, update, delete on brigade.run_queue to ${role};
`;
}
