import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findRlsViolations } from './support/rls-catalog.ts';
import { startTestServer, type TestServer } from './support/test-brigade.ts';

let server: TestServer;
let owner: pg.Client;
let runtimeRole: string;

beforeAll(async () => {
  server = await startTestServer();
  runtimeRole = server.brigade.storage.runtimeRole.name;
  owner = new pg.Client({ connectionString: server.database.url });
  await owner.connect();
});

afterAll(async () => {
  await owner?.end();
  await server?.stop();
});

/**
 * Applies `statements` as the owner inside a transaction, runs the catalog check on the
 * changed catalog and rolls back, so every case starts from the migrated schema again.
 */
async function violationsAfter(statements: string): Promise<string[]> {
  for (let attempt = 0; ; attempt += 1) {
    await owner.query('begin');
    try {
      await owner.query(statements);
      return await findRlsViolations(owner, runtimeRole);
    } catch (error) {
      // Roles are cluster-wide: a server of another test file starting at the same moment
      // updates the runtime role's row too ("tuple concurrently updated"); try again.
      if (attempt >= 8 || !/concurrently/.test((error as Error).message)) throw error;
    } finally {
      await owner.query('rollback');
    }
    await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 80));
  }
}

describe('the row-level-security catalog check', () => {
  it('finds no violations in a freshly migrated database', async () => {
    expect(await findRlsViolations(owner, runtimeRole)).toEqual([]);
  });

  it('sees the same catalog from the runtime pool as from the owner', async () => {
    const pool = server.brigade.storage.database.pool;
    expect(await findRlsViolations(pool, runtimeRole)).toEqual([]);
  });

  it('runs the runtime pool as brigade_app, which is neither superuser nor BYPASSRLS', async () => {
    const result = await server.brigade.storage.database.pool.query<{
      name: string;
      superuser: boolean;
      bypass_rls: boolean;
    }>(
      `select current_user as name, r.rolsuper as superuser, r.rolbypassrls as bypass_rls
         from pg_roles r where r.rolname = current_user`,
    );
    expect(result.rows).toEqual([{ name: 'brigade_app', superuser: false, bypass_rls: false }]);
    expect(runtimeRole).toBe('brigade_app');
  });

  it('reports a table whose row-level security is no longer forced', async () => {
    const violations = await violationsAfter(
      'alter table brigade.users no force row level security',
    );
    expect(violations).toEqual(['brigade.users does not force row-level security']);
  });

  it('reports a table whose row-level security is disabled', async () => {
    const violations = await violationsAfter(
      'alter table brigade.users disable row level security',
    );
    expect(violations).toEqual(['brigade.users does not enable row-level security']);
  });

  it('reports a new table in the brigade schema that was created without row-level security', async () => {
    const violations = await violationsAfter(
      'create table brigade.notes (tenant_id uuid not null, body text)',
    );
    expect(violations).toEqual([
      'brigade.notes does not enable row-level security',
      'brigade.notes does not force row-level security',
    ]);
  });

  it('reports a table that enables row-level security but has no policies', async () => {
    const violations = await violationsAfter(`
      create table brigade.notes (tenant_id uuid not null, body text);
      alter table brigade.notes enable row level security;
      alter table brigade.notes force row level security;`);
    expect(violations).toEqual(['brigade.notes enables row-level security but has no policies']);
  });

  it('reports a partitioned table whose partition lacks row-level security', async () => {
    const violations = await violationsAfter(`
      create table brigade.notes (tenant_id uuid not null, body text) partition by hash (tenant_id);
      alter table brigade.notes enable row level security;
      alter table brigade.notes force row level security;
      create policy notes_tenant on brigade.notes using (tenant_id = brigade.current_tenant_id());
      create table brigade.notes_0 partition of brigade.notes for values with (modulus 1, remainder 0);`);
    expect(violations).toEqual([
      'brigade.notes_0 does not enable row-level security',
      'brigade.notes_0 does not force row-level security',
    ]);
  });

  it('reports any table in schema public', async () => {
    const violations = await violationsAfter('create table public.scratch (id int)');
    expect(violations).toEqual(['scratch is a table in schema public']);
  });

  it('reports relations, functions and schemas the runtime role owns', async () => {
    const violations = await violationsAfter(`
      create table brigade.notes (tenant_id uuid not null, body text);
      alter table brigade.notes enable row level security;
      alter table brigade.notes force row level security;
      create policy notes_tenant on brigade.notes using (tenant_id = brigade.current_tenant_id());
      alter table brigade.notes owner to brigade_app;
      create function brigade.noop() returns int language sql as 'select 1';
      alter function brigade.noop() owner to brigade_app;
      create schema scratch authorization brigade_app;`);
    expect(violations).toEqual([
      'runtime role brigade_app owns function brigade.noop()',
      'runtime role brigade_app owns relation brigade.notes',
      'runtime role brigade_app owns schema scratch',
      'runtime role brigade_app may create objects in schema scratch',
      'brigade_app may TRUNCATE brigade.notes, which bypasses row-level security',
    ]);
  });

  it('reports an exempt migration table the runtime role has any privilege on', async () => {
    const violations = await violationsAfter(
      'grant select, insert on brigade.kysely_migration to brigade_app',
    );
    expect(violations).toEqual([
      'brigade.kysely_migration is exempt from row-level security but brigade_app has SELECT, INSERT on it',
    ]);
  });

  it('reports an audit log the runtime role may update, delete or truncate', async () => {
    const violations = await violationsAfter(
      'grant update (reason), delete, truncate on brigade.audit_events to brigade_app',
    );
    expect(violations).toEqual([
      'brigade_app may TRUNCATE brigade.audit_events, which bypasses row-level security',
      'brigade_app may UPDATE brigade.audit_events, which must be append-only',
      'brigade_app may DELETE brigade.audit_events, which must be append-only',
      'brigade_app may TRUNCATE brigade.audit_events, which must be append-only',
    ]);
  });

  it('reports a view that reads tenant rows with its owner’s rights', async () => {
    const violations = await violationsAfter(`
      create view brigade.all_users as select * from brigade.users;
      grant select on brigade.all_users to brigade_app;`);
    expect(violations).toEqual([
      'brigade.all_users is a view without security_invoker that brigade_app may access',
    ]);
    const invoker = await violationsAfter(`
      create view brigade.all_users with (security_invoker) as select * from brigade.users;
      grant select on brigade.all_users to brigade_app;`);
    expect(invoker).toEqual([]);
  });

  it('reports a SECURITY DEFINER function the runtime role may execute', async () => {
    const violations = await violationsAfter(`
      create function brigade.count_users() returns bigint language sql security definer
        as 'select count(*) from brigade.users';
      grant execute on function brigade.count_users() to brigade_app;`);
    expect(violations).toEqual([
      'brigade.count_users() is SECURITY DEFINER and executable by brigade_app',
    ]);
  });

  it('reports a runtime role that is a superuser or has BYPASSRLS', async () => {
    expect(await violationsAfter('alter role brigade_app bypassrls')).toEqual([
      'runtime role brigade_app has BYPASSRLS',
    ]);
    const superuser = await violationsAfter('alter role brigade_app superuser');
    expect(superuser).toContain('runtime role brigade_app is a superuser');
  });

  it('finds no violations again once every change above was rolled back', async () => {
    expect(await findRlsViolations(owner, runtimeRole)).toEqual([]);
  });
});
