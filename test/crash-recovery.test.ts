import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, type Created, seedTenant, seedUser } from './support/api-client.ts';
import { type SpawnedServer, spawnServer } from './support/spawn-server.ts';
import { createTestDatabase, type TestDatabase, testOperatorKey } from './support/test-brigade.ts';

/**
 * Kills Brigade processes with SIGKILL while runs are in flight, starts new ones, and checks
 * every run completes with each tool side effect applied once and no message lost or repeated.
 */
let database: TestDatabase;
let sink: Server;
let sinkHost: string;
const effects = new Map<string, number>();
const servers: SpawnedServer[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
  sink = createServer((request, response) => {
    const key = request.headers['idempotency-key'];
    if (typeof key === 'string') effects.set(key, (effects.get(key) ?? 0) + 1);
    request.resume();
    response.writeHead(200, { 'content-type': 'application/json' });
    // A long body makes the final answer stream for a few seconds, so kills land mid-run.
    response.end(
      JSON.stringify({
        ok: true,
        path: request.url,
        note: Array.from({ length: 60 }, (_, i) => `w${i}`).join(' '),
      }),
    );
  });
  await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve));
  sinkHost = `127.0.0.1:${(sink.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const server of servers) server.child.kill('SIGKILL');
  await new Promise((resolve) => sink.close(resolve));
  await database?.drop();
});

function config() {
  return {
    models: { local: { tokenDelayMs: 40 } },
    runs: { pollIntervalMs: 50, staleAfterMs: 2000 },
    tools: { httpRequest: { allowedHosts: [sinkHost], allowedMethods: ['POST'] } },
  };
}

async function start(): Promise<SpawnedServer> {
  const server = await spawnServer({ databaseUrl: database.url, config: config() });
  servers.push(server);
  return server;
}

describe('crash recovery', () => {
  it('completes every run exactly once across repeated kill -9 of the executing process', async () => {
    let server = await start();
    const operator = apiClient(server.url, testOperatorKey);
    const tenantId = await seedTenant(operator, 'crash');
    const admin = await seedUser(operator, { tenantId, role: 'admin' });
    const agent = await apiClient(server.url, admin.secret).post<Created>('/v1/agents', {
      name: 'effector',
      tools: ['http_request'],
      maxOutputTokens: 400,
    });
    expect(agent.status).toBe(201);
    const runs: { threadId: string; runId: string }[] = [];
    for (let index = 0; index < 24; index += 1) {
      const client = apiClient(server.url, admin.secret);
      const thread = await client.post<Created>('/v1/threads', {});
      const body = JSON.stringify({ n: index });
      const run = await client.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
        agentId: agent.body.id,
        input: `call http_request {"method":"POST","url":"http://${sinkHost}/effect/${index}","body":${JSON.stringify(body)}}`,
      });
      expect(run.status).toBe(201);
      runs.push({ threadId: thread.body.id, runId: run.body.id });
    }
    for (let kill = 0; kill < 4; kill += 1) {
      // The first kill lands while the first process executes; later ones after the new
      // process has taken the runs over (claims go stale after 2 s).
      await new Promise((resolve) =>
        setTimeout(resolve, (kill === 0 ? 500 : 2600) + Math.random() * 1200),
      );
      server.child.kill('SIGKILL');
      await server.exited;
      server = await start();
    }
    const client = apiClient(server.url, admin.secret);
    const deadline = Date.now() + 90_000;
    for (const run of runs) {
      for (;;) {
        const current = await client.get<{ status: string }>(
          `/v1/threads/${run.threadId}/runs/${run.runId}`,
        );
        if (['completed', 'failed', 'cancelled', 'expired'].includes(current.body.status)) {
          expect(current.body.status).toBe('completed');
          break;
        }
        if (Date.now() > deadline)
          throw new Error(`run ${run.runId} stuck in ${current.body.status}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
    let resumed = 0;
    // Each tool call reached the receiver under one idempotency key per run.
    expect(effects.size).toBe(runs.length);
    for (const run of runs) {
      const keys = [...effects.keys()].filter((key) => key.startsWith(`${run.runId}:`));
      expect(keys).toHaveLength(1);
      const messages = await client.get<{ data: { role: string }[] }>(
        `/v1/threads/${run.threadId}/messages`,
      );
      expect(messages.body.data.map((message) => message.role)).toEqual(['user', 'assistant']);
      const events = await fetch(
        `${server.url}/v1/threads/${run.threadId}/runs/${run.runId}/events`,
        {
          headers: { authorization: `Bearer ${admin.secret}` },
        },
      );
      const text = await events.text();
      const ids = [...text.matchAll(/^id: (\d+)$/gm)].map((match) => Number(match[1]));
      expect(ids).toEqual(ids.map((_, index) => index + 1));
      if (text.includes('event: run-resumed')) resumed += 1;
    }
    // The kills landed while runs were in flight (otherwise this test proves nothing).
    expect(resumed).toBeGreaterThan(0);
  }, 180_000);
});
