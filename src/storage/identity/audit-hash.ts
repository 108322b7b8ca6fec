import { type RawBuilder, sql } from 'kysely';

/**
 * Version 1 of an audit event's hash (migrations 0001 and 0007): the fields joined by `|`,
 * NULL as an empty string. Kept to verify events written before migration 0043.
 */
const hashV1 = sql`sha256(prev_hash || convert_to(concat_ws('|',
  tenant_id::text, seq::text, id::text,
  to_char(occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
  actor_kind, coalesce(actor_user_id::text, ''), coalesce(actor_key_id::text, ''),
  action, coalesce(target_type, ''), coalesce(target_id, ''), outcome,
  coalesce(reason, ''), data::text), 'UTF8'))`;

/** One field in the v2 encoding: `-` for NULL, else its UTF-8 byte length, `:` and the text. */
function v2Field(expression: string): RawBuilder<unknown> {
  return sql.raw(`case when ${expression} is null then '-'
    else octet_length(convert_to(${expression}, 'UTF8'))::text || ':' || ${expression} end`);
}

/**
 * Version 2 (migration 0043): the line `v2`, then every field on a line of its own as
 * `<byte length>:<text>` or `-` for NULL, so NULL and an empty string differ and no text can
 * move from one field into the next.
 */
const hashV2 = sql`sha256(prev_hash || convert_to(concat_ws(chr(10), 'v2', ${sql.join(
  [
    'tenant_id::text',
    'seq::text',
    'id::text',
    `to_char(occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`,
    'actor_kind',
    'actor_user_id::text',
    'actor_key_id::text',
    'action',
    'target_type',
    'target_id',
    'outcome',
    'reason',
    'data::text',
  ].map(v2Field),
)}), 'UTF8'))`;

/**
 * The hash the chain trigger computed, recomputed from a row of `brigade.audit_events` with the
 * encoding its `hash_version` names (must match migrations 0007 and 0043). Written out here,
 * not called as a database function, so that whoever can change the database's functions
 * cannot change what the verifier computes. NULL for an unknown version (never a match).
 */
export const recomputedHash = sql<Buffer | null>`case hash_version
  when 1 then ${hashV1} when 2 then ${hashV2} end`;

/** The event's time as its hash covers it: UTC, microseconds (`YYYY-MM-DDTHH:MM:SS.ffffffZ`). */
export const hashedOccurredAt = sql<string>`to_char(occurred_at at time zone 'UTC',
  'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
