import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockModelServer } from '../src/testing/index.ts';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { testOperatorKey } from './support/test-brigade.ts';
import { type LoggedServer, runOnce, startLoggedServer } from './support/tool-fixtures.ts';

/**
 * What comes from outside a run — a tool's output, a model's answer — may hold a NUL character
 * or an unpaired surrogate, which PostgreSQL refuses to store. The run completes with U+FFFD in
 * their place, its steps, events and messages stored.
 */
let server: LoggedServer;
let upstream: Server;
let upstreamUrl: string;
let upstreamCalls = 0;
let mock: Awaited<ReturnType<typeof createMockModelServer>>;
let member: ApiClient;
let toolAgent: string;
let modelAgent: string;

beforeAll(async () => {
  // Raw text, not JSON: a NUL byte and a lone surrogate (sent as UTF-8 of U+FFFD by Node, so
  // the NUL is what PostgreSQL would refuse) reach the tool's output as characters.
  upstream = createServer((_request, response) => {
    upstreamCalls += 1;
    response.writeHead(200, { 'content-type': 'text/plain' });
    response.end('before\u0000after');
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  mock = await createMockModelServer({
    apiKey: 'mock-key',
    script: () => ({ text: 'model said \u0000 and \udc00 here' }),
  });
  server = await startLoggedServer(
    {
      providers: {
        mock: { type: 'openai-compatible', baseUrl: mock.url, apiKeyEnv: 'MOCK_API_KEY' },
      },
    },
    { MOCK_API_KEY: 'mock-key' },
  );
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'unstorable-output');
  const admin = apiClient(
    server.url,
    (await seedUser(operator, { tenantId, role: 'admin' })).secret,
  );
  member = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  const tool = await admin.post('/v1/tools', {
    name: 'odd_output',
    description: 'Answers with characters PostgreSQL cannot store.',
    risk: 'read',
    urlTemplate: `${upstreamUrl}/odd`,
    inputSchema: { type: 'object', properties: {}, additionalProperties: false },
  });
  expect(tool.status, JSON.stringify(tool.body)).toBe(201);
  toolAgent = (await admin.post<Created>('/v1/agents', { name: 'tooly', tools: ['odd_output'] }))
    .body.id;
  modelAgent = (await admin.post<Created>('/v1/agents', { name: 'mocky', model: 'mock:mock' })).body
    .id;
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await new Promise((resolve) => upstream?.close(resolve));
  await mock?.close();
});

describe('unstorable characters from outside a run', () => {
  it('in a tool’s output: the run completes, U+FFFD in their place', async () => {
    const result = await runOnce(member, { agentId: toolAgent, input: 'call odd_output {}' });
    expect(result.run.status, JSON.stringify(result.run)).toBe('completed');
    expect(upstreamCalls).toBe(1);
    // The model read the output as it came; what was stored has U+FFFD for the NUL.
    const steps = await member.get(
      `/v1/threads/${result.ids.threadId}/runs/${result.ids.runId}/steps`,
    );
    expect(JSON.stringify(steps.body)).toContain('before\uFFFDafter');
  });

  it('in a model’s answer: the run completes, U+FFFD in their place', async () => {
    const result = await runOnce(member, { agentId: modelAgent, input: 'hello' });
    expect(result.run.status, JSON.stringify(result.run)).toBe('completed');
    expect(result.answer).toBe('model said \uFFFD and \uFFFD here');
  });
});
