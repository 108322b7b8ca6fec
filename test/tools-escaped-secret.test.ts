import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { testOperatorKey } from './support/test-brigade.ts';
import {
  type LoggedServer,
  runOnce,
  startLoggedServer,
  startUpstream,
  type UpstreamRequest,
} from './support/tool-fixtures.ts';

/**
 * A vault secret with `"` and `\` in it (common in passwords) that an upstream echoes back
 * JSON-escaped, inside a text field: the tool's output is redacted as JSON text, where that
 * echo is escaped once more. It must not reach the run's steps, messages, events, the model or
 * the user's export.
 */
const secret = 'Pa"ss\\word-CANARY-4242';
let upstream: { url: string; requests: UpstreamRequest[]; close(): Promise<void> };
let server: LoggedServer;
let member: ApiClient;
let agentId: string;

beforeAll(async () => {
  // The upstream puts the key it was sent, as a JSON string, into a text field of its answer.
  upstream = await startUpstream((request) => ({
    note: `key was ${JSON.stringify(request.headers['x-api-key'])} (rejected)`,
  }));
  server = await startLoggedServer();
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'escaped-secret');
  const admin = apiClient(
    server.url,
    (await seedUser(operator, { tenantId, role: 'admin' })).secret,
  );
  member = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  const tool = await admin.post<Created>('/v1/tools', {
    name: 'lookup',
    description: 'Looks something up.',
    risk: 'read',
    urlTemplate: `${upstream.url}/lookup?q={q}`,
    inputSchema: { type: 'object', properties: { q: { type: 'string' } } },
    auth: { credential: 'svc', scheme: 'header', headerName: 'X-Api-Key' },
  });
  expect(tool.status, JSON.stringify(tool.body)).toBe(201);
  const agent = await admin.post<Created>('/v1/agents', { name: 'looker', tools: ['lookup'] });
  expect(agent.status, JSON.stringify(agent.body)).toBe(201);
  agentId = agent.body.id;
  const stored = await member.post('/v1/me/credentials', { name: 'svc', secret });
  expect(stored.status, JSON.stringify(stored.body)).toBe(201);
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await upstream?.close();
});

describe('a secret echoed JSON-escaped', () => {
  it('is redacted from the output everywhere the run shows it', async () => {
    const { ids } = await runOnce(member, { agentId, input: 'call lookup {"q":"x"}' });
    expect(upstream.requests.at(-1)?.headers['x-api-key']).toBe(secret);
    const escaped = JSON.stringify(secret).slice(1, -1);
    const seen = [
      await member.get(`/v1/threads/${ids.threadId}/runs/${ids.runId}/steps`),
      await member.get(`/v1/threads/${ids.threadId}/messages`),
      await member.request('GET', `/v1/threads/${ids.threadId}/runs/${ids.runId}/events`),
      await member.get('/v1/me/export'),
    ].map((response) => JSON.stringify(response.body));
    for (const text of seen) {
      expect(text).not.toContain('CANARY-4242');
      expect(text).not.toContain(escaped);
    }
    expect(seen[0]).toContain('[redacted]');
    expect(server.logs.join('')).not.toContain('CANARY-4242');
  });
});
