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
 * Runs created at once on one thread (strategy enqueue) execute one at a time, and each is sent
 * the earlier runs' questions with their answers: the order a run's history counts as earlier
 * is the order the runs executed in.
 */
let model: MockModelServer;
let server: TestServer;
let member: ApiClient;
let agentId: string;

beforeAll(async () => {
  model = await createMockModelServer();
  server = await startTestServer({
    providers: { mock: { type: 'openai-compatible', baseUrl: model.url } },
    runs: { pollIntervalMs: 50 },
    limits: { requestsPerMinute: { key: 1_000_000, user: 1_000_000, tenant: 1_000_000 } },
  });
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'thread-order');
  const owner = apiClient(
    server.url,
    (await seedUser(operator, { tenantId, role: 'owner' })).secret,
  );
  member = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  agentId = (await owner.post<Created>('/v1/agents', { name: 'echo', model: 'mock:mock-model' }))
    .body.id;
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await model?.close();
});

describe('runs queued at once on one thread', () => {
  it('each sees every run that executed before it, question and answer', async () => {
    for (let round = 0; round < 4; round += 1) {
      model.reset();
      model.setFaults({ latencyMs: 30 });
      model.setScript((request) => {
        const messages = (request.body as { messages: { role: string; content: string }[] })
          .messages;
        const question = messages.filter((message) => message.role === 'user').at(-1)?.content;
        return { text: `answer to ${question}` };
      });
      const threadId = (await member.post<Created>('/v1/threads', {})).body.id;
      const created = await Promise.all(
        Array.from({ length: 6 }, (_, index) =>
          member.post<Created>(`/v1/threads/${threadId}/runs`, {
            agentId,
            input: `q${index}`,
          }),
        ),
      );
      for (const run of created) await waitForRun(member, { threadId, runId: run.body.id });
      // In the order the model was called: each prompt holds every earlier exchange, whole.
      const prompts = model.calls
        .filter((call) => call.path.endsWith('/chat/completions'))
        .map((call) =>
          (call.body as { messages: { role: string; content: string }[] }).messages
            .filter((message) => message.role !== 'system')
            .map((message) => message.content),
        );
      expect(prompts).toHaveLength(6);
      const asked: string[] = [];
      for (const prompt of prompts) {
        const question = prompt.at(-1) ?? '';
        const expected = asked.flatMap((earlier) => [earlier, `answer to ${earlier}`]);
        expect({ round, prompt: prompt.slice(0, -1) }).toEqual({ round, prompt: expected });
        asked.push(question);
      }
    }
  }, 60_000);
});
