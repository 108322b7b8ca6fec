import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, startTestServer, type TestDatabase } from './support/test-brigade.ts';

/**
 * Several processes of different versions share one database during a deploy. A process that
 * does not migrate (`database.migrateOnStart: false`) must not start on a schema behind its
 * code, where every statement that needs a newer table or function fails as a 500 while
 * `/readyz` says ready; and a process that migrates names a schema newer than itself plainly.
 */
let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase();
});

afterAll(async () => {
  await database?.drop();
});

function startError(file: Record<string, unknown>): Promise<string> {
  return startTestServer(file, { database }).then(
    async (server) => {
      await server.stop();
      return 'started';
    },
    (error: Error) => error.message,
  );
}

describe('the schema version at start-up', () => {
  it('refuses to serve a database whose migrations are not applied, when it may not migrate', async () => {
    expect(await startError({ database: { migrateOnStart: false } })).toMatch(
      /schema is behind this version of Brigade: \d+ migration\(s\) not applied \(the first: 0001-identity\)/,
    );
  });

  it('starts once they are, and names a schema newer than itself', async () => {
    expect(await startError({})).toBe('started');
    expect(await startError({ database: { migrateOnStart: false } })).toBe('started');
    const owner = new pg.Client({ connectionString: database.url });
    await owner.connect();
    try {
      await owner.query(
        `insert into brigade.kysely_migration (name, timestamp) values ('9999-from-the-future', now())`,
      );
    } finally {
      await owner.end();
    }
    expect(await startError({})).toMatch(
      /schema is newer than this version of Brigade \(it has migration 9999-from-the-future/,
    );
  });
});
