import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import {
  clusterQuery,
  createTestDatabase,
  startTestServer,
  type TestDatabase,
} from './support/test-brigade.ts';

/**
 * The runtime role may exist before Brigade first starts (created by hand, as docs/database.md
 * shows for managed servers), with memberships and default privileges nobody at Brigade chose.
 * Start-up must refuse a role that could get around row-level security, and take away table
 * privileges that no migration grants.
 */
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  // Last in, first out: the server, then its database, then the role.
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A fresh database and a runtime role made before Brigade's first start (dropped after). */
async function preparedRole(): Promise<{ role: string; database: TestDatabase }> {
  const role = `brigade_t_rt_${randomBytes(4).toString('hex')}`;
  await clusterQuery(`create role ${role} nosuperuser nobypassrls noinherit`);
  cleanups.push(() => clusterQuery(`drop role if exists ${role}`));
  const database = await createTestDatabase();
  cleanups.push(() => database.drop());
  return { role, database };
}

/** Runs one statement as the owner in `database`. */
async function ownerQuery(database: TestDatabase, text: string): Promise<void> {
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

/** Starts Brigade with `role` as its runtime role; the start-up error's message, if any. */
function startFailure(role: string, database: TestDatabase): Promise<string> {
  return startTestServer({ database: { runtimeRole: role } }, { database }).then(
    async (server) => {
      await server.stop();
      return 'started';
    },
    (error: Error) => error.message,
  );
}

describe('a runtime role that already exists', () => {
  it('is refused when it may SET ROLE to the owner of the tables (NOINHERIT does not stop that)', async () => {
    const { role, database } = await preparedRole();
    const owner = new URL(database.url).username;
    await clusterQuery(`grant "${owner}" to ${role}`);
    const failure = await startFailure(role, database);
    expect(failure).toContain(`is a member of "${owner}"`);
  });

  it('is refused when it may read the server’s files', async () => {
    const { role, database } = await preparedRole();
    await clusterQuery(`grant pg_read_server_files to ${role}`);
    const failure = await startFailure(role, database);
    expect(failure).toContain('is a member of "pg_read_server_files"');
  });

  it('loses TRUNCATE and the migration tables that default privileges gave it', async () => {
    const { role, database } = await preparedRole();
    // What a DBA often sets up on a managed server: the app role gets every table the owner makes.
    await ownerQuery(database, `alter default privileges grant all on tables to ${role}`);
    const server = await startTestServer({ database: { runtimeRole: role } }, { database });
    cleanups.push(() => server.stop());
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const held = await client.query<{ name: string }>(
        `select c.relname as name from pg_class c
          where c.relnamespace = 'brigade'::regnamespace and c.relkind = 'r'
            and (has_table_privilege($1, c.oid, 'TRUNCATE')
                 or has_table_privilege($1, c.oid, 'TRIGGER')
                 or (c.relname like 'kysely%' and has_table_privilege($1, c.oid, 'SELECT'))
                 or (c.relname = 'audit_events' and has_table_privilege($1, c.oid, 'UPDATE')))`,
        [role],
      );
      expect(held.rows).toEqual([]);
    } finally {
      await client.end();
    }
  });

  it('says what to do when the owner may not set its password (no CREATEROLE)', async () => {
    const { role, database } = await preparedRole();
    const owner = `${role}_owner`;
    await clusterQuery(`create role ${owner} login password 'owner-password' nocreaterole`);
    cleanups.unshift(() => clusterQuery(`drop role if exists ${owner}`));
    await clusterQuery(`alter database ${database.name} owner to ${owner}`);
    const url = new URL(database.url);
    url.username = owner;
    url.password = 'owner-password';
    const failure = await startTestServer(
      { database: { runtimeRole: role } },
      { database: { ...database, url: url.toString() } },
    ).then(
      async (server) => {
        await server.stop();
        return 'started';
      },
      (error: Error) => error.message,
    );
    expect(failure).toContain(`cannot set the login password of the runtime role "${role}"`);
    expect(failure).toContain('DATABASE_RUNTIME_URL');
  });

  it('is refused when DATABASE_RUNTIME_URL logs in as a role that is not it', async () => {
    const { role, database } = await preparedRole();
    // Migrate once, so the runtime role has its grants; then log in as someone else.
    const first = await startTestServer({ database: { runtimeRole: role } }, { database });
    await first.stop();
    const stranger = `${role}_login`;
    await clusterQuery(`create role ${stranger} login password 'stranger-password'`);
    cleanups.unshift(() => clusterQuery(`drop role if exists ${stranger}`));
    const runtimeUrl = new URL(database.url);
    runtimeUrl.username = stranger;
    runtimeUrl.password = 'stranger-password';
    const failure = await startTestServer(
      { database: { runtimeRole: role } },
      { database, env: { DATABASE_RUNTIME_URL: runtimeUrl.toString() } },
    ).then(
      async (server) => {
        await server.stop();
        return 'started';
      },
      (error: Error) => error.message,
    );
    expect(failure).toContain(`logs in as "${stranger}", but database.runtimeRole is "${role}"`);
  });
});
