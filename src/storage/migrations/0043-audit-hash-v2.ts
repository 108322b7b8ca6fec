import type { MigrationContext } from './migration-context.ts';

/** The v2 encoding of one field: `-` for NULL, else its UTF-8 byte length, `:` and the text. */
function field(expression: string): string {
  return `case when ${expression} is null then '-'
    else octet_length(convert_to(${expression}, 'UTF8'))::text || ':' || ${expression} end`;
}

/**
 * Audit hash version 2. Version 1 (0001, 0007) joined the fields with `|` and wrote NULL as an
 * empty string, so a NULL turned into `''` (or `''` into NULL) hashed the same, and so did a
 * `|` moved from the end of one field to the start of the next: an edit the chain could not
 * show. Version 2 writes every field as `<byte length>:<text>`, NULL as `-`, one a line after
 * the line `v2`, which no two different records share.
 *
 * `hash_version` records each event's encoding: rows written before this migration keep 1
 * (the chain is never rewritten) and are verified with the old encoding; the trigger writes 2.
 * The version itself is in the v2 input (its first line) and the verifier refuses a version 1
 * row after a version 2 one, so turning a row's version back to 1 is detected too.
 */
export function auditHashV2Migration(_context: MigrationContext): string {
  const fields = [
    'new.tenant_id::text',
    'new.seq::text',
    'new.id::text',
    `to_char(new.occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`,
    'new.actor_kind',
    'new.actor_user_id::text',
    'new.actor_key_id::text',
    'new.action',
    'new.target_type',
    'new.target_id',
    'new.outcome',
    'new.reason',
    'new.data::text',
  ].map(field);
  return `
alter table brigade.audit_events add column hash_version smallint not null default 1;
alter table brigade.audit_events alter column hash_version set default 2;
alter table brigade.audit_events
  add constraint audit_events_hash_version check (hash_version in (1, 2));

create or replace function brigade.audit_chain() returns trigger
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
  as $$
declare
  head brigade.audit_heads%rowtype;
begin
  if new.tenant_id is distinct from brigade.current_tenant_id() then
    raise exception 'audit event outside the current tenant scope' using errcode = '42501';
  end if;
  insert into brigade.audit_heads (tenant_id, seq, hash)
    values (new.tenant_id, 0, '\\x'::bytea)
    on conflict (tenant_id) do nothing;
  select * into head from brigade.audit_heads where tenant_id = new.tenant_id for update;
  if not found then
    raise exception 'audit head not visible in this scope' using errcode = '42501';
  end if;
  new.seq := head.seq + 1;
  new.prev_hash := head.hash;
  new.hash_version := 2;
  new.hash := sha256(head.hash || convert_to(concat_ws(chr(10), 'v2',
    ${fields.join(',\n    ')}), 'UTF8'));
  update brigade.audit_heads set seq = new.seq, hash = new.hash where tenant_id = new.tenant_id;
  return new;
end $$;
`;
}
