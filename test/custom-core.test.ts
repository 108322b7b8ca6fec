import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CorePluginV1 } from '../src/plugin-api/index.ts';
import { apiClient, type Created, seedTenant, seedUser } from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/** The example core of docs/writing-a-core.md, verbatim. */
const shoutCore: CorePluginV1 = {
  specificationVersion: 'core-v1',
  id: 'shout',
  async run(context) {
    const result = await context.model.generate({
      messages: [
        {
          role: 'system',
          content: [{ type: 'text', text: context.instructions }],
          provenance: 'system',
        },
        ...context.messages,
      ],
      tools: [],
      onTextDelta: (text) => context.emit({ type: 'message-delta', text: text.toUpperCase() }),
    });
    return { text: result.text.toUpperCase(), finishReason: 'stop' };
  },
};

let server: TestServer;

beforeAll(async () => {
  server = await startTestServer({ runs: { pollIntervalMs: 50 } }, { cores: [shoutCore] });
});

afterAll(async () => {
  await server?.stop();
});

describe('a user-written core', () => {
  it('runs under the harness with only the capabilities it is given', async () => {
    const operator = apiClient(server.url, testOperatorKey);
    const tenantId = await seedTenant(operator, 'cores');
    const user = apiClient(
      server.url,
      (await seedUser(operator, { tenantId, role: 'admin' })).secret,
    );
    const agent = await user.post<Created>('/v1/agents', { name: 'loud', coreId: 'shout' });
    expect(agent.status).toBe(201);
    expect((await user.post('/v1/agents', { name: 'ghost', coreId: 'nope' })).status).toBe(422);
    const thread = await user.post<Created>('/v1/threads', {});
    const run = await user.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId: agent.body.id,
      input: 'quiet please',
    });
    for (let attempt = 0; attempt < 200; attempt += 1) {
      const current = await user.get<{ status: string }>(
        `/v1/threads/${thread.body.id}/runs/${run.body.id}`,
      );
      if (current.body.status === 'completed') break;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    const messages = await user.get<{ data: { content: { text?: string }[] }[] }>(
      `/v1/threads/${thread.body.id}/messages`,
    );
    expect(messages.body.data.at(-1)?.content[0]?.text).toBe('YOU SAID: QUIET PLEASE');
  });
});
