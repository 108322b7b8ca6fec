import type pg from 'pg';

/** The schema whose tables must all be protected by row-level security. */
export const rlsSchema = 'brigade';

/**
 * Tables of {@link rlsSchema} that may go without row-level security because the runtime role
 * cannot touch them at all: Kysely's migration bookkeeping, written only by the owner.
 */
export const rlsExemptTables: readonly string[] = ['kysely_migration', 'kysely_migration_lock'];

/** Anything that runs a parameterised query: a `pg.Pool`, `pg.Client` or pooled client. */
export interface CatalogClient {
  query<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

interface RoleRow {
  readonly superuser: boolean;
  readonly bypass_rls: boolean;
  readonly can_create_schemas: boolean;
}

interface TableRow {
  readonly name: string;
  readonly rls: boolean;
  readonly forced: boolean;
  readonly policies: number;
  readonly privileges: string[];
}

interface NameRow {
  readonly name: string;
}

const privilegeChecks = `array_remove(array[
    case when has_any_column_privilege($1, c.oid, 'SELECT') then 'SELECT' end,
    case when has_any_column_privilege($1, c.oid, 'INSERT') then 'INSERT' end,
    case when has_any_column_privilege($1, c.oid, 'UPDATE') then 'UPDATE' end,
    case when has_table_privilege($1, c.oid, 'DELETE') then 'DELETE' end,
    case when has_table_privilege($1, c.oid, 'TRUNCATE') then 'TRUNCATE' end,
    case when has_any_column_privilege($1, c.oid, 'REFERENCES') then 'REFERENCES' end,
    case when has_table_privilege($1, c.oid, 'TRIGGER') then 'TRIGGER' end
  ], null)`;

async function roleViolations(client: CatalogClient, runtimeRole: string): Promise<string[]> {
  const role = await client.query<RoleRow>(
    `select r.rolsuper as superuser, r.rolbypassrls as bypass_rls,
            has_database_privilege(r.oid, current_database(), 'CREATE') as can_create_schemas
       from pg_roles r where r.rolname = $1`,
    [runtimeRole],
  );
  const facts = role.rows[0];
  if (facts === undefined) return [`runtime role ${runtimeRole} does not exist`];
  const violations: string[] = [];
  if (facts.superuser) violations.push(`runtime role ${runtimeRole} is a superuser`);
  if (facts.bypass_rls) violations.push(`runtime role ${runtimeRole} has BYPASSRLS`);
  if (facts.can_create_schemas) {
    violations.push(`runtime role ${runtimeRole} may create schemas in this database`);
  }
  // NOINHERIT does not stop SET ROLE: membership in a privileged role is a way around RLS.
  const escalations = await client.query<NameRow>(
    `select b.rolname as name from pg_roles b
      where b.rolname <> $1 and (b.rolsuper or b.rolbypassrls)
        and pg_has_role($1, b.oid, 'MEMBER')
      order by 1`,
    [runtimeRole],
  );
  for (const { name } of escalations.rows) {
    violations.push(`runtime role ${runtimeRole} is a member of the privileged role ${name}`);
  }
  return violations;
}

async function ownershipViolations(client: CatalogClient, runtimeRole: string): Promise<string[]> {
  const owned = await client.query<NameRow>(
    `with r as (select oid from pg_roles where rolname = $1)
     select 'relation ' || c.oid::regclass::text as name from pg_class c, r
      where c.relowner = r.oid and c.relnamespace::regnamespace::text not like 'pg_toast%'
     union all
     select 'function ' || p.oid::regprocedure::text from pg_proc p, r where p.proowner = r.oid
     union all
     select 'schema ' || quote_ident(n.nspname) from pg_namespace n, r where n.nspowner = r.oid
     union all
     select 'type ' || t.oid::regtype::text from pg_type t, r
      where t.typowner = r.oid and t.typrelid = 0 and t.typcategory <> 'A'
     order by 1`,
    [runtimeRole],
  );
  const creatable = await client.query<NameRow>(
    `select quote_ident(n.nspname) as name from pg_namespace n
      where has_schema_privilege($1, n.oid, 'CREATE') order by 1`,
    [runtimeRole],
  );
  return [
    ...owned.rows.map(({ name }) => `runtime role ${runtimeRole} owns ${name}`),
    ...creatable.rows.map(
      ({ name }) => `runtime role ${runtimeRole} may create objects in schema ${name}`,
    ),
  ];
}

async function tableViolations(client: CatalogClient, runtimeRole: string): Promise<string[]> {
  const tables = await client.query<TableRow>(
    `select c.relname as name, c.relrowsecurity as rls, c.relforcerowsecurity as forced,
            (select count(*) from pg_policy p where p.polrelid = c.oid)::int as policies,
            ${privilegeChecks} as privileges
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = $2 and c.relkind in ('r', 'p')
      order by c.relname`,
    [runtimeRole, rlsSchema],
  );
  const violations: string[] = [];
  for (const table of tables.rows) {
    const name = `${rlsSchema}.${table.name}`;
    if (rlsExemptTables.includes(table.name)) {
      if (table.privileges.length > 0) {
        violations.push(
          `${name} is exempt from row-level security but ${runtimeRole} has ${table.privileges.join(', ')} on it`,
        );
      }
      continue;
    }
    if (!table.rls) violations.push(`${name} does not enable row-level security`);
    if (!table.forced) violations.push(`${name} does not force row-level security`);
    if (table.rls && table.policies === 0) {
      violations.push(`${name} enables row-level security but has no policies`);
    }
    // TRUNCATE is not subject to row-level security: it would empty every tenant's rows.
    if (table.privileges.includes('TRUNCATE')) {
      violations.push(`${runtimeRole} may TRUNCATE ${name}, which bypasses row-level security`);
    }
  }
  return violations;
}

async function otherRelationViolations(
  client: CatalogClient,
  runtimeRole: string,
): Promise<string[]> {
  // Views run as their owner unless security_invoker is set; materialised views and foreign
  // tables have no row-level security at all.
  const unprotected = await client.query<NameRow & { kind: string }>(
    `select c.oid::regclass::text as name, c.relkind::text as kind
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = $2 and c.relkind in ('v', 'm', 'f')
        and cardinality(${privilegeChecks}) > 0
        and not (c.relkind = 'v' and coalesce((select lower(o.option_value)
              from pg_options_to_table(c.reloptions) o
             where o.option_name = 'security_invoker'), 'false') in ('true', 'on', 'yes', '1'))
      order by 1`,
    [runtimeRole, rlsSchema],
  );
  const inPublic = await client.query<NameRow>(
    `select c.oid::regclass::text as name
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm', 'f')
      order by 1`,
  );
  const definers = await client.query<NameRow>(
    `select p.oid::regprocedure::text as name
       from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname in ($2, 'public') and p.prosecdef
        and has_function_privilege($1, p.oid, 'EXECUTE')
      order by 1`,
    [runtimeRole, rlsSchema],
  );
  const kinds: Record<string, string> = {
    v: 'view without security_invoker',
    m: 'materialized view',
    f: 'foreign table',
  };
  return [
    ...unprotected.rows.map(
      ({ name, kind }) => `${name} is a ${kinds[kind] ?? kind} that ${runtimeRole} may access`,
    ),
    ...inPublic.rows.map(({ name }) => `${name} is a table in schema public`),
    ...definers.rows.map(
      ({ name }) => `${name} is SECURITY DEFINER and executable by ${runtimeRole}`,
    ),
  ];
}

async function auditLogViolations(client: CatalogClient, runtimeRole: string): Promise<string[]> {
  const audit = await client.query<{ privileges: string[] }>(
    `select ${privilegeChecks} as privileges from pg_class c
      where c.oid = to_regclass($2)`,
    [runtimeRole, `${rlsSchema}.audit_events`],
  );
  const row = audit.rows[0];
  if (row === undefined) return [`${rlsSchema}.audit_events does not exist`];
  return row.privileges
    .filter((privilege) => ['UPDATE', 'DELETE', 'TRUNCATE'].includes(privilege))
    .map(
      (privilege) =>
        `${runtimeRole} may ${privilege} ${rlsSchema}.audit_events, which must be append-only`,
    );
}

/**
 * Walks the catalog of the database `client` is connected to and lists, as sentences, every
 * way the runtime role could read or change rows outside its scope (DESIGN.md invariants 3
 * and 11). An empty list means the database enforces isolation. Run it as any role: catalogs
 * and the `has_*_privilege` functions are readable by everyone.
 */
export async function findRlsViolations(
  client: CatalogClient,
  runtimeRole: string,
): Promise<string[]> {
  const role = await roleViolations(client, runtimeRole);
  if (role.some((violation) => violation.endsWith('does not exist'))) return role;
  // One query at a time: a single pg.Client must not run queries concurrently.
  const violations = [...role];
  for (const check of [
    ownershipViolations,
    tableViolations,
    otherRelationViolations,
    auditLogViolations,
  ]) {
    violations.push(...(await check(client, runtimeRole)));
  }
  return violations;
}
