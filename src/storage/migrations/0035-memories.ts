import type { MigrationContext } from './migration-context.ts';

/**
 * Memory a core keeps for a user (`ctx.memory`, docs/writing-a-core.md): a thread's memory
 * (`thread_id` set; deleted with the thread) and the user's long-term memory (`thread_id`
 * null; written only with the user's `long_term_memory` consent). Owned by one user like
 * threads: only that user's scope sees the rows, not even the tenant's admins.
 *
 * A key is unique per user and thread, and per user for long-term memory: two partial unique
 * indexes rather than `nulls not distinct`, which PostgreSQL 14 (still supported in server
 * mode) lacks. Values are checked by the runtime (16 KiB of JSON); the check here is only a
 * backstop against a runaway writer, on PostgreSQL's own text form of `jsonb`, which can be
 * far longer than the JSON it came from (`", "` for `,`, and every digit of a number: `1e300`
 * is 301 characters), so it allows 1 MiB.
 */
export function memoriesMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  return `
create table brigade.memories (
  tenant_id uuid not null,
  id uuid not null default gen_random_uuid(),
  user_id uuid not null,
  thread_id uuid,
  key text not null check (key ~ '^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$'),
  value jsonb not null check (octet_length(value::text) <= 1048576),
  run_id uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  unique (id),
  foreign key (tenant_id, user_id) references brigade.users (tenant_id, id) on delete cascade,
  foreign key (tenant_id, thread_id) references brigade.threads (tenant_id, id) on delete cascade
);
create unique index memories_user_key on brigade.memories (tenant_id, user_id, key)
  where thread_id is null;
create unique index memories_thread_key on brigade.memories (tenant_id, user_id, thread_id, key)
  where thread_id is not null;
create index memories_user on brigade.memories (tenant_id, user_id, id);
create index memories_thread on brigade.memories (tenant_id, thread_id);

alter table brigade.memories enable row level security;
alter table brigade.memories force row level security;
create policy memories_owner on brigade.memories for all
  using (tenant_id = (select brigade.current_tenant_id()) and user_id = (select brigade.current_user_id()))
  with check (tenant_id = (select brigade.current_tenant_id()) and user_id = (select brigade.current_user_id()));
grant select, insert, update, delete on brigade.memories to ${role};
`;
}
