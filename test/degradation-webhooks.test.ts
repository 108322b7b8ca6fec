import { createHmac } from 'node:crypto';
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
import { startWebhookReceiver, until, type WebhookReceiver } from './support/webhook-receiver.ts';

/**
 * Graceful degradation and budget alerts through the public API. One mock provider serves two
 * model ids: `priced` ($1 per million output tokens) and `cheap` (free). Every call reports
 * exactly `maxOutputTokens` output tokens, so a call costs exactly its reservation.
 */
let mock: MockModelServer;
let server: TestServer;
let receiver: WebhookReceiver;
let admin: ApiClient;
let operator: ApiClient;
let tenantId: string;

const outputTokens = 100;
const callCostUsd = 0.0001;

type RunBody = Created & {
  status: string;
  errorCode: string | null;
  degraded: boolean;
  incomplete: { reason: string } | null;
  usage: { inputTokens: number; outputTokens: number };
  stepCount: number;
};

async function runOnce(client: ApiClient, agentId: string, input = 'hello'): Promise<RunBody> {
  const thread = await client.post<Created>('/v1/threads', {});
  const created = await client.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
    agentId,
    input,
  });
  expect(created.status).toBe(201);
  return waitForRun<RunBody>(client, { threadId: thread.body.id, runId: created.body.id });
}

beforeAll(async () => {
  receiver = await startWebhookReceiver();
  mock = await createMockModelServer({ apiKey: 'mock-key' });
  mock.setScript(() => ({
    text: 'ok',
    usage: { promptTokens: 5, completionTokens: outputTokens },
  }));
  server = await startTestServer(
    {
      providers: {
        mock: { type: 'openai-compatible', baseUrl: mock.url, apiKeyEnv: 'MOCK_KEY' },
      },
      models: {
        prices: {
          'mock:priced': { inputPerMTok: 0, outputPerMTok: 1 },
          'mock:cheap': { inputPerMTok: 0, outputPerMTok: 0 },
        },
      },
      webhooks: { allowPrivateNetworks: true, retryDelaysMs: [200], pollMs: 100 },
      runs: { pollIntervalMs: 50 },
    },
    { env: { MOCK_KEY: 'mock-key' } },
  );
  operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'degrading');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
});

afterAll(async () => {
  await server?.stop();
  await mock?.close();
  await receiver?.close();
});

describe('graceful degradation', () => {
  it('moves an agent to its cheaper model past a share of the budget, and says so', async () => {
    const seeded = await seedUser(operator, { tenantId, role: 'member' });
    const member = apiClient(server.url, seeded.secret);
    const agent = await admin.post<Created>('/v1/agents', {
      name: 'frugal',
      model: 'mock:priced',
      maxOutputTokens: outputTokens,
      degradation: { atBudgetPercent: 50, model: 'mock:cheap' },
    });
    expect(agent.status).toBe(201);
    const policy = await admin.post('/v1/policies', {
      level: 'user',
      subjectId: seeded.userId,
      limits: { budget: { amountUsd: callCostUsd * 4, period: 'day' } },
    });
    expect(policy.status).toBe(201);
    mock.reset();
    mock.setScript(() => ({
      text: 'ok',
      usage: { promptTokens: 5, completionTokens: outputTokens },
    }));
    const runs: RunBody[] = [];
    for (let index = 0; index < 4; index += 1) runs.push(await runOnce(member, agent.body.id));
    expect(runs.map((run) => run.status)).toEqual([
      'completed',
      'completed',
      'completed',
      'completed',
    ]);
    expect(runs.map((run) => run.degraded)).toEqual([false, false, true, true]);
    const models = mock.calls.map((call) => (call.body as { model: string }).model);
    expect(models).toEqual(['priced', 'priced', 'cheap', 'cheap']);
  });

  it('refuses a degradation model that does not exist', async () => {
    const response = await admin.post<{ code: string }>('/v1/agents', {
      name: 'confused',
      model: 'local',
      degradation: { atBudgetPercent: 80, model: 'nowhere:model' },
    });
    expect(response.status).toBe(422);
    expect(response.body.code).toBe('unknown_model');
  });

  it('answers with the partial text at the deadline when the agent asks for it', async () => {
    const seeded = await seedUser(operator, { tenantId, role: 'member' });
    const member = apiClient(server.url, seeded.secret);
    const agent = await admin.post<Created>('/v1/agents', {
      name: 'hasty',
      model: 'mock:cheap',
      runTimeoutMs: 1_000,
      onDeadline: 'partial',
    });
    mock.setScript(() => ({
      text: Array.from({ length: 40 }, (_, index) => `word${index}`).join(' '),
    }));
    mock.setFaults({ tokenDelayMs: 100 });
    try {
      const thread = await member.post<Created>('/v1/threads', {});
      const created = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
        agentId: agent.body.id,
        input: 'tell me everything',
      });
      const run = await waitForRun<RunBody>(member, {
        threadId: thread.body.id,
        runId: created.body.id,
      });
      expect(run.status).toBe('completed');
      expect(run.incomplete).toEqual({ reason: 'deadline' });
      const messages = await member.get<{
        data: {
          role: string;
          content: { text: string }[];
          inputTokens: number | null;
          outputTokens: number | null;
        }[];
      }>(`/v1/threads/${thread.body.id}/messages`);
      const answer = messages.body.data.find((message) => message.role === 'assistant');
      expect(answer?.content[0]?.text).toMatch(/^word0 word1/);
      expect(answer?.content[0]?.text).not.toContain('word39');
      // The call cut off at the deadline was charged (its output streamed, estimated): the
      // run's usage, its step and its message say what the ledger says.
      const ledger = await member.get<{
        totals: { requests: number; inputTokens: number; outputTokens: number };
      }>('/v1/usage?groupBy=model');
      expect(ledger.body.totals.requests).toBe(1);
      expect(ledger.body.totals.outputTokens).toBeGreaterThan(0);
      const charged = {
        inputTokens: ledger.body.totals.inputTokens,
        outputTokens: ledger.body.totals.outputTokens,
      };
      expect(run.usage).toEqual(charged);
      expect(run.stepCount).toBe(1);
      const steps = await member.get<{
        data: { key: string; type: string; model?: { finishReason: string; usage: unknown } }[];
      }>(`/v1/threads/${thread.body.id}/runs/${created.body.id}/steps`);
      expect(steps.body.data).toEqual([
        expect.objectContaining({
          key: 'model:0',
          type: 'model',
          model: expect.objectContaining({
            finishReason: 'other',
            usage: { ...charged, estimated: true },
          }),
        }),
      ]);
      expect(answer).toMatchObject(charged);
    } finally {
      mock.setFaults(undefined);
      mock.setScript(() => ({
        text: 'ok',
        usage: { promptTokens: 5, completionTokens: outputTokens },
      }));
    }
  });
  it('counts a call cut off by an expiry or a cancel in the run’s usage, as charged', async () => {
    const agent = await admin.post<Created>('/v1/agents', {
      name: 'strict',
      model: 'mock:cheap',
      runTimeoutMs: 1_000,
    });
    mock.setScript(() => ({
      text: Array.from({ length: 40 }, (_, index) => `word${index}`).join(' '),
    }));
    mock.setFaults({ tokenDelayMs: 100 });
    try {
      const expiring = apiClient(
        server.url,
        (await seedUser(operator, { tenantId, role: 'member' })).secret,
      );
      const expired = await runOnce(expiring, agent.body.id, 'tell me everything');
      expect(expired.status).toBe('expired');
      const cancelling = apiClient(
        server.url,
        (await seedUser(operator, { tenantId, role: 'member' })).secret,
      );
      const first = mock.calls.length;
      const thread = await cancelling.post<Created>('/v1/threads', {});
      const created = await cancelling.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
        agentId: agent.body.id,
        input: 'tell me everything',
      });
      await until(() => (mock.calls[first]?.eventsWritten ?? 0) > 2);
      const ids = { threadId: thread.body.id, runId: created.body.id };
      await cancelling.post(`/v1/threads/${ids.threadId}/runs/${ids.runId}/cancel`);
      const cancelled = await waitForRun<RunBody>(cancelling, ids);
      expect(cancelled.status).toBe('cancelled');
      for (const [client, run] of [
        [expiring, expired],
        [cancelling, cancelled],
      ] as const) {
        const ledger = await client.get<{
          totals: { requests: number; inputTokens: number; outputTokens: number };
        }>('/v1/usage?groupBy=model');
        expect(ledger.body.totals.requests).toBe(1);
        expect(ledger.body.totals.outputTokens).toBeGreaterThan(0);
        expect(run.usage).toEqual({
          inputTokens: ledger.body.totals.inputTokens,
          outputTokens: ledger.body.totals.outputTokens,
        });
        expect(run.stepCount).toBe(1);
      }
    } finally {
      mock.setFaults(undefined);
      mock.setScript(() => ({
        text: 'ok',
        usage: { promptTokens: 5, completionTokens: outputTokens },
      }));
    }
  });
});

describe('budget alerts', () => {
  it('crosses 50, 80 and 100 % once each and sends signed webhooks, retrying a failed one', async () => {
    const hook = await admin.post<Created & { secret: string; events: string[] }>('/v1/webhooks', {
      url: receiver.url,
      // Named twice, subscribed once: each crossing below is delivered once.
      events: ['budget.threshold', 'budget.threshold'],
    });
    expect(hook.status).toBe(201);
    expect(hook.body.events).toEqual(['budget.threshold']);
    expect(hook.body.secret).toMatch(/^whsec_/);
    const seeded = await seedUser(operator, { tenantId, role: 'member' });
    const member = apiClient(server.url, seeded.secret);
    const agent = await admin.post<Created>('/v1/agents', {
      name: 'spender',
      model: 'mock:priced',
      maxOutputTokens: outputTokens,
    });
    const policy = await admin.post<Created>('/v1/policies', {
      level: 'user',
      subjectId: seeded.userId,
      limits: { budget: { amountUsd: callCostUsd * 5, period: 'month' } },
    });
    receiver.received.length = 0;
    receiver.failNext(1);
    const statuses: string[] = [];
    for (let index = 0; index < 6; index += 1)
      statuses.push((await runOnce(member, agent.body.id)).status);
    expect(statuses).toEqual([
      'completed',
      'completed',
      'completed',
      'completed',
      'completed',
      'failed',
    ]);
    type Event = { type: string; data: { threshold: number; policyId: string } };
    const mine = () =>
      receiver.received
        .map((delivery) => ({ delivery, event: JSON.parse(delivery.body) as Event }))
        .filter(({ event }) => event.data.policyId === policy.body.id);
    await until(() => mine().length >= 3);
    const events = mine().map(({ event }) => event);
    expect(events.map((event) => event.type)).toEqual(Array(3).fill('budget.threshold'));
    expect(events.map((event) => event.data.threshold).sort((a, b) => a - b)).toEqual([
      50, 80, 100,
    ]);
    // Standard Webhooks signature: HMAC-SHA256 of id.timestamp.body with the secret's bytes.
    for (const delivery of receiver.received) {
      const id = String(delivery.headers['webhook-id']);
      const timestamp = String(delivery.headers['webhook-timestamp']);
      const expected = createHmac('sha256', Buffer.from(hook.body.secret.slice(6), 'base64'))
        .update(`${id}.${timestamp}.${delivery.body}`)
        .digest('base64');
      expect(delivery.headers['webhook-signature']).toBe(`v1,${expected}`);
    }
    const deliveries = await admin.get<{ data: { status: string; attempts: number }[] }>(
      `/v1/webhooks/${hook.body.id}/deliveries`,
    );
    expect(deliveries.body.data.every((delivery) => delivery.status === 'delivered')).toBe(true);
    expect(deliveries.body.data.some((delivery) => delivery.attempts === 2)).toBe(true);
    const alerts = await admin.get<{ data: { threshold: number; policyId: string }[] }>(
      '/v1/budget-alerts',
    );
    expect(
      alerts.body.data
        .filter((alert) => alert.policyId === policy.body.id)
        .map((alert) => alert.threshold)
        .sort((a, b) => a - b),
    ).toEqual([50, 80, 100]);
    // Members do not manage webhooks.
    expect((await member.get('/v1/webhooks')).status).toBe(403);
  });

  it('records and sends no alert for a rolling budget, while a calendar one alerts', async () => {
    const hook = await admin.post<Created>('/v1/webhooks', {
      url: receiver.url,
      events: ['budget.threshold'],
    });
    expect(hook.status).toBe(201);
    const seeded = await seedUser(operator, { tenantId, role: 'member' });
    const member = apiClient(server.url, seeded.secret);
    const agent = await admin.post<Created>('/v1/agents', {
      name: 'roller',
      model: 'mock:priced',
      maxOutputTokens: outputTokens,
    });
    const rolling = await admin.post<Created>('/v1/policies', {
      level: 'user',
      subjectId: seeded.userId,
      limits: { budget: { amountUsd: callCostUsd * 3, period: 'rolling', windowHours: 24 } },
    });
    const calendar = await admin.post<Created>('/v1/policies', {
      level: 'api_key',
      subjectId: seeded.keyId,
      limits: { budget: { amountUsd: callCostUsd * 3, period: 'month' } },
    });
    expect([rolling.status, calendar.status]).toEqual([201, 201]);
    // Two calls of three: both budgets cross 50 % in the same settlement.
    for (let index = 0; index < 2; index += 1)
      expect((await runOnce(member, agent.body.id)).status).toBe('completed');
    const policyOf = (delivery: { body: string }) =>
      (JSON.parse(delivery.body) as { data: { policyId: string } }).data.policyId;
    await until(() =>
      receiver.received.some((delivery) => policyOf(delivery) === calendar.body.id),
    );
    const alerts = await admin.get<{
      data: { threshold: number; policyId: string; periodStart: string }[];
    }>('/v1/budget-alerts');
    const mine = alerts.body.data.filter((alert) =>
      [rolling.body.id, calendar.body.id].includes(alert.policyId),
    );
    expect(mine).toEqual([expect.objectContaining({ policyId: calendar.body.id, threshold: 50 })]);
    expect(receiver.received.filter((delivery) => policyOf(delivery) === rolling.body.id)).toEqual(
      [],
    );
    const deliveries = await admin.get<{ data: unknown[] }>(
      `/v1/webhooks/${hook.body.id}/deliveries`,
    );
    expect(deliveries.body.data).toHaveLength(1);
    // The payload's period start is written as the API writes it (ISO 8601, in UTC, with Z).
    const sent = receiver.received
      .map((delivery) => JSON.parse(delivery.body) as { data: { policyId: string } })
      .find((event) => event.data.policyId === calendar.body.id);
    const listed = alerts.body.data.find((alert) => alert.policyId === calendar.body.id);
    expect(listed?.periodStart).toMatch(/\.000Z$/);
    expect(sent?.data).toMatchObject({ periodStart: listed?.periodStart });
  });
});
