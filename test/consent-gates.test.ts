import { randomUUID } from 'node:crypto';
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
 * Features that need consent check it, through the public API: content capture honours a
 * consent scoped to the agent, and long-term memory's refusal carries its code to the run's
 * step.
 */
let server: TestServer;
let operator: ApiClient;
let tenantId: string;
let owner: ApiClient;
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
  owner = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'owner' })).secret);
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

async function grant(client: ApiClient, purpose: string, scope = '*') {
  const granted = await client.post<Created>('/v1/me/consents', { purpose, scope, version: '1' });
  expect(granted.status, JSON.stringify(granted.body)).toBe(201);
  return granted.body.id;
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

describe('content capture', () => {
  type Span = { name: string; attributes: Record<string, unknown> };

  async function chatSpan(client: ApiClient, input: string): Promise<Span | undefined> {
    const { threadId, runId } = await run(client, input);
    for (let attempt = 0; attempt < 100; attempt += 1) {
      const trace = await client.get<{ spans: Span[] }>(
        `/v1/threads/${threadId}/runs/${runId}/trace`,
      );
      const chat = trace.body.spans.find((span) => span.name.startsWith('chat'));
      if (chat !== undefined) return chat;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return undefined;
  }

  it('captures for a consent scoped to the agent, and not for one scoped to another agent', async () => {
    const enabled = await owner.request('PATCH', `/v1/tenants/${tenantId}`, {
      captureContent: true,
    });
    expect(enabled.status).toBe(200);
    const elsewhere = await member();
    await grant(elsewhere, 'content_capture', randomUUID());
    const notCaptured = await chatSpan(elsewhere, 'SCOPECANARY one');
    expect(notCaptured).toBeDefined();
    expect(notCaptured?.attributes['gen_ai.input.messages']).toBeUndefined();

    const here = await member();
    await grant(here, 'content_capture', agentId);
    const captured = await chatSpan(here, 'SCOPECANARY two');
    expect(String(captured?.attributes['gen_ai.input.messages'])).toContain('SCOPECANARY two');
  });
});
