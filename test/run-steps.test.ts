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

/** A run's steps through the API: the model calls and tool calls it checkpointed, in order. */
let server: TestServer;
let admin: ApiClient;
let member: ApiClient;
let colleague: ApiClient;
let agentId: string;

interface Step {
  key: string;
  type: 'model' | 'tool';
  createdAt: string;
  model?: {
    finishReason: string;
    usage: { inputTokens: number };
    toolCalls: { id: string; name: string; input: unknown }[];
  };
  tool?: {
    callId: string;
    name: string | null;
    input: unknown;
    status: string;
    output?: unknown;
    error?: { message: string; code: string | null };
  };
}

async function finishedRun(client: ApiClient, input: string) {
  const thread = await client.post<Created>('/v1/threads', {});
  const run = await client.post<Created>(`/v1/threads/${thread.body.id}/runs`, { agentId, input });
  const ids = { threadId: thread.body.id, runId: run.body.id };
  expect((await waitForRun(client, ids)).status).toBe('completed');
  return ids;
}

beforeAll(async () => {
  server = await startTestServer({ runs: { pollIntervalMs: 50 } });
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'steps');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  member = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  colleague = apiClient(
    server.url,
    (await seedUser(operator, { tenantId, role: 'member' })).secret,
  );
  agentId = (await admin.post<Created>('/v1/agents', { name: 'calc', tools: ['calculator'] })).body
    .id;
});

afterAll(async () => {
  await server?.stop();
});

describe('listRunSteps', () => {
  it('lists the model call, the tool call it asked for, and the answer, in order', async () => {
    const { threadId, runId } = await finishedRun(member, 'call calculator {"expression":"6*7"}');
    const steps = await member.get<{ data: Step[] }>(`/v1/threads/${threadId}/runs/${runId}/steps`);
    expect(steps.status).toBe(200);
    const [first, tool, answer] = steps.body.data;
    expect(steps.body.data.map((step) => step.type)).toEqual(['model', 'tool', 'model']);
    expect(first?.model?.finishReason).toBe('tool-calls');
    expect(first?.model?.toolCalls).toEqual([
      { id: expect.any(String), name: 'calculator', input: { expression: '6*7' } },
    ]);
    expect(tool?.tool).toMatchObject({
      callId: first?.model?.toolCalls[0]?.id,
      name: 'calculator',
      input: { expression: '6*7' },
      status: 'ok',
    });
    expect(JSON.stringify(tool?.tool?.output)).toContain('42');
    expect(answer?.model).toMatchObject({ finishReason: 'stop', toolCalls: [] });
    expect(answer?.model?.usage.inputTokens).toBeGreaterThan(0);
    expect(Date.parse(first?.createdAt ?? '')).toBeLessThanOrEqual(
      Date.parse(answer?.createdAt ?? ''),
    );
    // The last step commits with the finish: the run's usage counts it too.
    const run = await member.get<{ usage: { inputTokens: number } }>(
      `/v1/threads/${threadId}/runs/${runId}`,
    );
    expect(run.body.usage.inputTokens).toBe(
      (first?.model?.usage.inputTokens ?? 0) + (answer?.model?.usage.inputTokens ?? 0),
    );
  });

  it('shows a refused tool call with its reason', async () => {
    const { threadId, runId } = await finishedRun(member, 'call calculator {"expression":42}');
    const steps = await member.get<{ data: Step[] }>(`/v1/threads/${threadId}/runs/${runId}/steps`);
    const tool = steps.body.data.find((step) => step.type === 'tool');
    expect(tool?.tool?.status).toBe('error');
    expect(tool?.tool?.error?.message.length).toBeGreaterThan(0);
    // Arguments the schema refuses have their stable code, as the audit event's outcome.
    expect(tool?.tool?.error?.code).toBe('invalid_arguments');
    expect(tool?.tool).not.toHaveProperty('approval');
  });

  it('is the run owner’s alone: a colleague and an admin get 404, as for a run that does not exist', async () => {
    const { threadId, runId } = await finishedRun(member, 'hello');
    for (const other of [colleague, admin]) {
      const refused = await other.get<{ code: string }>(
        `/v1/threads/${threadId}/runs/${runId}/steps`,
      );
      expect(refused.status).toBe(404);
      expect(refused.body.code).toBe('run_not_found');
    }
    const unknown = await member.get<{ code: string }>(
      `/v1/threads/${threadId}/runs/00000000-0000-4000-8000-000000000000/steps`,
    );
    expect(unknown.status).toBe(404);
    expect(unknown.body.code).toBe('run_not_found');
  });
});
