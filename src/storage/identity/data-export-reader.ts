import { type RawBuilder, sql } from 'kysely';
import type { ExportBatch, ExportSection } from '../../domain/identity/data-rights-service.ts';
import type { UserPrincipal } from '../../domain/identity/principal.ts';
import type { Database } from '../postgres/database.ts';
import { scopeFor } from './scope-for.ts';

/** Rows per read of a section (unless it says otherwise): each page is its own transaction. */
const pageSize = 500;

/** How one section of an export is read. */
interface SectionQuery {
  readonly section: ExportSection;
  readonly table: string;
  /** Columns never exported (secrets, their hashes or ciphertext). */
  readonly omit: readonly string[];
  /** The rows that are the user's, beyond the tenant (row-level security narrows them too). */
  readonly where: (userId: string) => RawBuilder<unknown>;
  /** The keyset the section is paged by (an index's leading columns after tenant_id). */
  readonly keys: readonly string[];
  /** Rows per page where one row may be large (a message holds up to 200,000 characters). */
  readonly pageSize?: number;
}

const byUser = (userId: string) => sql`t.user_id = ${userId}`;

/**
 * What an export holds. Secrets never leave: an API key's hash, a credential's ciphertext and
 * OAuth token material, its fingerprint and last characters. Run events are not exported: they
 * repeat what the messages, steps and runs hold, delta by delta.
 */
const sections: readonly SectionQuery[] = [
  {
    section: 'apiKeys',
    table: 'brigade.api_keys',
    omit: ['key_hash'],
    where: byUser,
    keys: ['id'],
  },
  { section: 'consents', table: 'brigade.consents', omit: [], where: byUser, keys: ['id'] },
  {
    section: 'credentials',
    table: 'brigade.credentials',
    omit: ['ciphertext', 'oauth', 'fingerprint', 'last4', 'refresh_failure'],
    where: byUser,
    keys: ['id'],
  },
  { section: 'threads', table: 'brigade.threads', omit: [], where: byUser, keys: ['id'] },
  {
    section: 'messages',
    table: 'brigade.messages',
    omit: [],
    where: byUser,
    keys: ['id'],
    pageSize: 50,
  },
  { section: 'runs', table: 'brigade.runs', omit: [], where: byUser, keys: ['id'] },
  {
    section: 'runSteps',
    table: 'brigade.run_steps',
    omit: [],
    where: byUser,
    keys: ['run_id', 'step_key'],
    pageSize: 50,
  },
  { section: 'approvals', table: 'brigade.approvals', omit: [], where: byUser, keys: ['id'] },
  { section: 'memories', table: 'brigade.memories', omit: [], where: byUser, keys: ['id'] },
  {
    section: 'usageRecords',
    table: 'brigade.usage_records',
    omit: [],
    where: byUser,
    keys: ['id'],
  },
  // The user's traces: with content capture on, the prompts and answers of their calls.
  {
    section: 'spans',
    table: 'brigade.spans',
    omit: [],
    where: byUser,
    keys: ['trace_id', 'span_id'],
    pageSize: 100,
  },
  {
    section: 'auditEvents',
    table: 'brigade.audit_events',
    omit: ['hash', 'prev_hash', 'hash_version'],
    where: (userId) =>
      sql`(t.actor_user_id = ${userId} or (t.target_type = 'user' and t.target_id = ${userId}))`,
    keys: ['seq'],
  },
];

/** snake_case column names to the API's camelCase (top-level only: stored JSON stays as is). */
function camelCased(row: Readonly<Record<string, unknown>>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(row).map(([key, value]) => [
      key.replace(/_([a-z0-9])/g, (_, letter: string) => letter.toUpperCase()),
      value,
    ]),
  );
}

type KeyedRow = { item: Record<string, unknown> } & Record<`k${number}`, unknown>;

async function readPage(
  database: Database,
  principal: UserPrincipal,
  options: { query: SectionQuery; after: readonly unknown[] | undefined },
): Promise<KeyedRow[]> {
  const { query, after } = options;
  const omitted = query.omit.map((column) => sql` - ${column}::text`);
  const keyColumns = query.keys.map((key) => sql.ref(`t.${key}`));
  const keyed = query.keys.map(
    (key, index) => sql`${sql.ref(`t.${key}`)} as ${sql.ref(`k${index}`)}`,
  );
  const afterClause =
    after === undefined
      ? sql``
      : sql`and (${sql.join(keyColumns)}) > (${sql.join(after.map((value) => sql`${value}`))})`;
  return database.withScope(scopeFor(principal), async (db) => {
    const result = await sql<KeyedRow>`
      select to_jsonb(t) ${sql.join(omitted, sql``)} as item, ${sql.join(keyed)}
        from ${sql.table(query.table)} t
       where t.tenant_id = ${principal.tenantId} and ${query.where(principal.userId)} ${afterClause}
       order by ${sql.join(keyColumns)}
       limit ${query.pageSize ?? pageSize}`.execute(db);
    return result.rows;
  });
}

async function* readSection(
  database: Database,
  principal: UserPrincipal,
  query: SectionQuery,
): AsyncGenerator<ExportBatch> {
  let after: readonly unknown[] | undefined;
  for (;;) {
    const rows = await readPage(database, principal, { query, after });
    if (rows.length > 0)
      yield { section: query.section, items: rows.map((row) => camelCased(row.item)) };
    const last = rows.at(-1);
    if (rows.length < (query.pageSize ?? pageSize) || last === undefined) return;
    after = query.keys.map((_, index) => last[`k${index}`]);
  }
}

/**
 * The signed-in user's own data, section by section, read in the user's own scope (row-level
 * security returns nothing of anyone else's, whatever a query asks for). Every page is a short
 * transaction of its own, so a large export holds no connection while the client reads; the
 * sections are therefore not one snapshot of the database.
 */
export async function* exportBatches(
  database: Database,
  principal: UserPrincipal,
): AsyncGenerator<ExportBatch> {
  const profile = await database.withScope(scopeFor(principal), async (db) =>
    db
      .selectFrom('brigade.users as u')
      .innerJoin('brigade.memberships as m', (join) =>
        join.onRef('m.tenant_id', '=', 'u.tenant_id').onRef('m.user_id', '=', 'u.id'),
      )
      .select(
        sql<Record<string, unknown>>`to_jsonb(u) || jsonb_build_object('role', m.role)`.as('item'),
      )
      .where('u.tenant_id', '=', principal.tenantId)
      .where('u.id', '=', principal.userId)
      .executeTakeFirst(),
  );
  yield { section: 'profile', items: profile === undefined ? [] : [camelCased(profile.item)] };
  for (const query of sections) yield* readSection(database, principal, query);
}
