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
 * The gauges `/metrics` computes at scrape time: the run queue's depth by state, and the model
 * breakers by deployment and state — with no tenant id or tenant route name in any label.
 */
let primary: MockModelServer;
let backup: MockModelServer;
let server: TestServer;
let tenantId: string;
let admin: ApiClient;
let member: ApiClient;
let memberSecret: string;

beforeAll(async () => {
  primary = await createMockModelServer({ apiKey: 'primary-key' });
  backup = await createMockModelServer({ apiKey: 'backup-key' });
  server = await startTestServer(
    {
      providers: {
        primary: { type: 'openai-compatible', baseUrl: primary.url, apiKeyEnv: 'PRIMARY_KEY' },
        backup: { type: 'openai-compatible', baseUrl: backup.url, apiKeyEnv: 'BACKUP_KEY' },
      },
      routes: [
        {
          name: 'flaky',
          deployments: [{ model: 'primary:mock-model' }, { model: 'backup:mock-model' }],
          retries: { maxAttempts: 2, baseDelayMs: 0, maxDelayMs: 0 },
          breaker: { failureRate: 0.5, windowMs: 5_000, minimumRps: 1, halfOpenAfterMs: 60_000 },
        },
      ],
      limits: { requestsPerMinute: { key: 1_000_000, user: 1_000_000, tenant: 1_000_000 } },
      runs: { pollIntervalMs: 50 },
    },
    { env: { PRIMARY_KEY: 'primary-key', BACKUP_KEY: 'backup-key' } },
  );
  const operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'metrics-state');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  memberSecret = (await seedUser(operator, { tenantId, role: 'member' })).secret;
  member = apiClient(server.url, memberSecret);
});

afterAll(async () => {
  await server?.stop();
  await primary?.close();
  await backup?.close();
});

async function scrape(): Promise<string> {
  const response = await fetch(`${server.url}/metrics`, {
    headers: { authorization: `Bearer ${testOperatorKey}` },
  });
  expect(response.status).toBe(200);
  return response.text();
}

async function complete(model: string): Promise<number> {
  const response = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${memberSecret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hello there' }] }),
  });
  await response.arrayBuffer();
  return response.status;
}

describe('/metrics state gauges', () => {
  it('reports the run queue depth by state', async () => {
    const agent = await admin.post<Created>('/v1/agents', {
      name: 'asks-first',
      tools: ['calculator'],
      approvalRequiredTools: ['calculator'],
    });
    expect(agent.status).toBe(201);
    const threadId = (await member.post<Created>('/v1/threads', {})).body.id;
    const run = await member.post<Created>(`/v1/threads/${threadId}/runs`, {
      agentId: agent.body.id,
      input: 'call calculator {"expression":"1+1"}',
    });
    expect(run.status).toBe(201);
    await waitForRun(member, { threadId, runId: run.body.id }, ['requires_action']);
    // The run shows requires_action as its approval commits; its queue entry is parked once
    // the execution has wound down (until then it holds its slot: claimed). The gauge is
    // counted at most every 5 s, so a scrape may show the moment before.
    let text = await scrape();
    const deadline = Date.now() + 15_000;
    while (!text.includes('brigade_run_queue_depth{state="parked"} 1') && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      text = await scrape();
    }
    expect(text).toContain('# TYPE brigade_run_queue_depth gauge');
    expect(text).toContain('brigade_run_queue_depth{state="parked"} 1');
    expect(text).toContain('brigade_run_queue_depth{state="queued"} 0');
    expect(text).toContain('brigade_run_queue_depth{state="claimed"} 0');
  });

  it('reports each deployment’s breakers by state, and tenants’ own routes without their names', async () => {
    primary.setFaults({ status: 503 });
    for (let index = 0; index < 30; index += 1) expect(await complete('flaky')).toBe(200);
    const own = await admin.post('/v1/model-routes', {
      name: 'secret-route-name',
      deployments: [{ model: 'backup:mock-model' }],
    });
    expect(own.status).toBe(201);
    expect(await complete('secret-route-name')).toBe(200);
    const text = await scrape();
    expect(text).toContain('# TYPE brigade_model_breakers gauge');
    const series = (labels: string) =>
      new RegExp(`brigade_model_breakers\\{${labels}\\} (\\d+)`).exec(text)?.[1];
    const flaky = (deployment: number, model: string, state: string) =>
      series(`route="flaky",deployment="${deployment}",model="${model}",state="${state}"`);
    expect(flaky(0, 'primary:mock-model', 'open')).toBe('1');
    expect(flaky(0, 'primary:mock-model', 'closed')).toBe('0');
    expect(flaky(1, 'backup:mock-model', 'closed')).toBe('1');
    expect(flaky(1, 'backup:mock-model', 'open')).toBe('0');
    expect(series('route="tenant",deployment="0",model="backup:mock-model",state="closed"')).toBe(
      '1',
    );
    expect(text).not.toContain('secret-route-name');
    expect(text).not.toContain(tenantId);
    expect(text).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i);
  });
});
