import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockModelServer } from '../src/testing/index.ts';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
  waitForRun,
} from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * Runs through a real OpenAI-compatible provider path (the Vercel AI SDK over HTTP) against
 * the mock model server, including its faults.
 */
let mock: Awaited<ReturnType<typeof createMockModelServer>>;
let server: TestServer;
let member: ApiClient;
let admin: ApiClient;
let agentId: string;

type RunBody = Created & {
  status: string;
  errorCode: string | null;
  usage: { inputTokens: number; outputTokens: number };
};

async function runToEnd(input: string, statuses = ['completed', 'failed', 'cancelled', 'expired']) {
  const thread = await member.post<Created>('/v1/threads', {});
  const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, { agentId, input });
  for (let attempt = 0; attempt < 400; attempt += 1) {
    const current = await member.get<RunBody>(`/v1/threads/${thread.body.id}/runs/${run.body.id}`);
    if (statuses.includes(current.body.status))
      return { thread: thread.body.id, run: current.body };
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error('run did not finish');
}

beforeAll(async () => {
  mock = await createMockModelServer({ apiKey: 'mock-secret-key' });
  server = await startTestServer(
    {
      providers: {
        mock: { type: 'openai-compatible', baseUrl: mock.url, apiKeyEnv: 'MOCK_API_KEY' },
      },
      runs: { pollIntervalMs: 50 },
    },
    { env: { MOCK_API_KEY: 'mock-secret-key' } },
  );
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'providers');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  member = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  const agent = await admin.post<Created>('/v1/agents', {
    name: 'remote',
    model: 'mock:mock-model',
    tools: ['calculator'],
    instructions: 'Be brief.',
  });
  expect(agent.status).toBe(201);
  agentId = agent.body.id;
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await mock?.close();
});

describe('runs on an OpenAI-compatible provider', () => {
  it('answers, calls a tool, answers again, and records the provider usage', async () => {
    mock.reset();
    const { thread, run } = await runToEnd('call calculator {"expression":"20+22"}');
    expect(run.status).toBe('completed');
    const messages = await member.get<{ data: { role: string; content: { text?: string }[] }[] }>(
      `/v1/threads/${thread}/messages`,
    );
    expect(messages.body.data.at(-1)?.content[0]?.text).toContain('42');
    expect(run.usage.inputTokens).toBeGreaterThan(0);
    expect(mock.calls).toHaveLength(2);
    const first = mock.calls[0]?.body as {
      messages: { role: string }[];
      tools: { function: { name: string } }[];
      stream: boolean;
    };
    expect(first.stream).toBe(true);
    expect(first.messages[0]?.role).toBe('system');
    expect(first.tools.map((tool) => tool.function.name)).toEqual(['calculator']);
    expect(mock.calls[0]?.authorization).toMatchObject({ present: true, scheme: 'Bearer' });
  });

  it('fails the run with a stable code when the provider answers 5xx', async () => {
    mock.reset();
    mock.setFaults({ status: 503 });
    const { run } = await runToEnd('hello');
    mock.setFaults(undefined);
    expect(run.status).toBe('failed');
    expect(run.errorCode).toBe('provider_unavailable');
  });

  it('aborts the in-flight provider call when the run is cancelled', async () => {
    mock.reset();
    mock.setFaults({ hang: true });
    const thread = await member.post<Created>('/v1/threads', {});
    const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId,
      input: 'hello',
    });
    for (let attempt = 0; attempt < 200 && mock.calls.length === 0; attempt += 1) {
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    const cancelled = await member.post(`/v1/threads/${thread.body.id}/runs/${run.body.id}/cancel`);
    expect(cancelled.status).toBe(202);
    for (let attempt = 0; attempt < 200 && mock.calls[0]?.outcome === 'pending'; attempt += 1) {
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    mock.setFaults(undefined);
    expect(mock.calls[0]?.outcome).toBe('client-aborted');
    // 202 means the cancel was accepted; the worker that holds the run records the final state.
    const final = await waitForRun(member, { threadId: thread.body.id, runId: run.body.id });
    expect(final.status).toBe('cancelled');
  });

  it('refuses an agent naming a provider that is not configured', async () => {
    const response = await admin.post('/v1/agents', { name: 'ghost', model: 'nowhere:gpt' });
    expect(response.status).toBe(422);
    expect(response.body).toMatchObject({ code: 'unknown_model' });
    expect(
      (await admin.post('/v1/agents', { name: 'known', model: 'mock:any-model' })).status,
    ).toBe(201);
  });
});
