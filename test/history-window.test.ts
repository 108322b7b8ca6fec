import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockModelServer, type MockModelServer } from '../src/testing/index.ts';
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
 * What a run sends the model of its thread, seen from the mock provider: earlier runs' turns in
 * the order they happened, the agent's history limit, and long threads cut to the model's
 * context window instead of failing.
 */
let mock: MockModelServer;
let server: TestServer;
let admin: ApiClient;
let member: ApiClient;

type Problem = { code: string; errors?: { path: string }[] };

/** The text of a chat message's content (a string, or text parts). */
function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.map((part) => (part as { text?: string }).text ?? '').join('');
}

/** The non-system messages of the model call that answered `input`, as `role: text`. */
function sentFor(input: string): string[] {
  const call = mock.calls.find((candidate) => {
    const messages = (candidate.body as { messages?: { role: string; content: unknown }[] })
      ?.messages;
    const last = messages?.[messages.length - 1];
    return last?.role === 'user' && textOf(last.content) === input;
  });
  if (call === undefined) throw new Error(`no model call ended with '${input}'`);
  return (call.body as { messages: { role: string; content: unknown }[] }).messages
    .filter((message) => message.role !== 'system')
    .map((message) => `${message.role}: ${textOf(message.content)}`);
}

async function agent(body: Record<string, unknown>): Promise<string> {
  const created = await admin.post<Created>('/v1/agents', body);
  expect(created.status).toBe(201);
  return created.body.id;
}

async function runOnThread(threadId: string, agentId: string, input: string) {
  const run = await member.post<Created>(`/v1/threads/${threadId}/runs`, { agentId, input });
  expect(run.status).toBe(201);
  return waitForRun(member, { threadId, runId: run.body.id });
}

async function thread(): Promise<string> {
  return (await member.post<Created>('/v1/threads', {})).body.id;
}

beforeAll(async () => {
  mock = await createMockModelServer({
    apiKey: 'history-key',
    // Each answer names the question; 'slow …' questions take 400 ms.
    script: (request) => {
      const last = request.messages[request.messages.length - 1];
      const question = textOf(last?.content);
      return {
        text: `re: ${question}`,
        ...(question.startsWith('slow') ? { fault: { latencyMs: 400 } } : {}),
      };
    },
  });
  server = await startTestServer(
    {
      providers: {
        mock: { type: 'openai-compatible', baseUrl: mock.url, apiKeyEnv: 'HISTORY_KEY' },
      },
      routes: [{ name: 'narrow', deployments: [{ model: 'mock:mock-model', contextTokens: 400 }] }],
      runs: { pollIntervalMs: 50 },
    },
    { env: { HISTORY_KEY: 'history-key' } },
  );
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'history');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  member = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
});

afterAll(async () => {
  await server?.stop();
  await mock?.close();
});

describe('the history a run sends', () => {
  it('puts each earlier run’s answer after its question, even for a run queued behind it', async () => {
    const agentId = await agent({ name: 'ordered', model: 'mock:mock-model' });
    const threadId = await thread();
    const first = await member.post<Created>(`/v1/threads/${threadId}/runs`, {
      agentId,
      input: 'slow first',
    });
    // Queued while the first run waits for its model: its answer is written after this input.
    const second = await member.post<Created>(`/v1/threads/${threadId}/runs`, {
      agentId,
      input: 'second',
      strategy: 'enqueue',
    });
    for (const run of [first, second])
      expect((await waitForRun(member, { threadId, runId: run.body.id })).status).toBe('completed');
    expect(sentFor('slow first')).toEqual(['user: slow first']);
    expect(sentFor('second')).toEqual([
      'user: slow first',
      'assistant: re: slow first',
      'user: second',
    ]);
    // A later run sees both turns in the order they were asked, each answer after its question.
    expect((await runOnThread(threadId, agentId, 'third')).status).toBe('completed');
    expect(sentFor('third')).toEqual([
      'user: slow first',
      'assistant: re: slow first',
      'user: second',
      'assistant: re: second',
      'user: third',
    ]);
  });

  it('sends at most historyMessages earlier messages, starting at a user message', async () => {
    const lastTwo = await agent({ name: 'last-two', model: 'mock:mock-model', historyMessages: 2 });
    const lastThree = await agent({
      name: 'last-three',
      model: 'mock:mock-model',
      historyMessages: 3,
    });
    for (const [agentId, tag] of [
      [lastTwo, 'a'],
      [lastThree, 'b'],
    ] as const) {
      const threadId = await thread();
      for (const input of ['one', 'two', 'three'])
        expect((await runOnThread(threadId, agentId, `${tag} ${input}`)).status).toBe('completed');
      // Three earlier messages would open with an answer whose question was cut: it goes too.
      expect(sentFor(`${tag} three`)).toEqual([
        `user: ${tag} two`,
        `assistant: re: ${tag} two`,
        `user: ${tag} three`,
      ]);
    }
  });

  it('leaves the oldest turns out when a long thread outgrows the context window', async () => {
    const agentId = await agent({ name: 'narrow', model: 'narrow', maxOutputTokens: 50 });
    const threadId = await thread();
    const inputs = Array.from({ length: 8 }, (_, index) => `turn ${index} ${'x'.repeat(300)}`);
    // 8 turns of ~330 bytes each way: the whole thread would be refused as
    // context_length_exceeded (more than 3,200 bytes is certainly over 400 tokens).
    for (const input of inputs)
      expect((await runOnThread(threadId, agentId, input)).status).toBe('completed');
    const last = inputs[inputs.length - 1] as string;
    const sent = sentFor(last);
    expect(sent.length).toBeGreaterThan(1);
    expect(sent.length).toBeLessThan(2 * inputs.length - 1);
    expect(sent[0]?.startsWith('user: turn')).toBe(true);
    expect(sent[sent.length - 1]).toBe(`user: ${last}`);
    expect(sent.join('').length).toBeLessThan(400 * 3);
    const messages = await member.get<{ data: unknown[] }>(
      `/v1/threads/${threadId}/messages?limit=100`,
    );
    expect(messages.body.data).toHaveLength(2 * inputs.length);
  });
});

describe('agent:<name> on the OpenAI-compatible API', () => {
  it('sends the request’s earlier messages before its input', async () => {
    await agent({ name: 'replayed', model: 'mock:mock-model', instructions: 'Be brief.' });
    const completion = await member.post<{ choices: { message: { content: string } }[] }>(
      '/v1/chat/completions',
      {
        model: 'agent:replayed',
        messages: [
          { role: 'system', content: 'Answer in French.' },
          { role: 'user', content: 'earlier question' },
          { role: 'assistant', content: 'earlier answer' },
          { role: 'user', content: 'replayed now' },
        ],
      },
    );
    expect(completion.status).toBe(200);
    expect(completion.body.choices[0]?.message.content).toBe('re: replayed now');
    expect(sentFor('replayed now')).toEqual([
      'user: earlier question',
      'assistant: earlier answer',
      'user: replayed now',
    ]);
    const call = mock.calls.find((candidate) =>
      JSON.stringify(candidate.body).includes('replayed now'),
    );
    const system = (
      call?.body as { messages: { role: string; content: unknown }[] } | undefined
    )?.messages
      .filter((message) => message.role === 'system')
      .map((message) => textOf(message.content))
      .join('\n');
    expect(system).toContain('Be brief.');
    expect(system).toContain('Answer in French.');
  });

  it('refuses tool calls among the earlier messages, naming the message', async () => {
    const refused = await member.post<{ error: { param: string } }>('/v1/chat/completions', {
      model: 'agent:replayed',
      messages: [
        { role: 'user', content: 'q' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'c1', type: 'function', function: { name: 'lookup', arguments: '{}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'c1', content: 'result' },
        { role: 'user', content: 'refused now' },
      ],
    });
    expect(refused.status).toBe(400);
    expect(refused.body.error.param).toBe('messages[1]');
  });
});

describe('historyMessages on the agent API', () => {
  it('is validated, updated and cleared', async () => {
    for (const historyMessages of [0, 10_001, 2.5, '3']) {
      const refused = await admin.post<Problem>('/v1/agents', {
        name: 'bad-history',
        historyMessages,
      });
      expect(refused.status).toBe(422);
      expect(refused.body.code).toBe('validation_failed');
      expect(refused.body.errors?.map((error) => error.path)).toContain('body.historyMessages');
    }
    const agentId = await agent({ name: 'windowed' });
    expect((await admin.get<{ historyMessages: unknown }>(`/v1/agents/${agentId}`)).body).toEqual(
      expect.objectContaining({ historyMessages: null }),
    );
    const updated = await admin.request<{ historyMessages: unknown }>(
      'PATCH',
      `/v1/agents/${agentId}`,
      {
        historyMessages: 20,
      },
    );
    expect(updated.status).toBe(200);
    expect(updated.body.historyMessages).toBe(20);
    const cleared = await admin.request<{ historyMessages: unknown }>(
      'PATCH',
      `/v1/agents/${agentId}`,
      {
        historyMessages: null,
      },
    );
    expect(cleared.body.historyMessages).toBeNull();
  });
});
