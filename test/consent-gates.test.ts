import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
 * Features that need consent check it, through the public API: long-term memory's refusal
 * carries its code to the run's step.
 */
let server: TestServer;
let operator: ApiClient;
let tenantId: string;
let admin: ApiClient;
let agentId: string;

interface Step {
  type: string;
  tool?: { status: string; error?: { message: string; code: string | null } };
}

beforeAll(async () => {
  server = await startTestServer({ runs: { pollIntervalMs: 50 } });
  operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'consent-gates');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  const agent = await admin.post<Created>('/v1/agents', {
    name: 'consenting',
    model: 'local',
    tools: ['calculator', 'current_time', 'memory_save'],
  });
  expect(agent.status, JSON.stringify(agent.body)).toBe(201);
  agentId = agent.body.id;
});

afterAll(async () => {
  await server?.stop();
});

async function member(): Promise<ApiClient> {
  return apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
}

/** Runs `input` on a new thread of `client`; the run's tool step and the answer. */
async function run(client: ApiClient, input: string, agent = agentId) {
  const threadId = (await client.post<Created>('/v1/threads', {})).body.id;
  const created = await client.post<Created>(`/v1/threads/${threadId}/runs`, {
    agentId: agent,
    input,
  });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  const done = await waitForRun(client, { threadId, runId: created.body.id });
  expect(done.status).toBe('completed');
  const steps = await client.get<{ data: Step[] }>(
    `/v1/threads/${threadId}/runs/${created.body.id}/steps`,
  );
  const messages = await client.get<{ data: { content: { text?: string }[] }[] }>(
    `/v1/threads/${threadId}/messages`,
  );
  return {
    threadId,
    runId: created.body.id,
    tool: steps.body.data.find((step) => step.type === 'tool')?.tool,
    answer: messages.body.data.at(-1)?.content[0]?.text ?? '',
  };
}

describe('long-term memory without consent', () => {
  it('gives the tool step the code consent_required, and the model sees it', async () => {
    const user = await member();
    const refused = await run(user, 'call memory_save {"key":"k","note":"n","scope":"user"}');
    expect(refused.tool).toMatchObject({
      status: 'error',
      error: { code: 'consent_required' },
    });
    expect(refused.answer).toMatch(/memory_save failed: .*consent_required/);
  });
});
