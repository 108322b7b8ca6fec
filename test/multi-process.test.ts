import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, type Created, seedTenant, seedUser } from './support/api-client.ts';
import { type SpawnedServer, spawnServer } from './support/spawn-server.ts';
import { createTestDatabase, type TestDatabase, testOperatorKey } from './support/test-brigade.ts';

/**
 * Two processes on one database: an API-only process (executes no runs) and a worker. A
 * client of the API process streams a run that executes on the worker.
 */
let database: TestDatabase;
let apiNode: SpawnedServer;
let worker: SpawnedServer;

beforeAll(async () => {
  database = await createTestDatabase();
  worker = await spawnServer({
    databaseUrl: database.url,
    config: {
      runs: { concurrency: 8, pollIntervalMs: 50 },
      models: { local: { tokenDelayMs: 20 } },
    },
  });
  apiNode = await spawnServer({ databaseUrl: database.url, config: { runs: { concurrency: 0 } } });
});

afterAll(async () => {
  apiNode?.child.kill('SIGKILL');
  worker?.child.kill('SIGKILL');
  await database?.drop();
});

describe('several processes', () => {
  it('streams, through one process, a run executing on another, with every event once', async () => {
    const operator = apiClient(apiNode.url, testOperatorKey);
    const tenantId = await seedTenant(operator, 'multi');
    const admin = await seedUser(operator, { tenantId, role: 'admin' });
    const client = apiClient(apiNode.url, admin.secret);
    const agent = await client.post<Created>('/v1/agents', { name: 'talker' });
    const thread = await client.post<Created>('/v1/threads', {});
    const words = Array.from({ length: 30 }, (_, index) => `w${index}`).join(' ');
    const response = await fetch(`${apiNode.url}/v1/threads/${thread.body.id}/runs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${admin.secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ agentId: agent.body.id, input: words, stream: true }),
    });
    expect(response.status).toBe(201);
    const started = Date.now();
    const body = await response.text();
    const ids = [...body.matchAll(/^id: (\d+)$/gm)].map((match) => Number(match[1]));
    expect(ids).toEqual(ids.map((_, index) => index + 1));
    const text = [...body.matchAll(/^event: message-delta\ndata: (.*)$/gm)]
      .map((match) => (JSON.parse(match[1] ?? '{}') as { text: string }).text)
      .join('');
    expect(text).toBe(`You said: ${words}`);
    expect(body).toContain('event: run-completed');
    // Deltas arrived while the run streamed (not all at the end after a long poll).
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
