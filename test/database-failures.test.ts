import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiClient, apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * A database connection that dies while a request holds it (a backend terminated, a failover)
 * fails that request, never the process: a pooled client checked out of the pool has no
 * listener of the pool's, and an 'error' event nobody hears ends a Node process (in a test, an
 * unhandled error fails the run).
 */
let server: TestServer;
let member: ApiClient;
let secret: string;

async function terminateBackends(): Promise<number> {
  const client = new pg.Client({ connectionString: server.database.url });
  await client.connect();
  try {
    const result = await client.query(
      `select pg_terminate_backend(pid) from pg_stat_activity
        where datname = current_database() and pid <> pg_backend_pid()
          and backend_type = 'client backend' and state <> 'idle'`,
    );
    return result.rowCount ?? 0;
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  server = await startTestServer();
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'failures');
  secret = (await seedUser(operator, { tenantId, role: 'member' })).secret;
  member = apiClient(server.url, secret);
  for (let batch = 0; batch < 8; batch += 1) {
    await Promise.all(
      Array.from({ length: 50 }, (_, index) =>
        member.post('/v1/threads', {
          title: `t${batch}-${index}`,
          metadata: { blob: 'y'.repeat(8_000) },
        }),
      ),
    );
  }
});

afterAll(async () => {
  await server?.stop();
});

describe('a database connection dying under a request', () => {
  it('fails the requests that held it and goes on serving', async () => {
    let terminated = 0;
    for (let round = 0; round < 3; round += 1) {
      const exports = await Promise.all(
        Array.from({ length: 4 }, () =>
          fetch(`${server.url}/v1/me/export`, { headers: { authorization: `Bearer ${secret}` } }),
        ),
      );
      const readers = exports.map((response) => response.body?.getReader());
      await Promise.all(readers.map((reader) => reader?.read()));
      terminated += await terminateBackends();
      // Each export ends (complete or cut off); none hangs.
      await Promise.all(
        readers.map(async (reader) => {
          for (;;) {
            const chunk = await reader?.read().catch(() => ({ done: true }));
            if (chunk === undefined || chunk.done) return;
          }
        }),
      );
    }
    expect(terminated).toBeGreaterThan(0);
    let status = 0;
    for (let attempt = 0; attempt < 20 && status !== 200; attempt += 1) {
      status = (await member.get('/v1/me')).status;
      if (status !== 200) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(status).toBe(200);
  });
});
