import { type AliasedRawBuilder, type RawBuilder, type SqlBool, sql } from 'kysely';
import {
  type CreationCursor,
  decodeCreationCursor,
  encodeCreationCursor,
} from '../../domain/creation-cursor.ts';
import { ValidationError } from '../../domain/errors.ts';
import type { Page } from '../../domain/identity/identity-ports.ts';

/**
 * Selects a row's `created_at` as microseconds since the epoch, exactly: `extract` returns
 * `numeric` since PostgreSQL 14. (A `Date` keeps milliseconds only, and a cursor that rounded
 * would skip or repeat the rows created within the same millisecond.)
 */
export function creationMicros(): AliasedRawBuilder<string, 'creation_micros'> {
  return sql<string>`(extract(epoch from created_at) * 1000000)::bigint::text`.as(
    'creation_micros',
  );
}

/** The ISO 8601 text of `micros` with all six fractional digits (PostgreSQL parses it exactly). */
function isoOfMicros(micros: string): string {
  const value = BigInt(micros);
  const seconds = new Date(Number(value / 1_000_000n) * 1000).toISOString().slice(0, 19);
  return `${seconds}.${(value % 1_000_000n).toString().padStart(6, '0')}Z`;
}

/**
 * The cursor `after` (query parameter text), or a 422 when it is not one. The HTTP layer
 * checks the format first; this keeps a malformed cursor from reaching SQL by another path.
 */
export function parseCreationCursor(after: string): CreationCursor {
  const cursor = decodeCreationCursor(after);
  if (cursor === undefined)
    throw new ValidationError([
      { path: 'query.after', message: 'must be the nextCursor of a previous page' },
    ]);
  return cursor;
}

/**
 * Keeps the rows that come after `cursor` in creation order, `(created_at, id)`. The separate
 * `created_at >=` bound lets an index on `created_at` start at the cursor.
 */
export function afterCreation(cursor: CreationCursor): RawBuilder<SqlBool> {
  const at = sql`${isoOfMicros(cursor.micros)}::timestamptz`;
  return sql<SqlBool>`created_at >= ${at} and (created_at, id) > (${at}, ${cursor.id}::uuid)`;
}

/**
 * Turns rows fetched in creation order with `limit + 1` (and {@link creationMicros}) into a
 * page of `map(row)` and the cursor after its last row (null at the end).
 */
export function toCreationPage<
  Row extends { readonly id: string; readonly creation_micros: string },
  T,
>(rows: readonly Row[], page: { readonly limit: number; readonly map: (row: Row) => T }): Page<T> {
  const kept = rows.slice(0, page.limit);
  const last = kept.at(-1);
  return {
    data: kept.map(page.map),
    nextCursor:
      rows.length > page.limit && last !== undefined
        ? encodeCreationCursor({ micros: last.creation_micros, id: last.id })
        : null,
  };
}
