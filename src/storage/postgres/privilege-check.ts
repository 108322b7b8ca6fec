import { type Kysely, sql } from 'kysely';
import type pg from 'pg';

/** Kysely's PostgreSQL migration lock (an advisory lock id): held while migrations run. */
const migrationLockId = BigInt('3853314791062309107');

/**
 * Tables of the `brigade` schema that have no row-level security because the runtime role may
 * not touch them at all (Kysely's migration bookkeeping, written only by the owner).
 */
const exemptTables = ['kysely_migration', 'kysely_migration_lock'];

/**
 * Predefined roles that read or write the server's files or run programs on it: a member can
 * read every tenant's rows from the data files, or become the superuser.
 */
const serverAccessRoles = [
  'pg_execute_server_program',
  'pg_read_server_files',
  'pg_write_server_files',
];

/** Anything that runs a parameterised query (a `pg.Pool`, a client). */
export interface PrivilegeCheckClient {
  query<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/**
 * Roles the login can act as (SET ROLE works even under NOINHERIT) that would take it around
 * row-level security: a superuser, a BYPASSRLS role, a role owning any object of this database
 * (the owner of Brigade's tables may turn their row-level security off, and policies granted
 * to the owner apply to its members), or a role with access to the server's files.
 */
async function escalations(client: PrivilegeCheckClient): Promise<string[]> {
  const result = await client.query<{ name: string; why: string }>(
    `select b.rolname as name,
            case when b.rolsuper then 'a superuser'
                 when b.rolbypassrls then 'BYPASSRLS'
                 when b.rolname = any($1::text[]) then 'access to the server''s files'
                 else 'the owner of objects in this database' end as why
       from pg_roles b
      where b.rolname not in (current_user, session_user)
        and pg_has_role(session_user, b.oid, 'MEMBER')
        and (b.rolsuper or b.rolbypassrls or b.rolname = any($1::text[])
             or exists (select 1 from pg_class c where c.relowner = b.oid)
             or exists (select 1 from pg_proc p where p.proowner = b.oid)
             or exists (select 1 from pg_namespace n where n.nspowner = b.oid)
             or exists (select 1 from pg_database d
                         where d.datname = current_database() and d.datdba = b.oid))
      order by 1`,
    [serverAccessRoles],
  );
  return result.rows.map(({ name, why }) => `is a member of "${name}" (${why})`);
}

/** Table privileges no migration grants and row-level security does not cover. */
async function tableProblems(client: PrivilegeCheckClient): Promise<string[]> {
  const result = await client.query<{
    name: string;
    rls: boolean;
    forced: boolean;
    truncate: boolean;
    any_privilege: boolean;
    rewrite: boolean;
  }>(
    `select c.relname as name, c.relrowsecurity as rls, c.relforcerowsecurity as forced,
            has_table_privilege(c.oid, 'TRUNCATE') as truncate,
            has_any_column_privilege(c.oid, 'SELECT, INSERT, UPDATE, REFERENCES')
              or has_table_privilege(c.oid, 'DELETE, TRUNCATE, TRIGGER') as any_privilege,
            has_any_column_privilege(c.oid, 'UPDATE') or has_table_privilege(c.oid, 'DELETE')
              as rewrite
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'brigade' and c.relkind in ('r', 'p')
      order by c.relname`,
  );
  const problems: string[] = [];
  for (const table of result.rows) {
    const name = `brigade.${table.name}`;
    if (exemptTables.includes(table.name)) {
      if (table.any_privilege)
        problems.push(`has privileges on ${name}, which has no row-level security`);
      continue;
    }
    if (!table.rls || !table.forced)
      problems.push(`reads ${name}, whose row-level security is off or not forced`);
    if (table.truncate) problems.push(`may TRUNCATE ${name} (TRUNCATE ignores row-level security)`);
    if (table.name === 'audit_events' && table.rewrite) {
      problems.push(`may UPDATE or DELETE ${name}, which must be append-only`);
    }
  }
  return problems;
}

/** Functions running with their owner's rights, and schemas the login may add objects to. */
async function otherProblems(client: PrivilegeCheckClient): Promise<string[]> {
  const definers = await client.query<{ name: string }>(
    `select p.oid::regprocedure::text as name
       from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = 'brigade' and p.prosecdef and has_function_privilege(p.oid, 'EXECUTE')
      order by 1`,
  );
  const create = await client.query<{ name: string }>(
    `select 'schema ' || quote_ident(n.nspname) as name from pg_namespace n
      where has_schema_privilege(n.oid, 'CREATE')
     union all
     select 'database ' || quote_ident(current_database())
      where has_database_privilege(current_database(), 'CREATE')
     order by 1`,
  );
  return [
    ...definers.rows.map(({ name }) => `may execute ${name}, which runs as its owner`),
    ...create.rows.map(({ name }) => `may create objects in ${name}`),
  ];
}

/**
 * Every way the runtime login (the role `client` is connected as) could read or change rows
 * outside its row-level-security scope, as phrases: membership in a role that can bypass it,
 * privileges that are not subject to it, tables it does not protect. Empty when isolation
 * holds. The superuser, BYPASSRLS and ownership attributes of the login itself are checked by
 * the caller.
 */
export async function findPrivilegeProblems(client: PrivilegeCheckClient): Promise<string[]> {
  // A role it can become makes every other privilege moot, and would list most of them again.
  const roles = await escalations(client);
  if (roles.length > 0) return roles;
  return [...(await tableProblems(client)), ...(await otherProblems(client))];
}

/**
 * Revokes, as the owner, what the runtime role must never hold on Brigade's tables but may
 * have been given by default privileges (`ALTER DEFAULT PRIVILEGES … GRANT ALL ON TABLES`, a
 * common setup on managed servers): TRUNCATE, TRIGGER and REFERENCES, anything on the
 * migration tables, UPDATE and DELETE on the audit log. Serialises with migrations of other
 * processes on Kysely's migration lock, so concurrent GRANT/REVOKE never collide.
 */
export async function revokeExcessPrivileges(
  owner: Kysely<unknown>,
  runtimeRole: string,
): Promise<void> {
  const role = sql.id(runtimeRole);
  await owner.transaction().execute(async (transaction) => {
    await sql`select pg_advisory_xact_lock(${sql.lit(migrationLockId)})`.execute(transaction);
    await sql`revoke truncate, trigger, references on all tables in schema brigade from ${role}`.execute(
      transaction,
    );
    await sql`revoke all on brigade.kysely_migration, brigade.kysely_migration_lock from ${role}`.execute(
      transaction,
    );
    await sql`revoke update, delete on brigade.audit_events from ${role}`.execute(transaction);
  });
}
