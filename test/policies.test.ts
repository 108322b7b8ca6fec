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
 * Policies, budgets and quotas through the public API. The mock model answers every call with
 * exactly `maxOutputTokens` output tokens and the input priced at zero, so a call's worst case
 * and its actual cost are equal and a budget of k calls affords exactly k.
 */
let mock: Awaited<ReturnType<typeof createMockModelServer>>;
let server: TestServer;
let operator: ApiClient;
let owner: ApiClient;
let admin: ApiClient;
let member: ApiClient;
let memberId: string;
let memberKeyId: string;
let tenantId: string;
let agentId: string;

/** Output tokens per call, at $1 per million output tokens: $0.0001 per call. */
const outputTokens = 100;
const callCostUsd = 0.0001;

type Problem = { code: string; detail: string; [key: string]: unknown };
type RunBody = Created & { status: string; errorCode: string | null; errorMessage: string | null };

async function run(client: ApiClient, input = 'hello'): Promise<RunBody> {
  const thread = await client.post<Created>('/v1/threads', {});
  const created = await client.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
    agentId,
    input,
  });
  expect(created.status).toBe(201);
  return waitForRun<RunBody>(client, { threadId: thread.body.id, runId: created.body.id });
}

beforeAll(async () => {
  mock = await createMockModelServer({ apiKey: 'mock-secret-key' });
  mock.setScript(() => ({
    text: 'ok',
    usage: { promptTokens: 7, completionTokens: outputTokens },
  }));
  server = await startTestServer(
    {
      providers: {
        mock: { type: 'openai-compatible', baseUrl: mock.url, apiKeyEnv: 'MOCK_API_KEY' },
      },
      models: { prices: { 'mock:priced': { inputPerMTok: 0, outputPerMTok: 1 } } },
      runs: { pollIntervalMs: 50 },
    },
    { env: { MOCK_API_KEY: 'mock-secret-key' } },
  );
  operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'guarded');
  owner = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'owner' })).secret);
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  const seeded = await seedUser(operator, { tenantId, role: 'member' });
  member = apiClient(server.url, seeded.secret);
  memberId = seeded.userId;
  memberKeyId = seeded.keyId;
  const agent = await admin.post<Created>('/v1/agents', {
    name: 'priced',
    model: 'mock:priced',
    maxOutputTokens: outputTokens,
  });
  expect(agent.status).toBe(201);
  agentId = agent.body.id;
});

afterAll(async () => {
  await server?.stop();
  await mock?.close();
});

describe('policies', () => {
  it('are created, read, changed and deleted by admins, and refused to members', async () => {
    const created = await admin.post<Created & { version: number; managedBy: string }>(
      '/v1/policies',
      { level: 'role', role: 'viewer', name: 'viewers', limits: { runsPerDay: 5 } },
    );
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      tenantId,
      level: 'role',
      role: 'viewer',
      managedBy: 'tenant',
      version: 1,
    });
    const id = created.body.id;
    expect((await admin.get(`/v1/policies/${id}`)).status).toBe(200);
    const listed = await admin.get<{ data: { id: string }[] }>('/v1/policies');
    expect(listed.body.data.map((policy) => policy.id)).toContain(id);
    const updated = await admin.request<{ version: number; limits: object }>(
      'PATCH',
      `/v1/policies/${id}`,
      { limits: { runsPerDay: 9 } },
    );
    expect(updated.status).toBe(200);
    expect(updated.body).toMatchObject({ version: 2, limits: { runsPerDay: 9 } });
    expect((await member.get('/v1/policies')).status).toBe(403);
    expect(
      (await member.post('/v1/policies', { level: 'tenant', limits: { runsPerDay: 1 } })).status,
    ).toBe(403);
    const duplicate = await admin.post<Problem>('/v1/policies', {
      level: 'role',
      role: 'viewer',
      limits: { runsPerDay: 1 },
    });
    expect(duplicate.status).toBe(409);
    expect((await admin.request('DELETE', `/v1/policies/${id}`)).status).toBe(204);
    expect((await admin.get<Problem>(`/v1/policies/${id}`)).body.code).toBe('policy_not_found');
  });

  it('rejects malformed policies with every field named', async () => {
    const response = await admin.post<Problem & { errors: { path: string }[] }>('/v1/policies', {
      level: 'user',
      role: 'member',
      limits: {},
    });
    expect(response.status).toBe(422);
    const paths = response.body.errors.map((error) => error.path);
    expect(paths).toEqual(expect.arrayContaining(['role', 'subjectId', 'limits']));
    const unknownSubject = await admin.post<Problem>('/v1/policies', {
      level: 'user',
      subjectId: '00000000-0000-4000-8000-000000000000',
      limits: { runsPerDay: 1 },
    });
    expect(unknownSubject.status).toBe(422);
    const platform = await admin.post('/v1/policies', {
      level: 'platform',
      limits: { runsPerDay: 1 },
    });
    expect(platform.status).toBe(403);
  });

  it('keeps operator policies out of admins’ reach', async () => {
    const created = await operator.post<Created & { managedBy: string }>('/v1/policies', {
      tenantId,
      level: 'tenant',
      limits: { toolCallsPerDay: 1000 },
    });
    expect(created.status).toBe(201);
    expect(created.body.managedBy).toBe('operator');
    expect((await owner.get(`/v1/policies/${created.body.id}`)).status).toBe(200);
    const change = await owner.request('PATCH', `/v1/policies/${created.body.id}`, {
      limits: { toolCallsPerDay: 10_000_000 },
    });
    expect(change.status).toBe(403);
    expect((await owner.request('DELETE', `/v1/policies/${created.body.id}`)).status).toBe(403);
    expect((await operator.request('DELETE', `/v1/policies/${created.body.id}`)).status).toBe(204);
  });

  it('hides another tenant’s policies', async () => {
    const otherTenant = await seedTenant(operator, 'other-guarded');
    const otherAdmin = apiClient(
      server.url,
      (await seedUser(operator, { tenantId: otherTenant, role: 'admin' })).secret,
    );
    const theirs = await otherAdmin.post<Created>('/v1/policies', {
      level: 'tenant',
      limits: { runsPerDay: 3 },
    });
    expect(theirs.status).toBe(201);
    expect((await admin.get(`/v1/policies/${theirs.body.id}`)).status).toBe(404);
    expect((await admin.request('DELETE', `/v1/policies/${theirs.body.id}`)).status).toBe(404);
    const mine = await admin.get<{ data: { id: string }[] }>('/v1/policies');
    expect(mine.body.data.map((policy) => policy.id)).not.toContain(theirs.body.id);
    const spoof = await admin.post('/v1/policies', {
      tenantId: otherTenant,
      level: 'tenant',
      limits: { runsPerDay: 3 },
    });
    expect(spoof.status).toBe(404);
  });
});

describe('budgets', () => {
  it('affords exactly k calls, then refuses with budget_exceeded before the provider is called', async () => {
    const policy = await admin.post<Created>('/v1/policies', {
      level: 'user',
      subjectId: memberId,
      limits: { budget: { amountUsd: callCostUsd * 3, period: 'day' } },
    });
    expect(policy.status).toBe(201);
    const before = mock.calls.length;
    const outcomes = [];
    for (let index = 0; index < 4; index += 1) outcomes.push(await run(member));
    expect(outcomes.map((outcome) => outcome.status)).toEqual([
      'completed',
      'completed',
      'completed',
      'failed',
    ]);
    expect(outcomes[3]?.errorCode).toBe('budget_exceeded');
    expect(mock.calls.length - before).toBe(3);

    const limits = await member.get<{
      budgets: {
        policyId: string;
        limit: number;
        used: number;
        remaining: number;
        resetsAt: string;
      }[];
    }>('/v1/me/limits');
    expect(limits.status).toBe(200);
    const budget = limits.body.budgets.find((entry) => entry.policyId === policy.body.id);
    expect(budget?.limit).toBeCloseTo(callCostUsd * 3, 12);
    expect(budget?.remaining).toBe(0);
    expect(budget?.used).toBeCloseTo(callCostUsd * 3, 12);
    expect(new Date(budget?.resetsAt ?? 0).getTime()).toBeGreaterThan(Date.now());

    // Raising the budget applies to the next call at once.
    const raised = await admin.request('PATCH', `/v1/policies/${policy.body.id}`, {
      limits: { budget: { amountUsd: callCostUsd * 4, period: 'day' } },
    });
    expect(raised.status).toBe(200);
    expect((await run(member)).status).toBe('completed');
    expect((await run(member)).errorCode).toBe('budget_exceeded');
    await admin.request('DELETE', `/v1/policies/${policy.body.id}`);
  });

  it('records usage per call that users see for themselves and admins for the tenant', async () => {
    const mine = await member.get<{
      totals: { requests: number; costUsd: number; outputTokens: number };
      data: { day: string; model: string; requests: number }[];
    }>('/v1/usage?groupBy=day,model');
    expect(mine.status).toBe(200);
    expect(mine.body.totals.requests).toBeGreaterThanOrEqual(4);
    expect(mine.body.totals.outputTokens).toBe(mine.body.totals.requests * outputTokens);
    expect(mine.body.data[0]?.model).toBe('mock:priced');
    const others = await member.get(`/v1/usage?userId=${memberKeyId}`);
    expect(others.status).toBe(403);
    const tenant = await admin.get<{ data: { user: string }[] }>('/v1/usage?groupBy=user');
    expect(tenant.body.data.map((row) => row.user)).toContain(memberId);
    const csv = await admin.request('GET', '/v1/usage/export?groupBy=user');
    expect(csv.status).toBe(200);
    expect(csv.headers.get('content-type')).toContain('text/csv');
    expect(String(csv.body).split('\r\n')[0]).toBe(
      'user,requests,errors,inputTokens,outputTokens,cachedTokens,costUsd',
    );
    const bad = await member.get<Problem>('/v1/usage?groupBy=colour');
    expect(bad.status).toBe(422);
  });
});

describe('quotas', () => {
  it('refuses runs beyond the daily run quota with 429 and Retry-After, counting nothing refused', async () => {
    const policy = await admin.post<Created>('/v1/policies', {
      level: 'api_key',
      subjectId: memberKeyId,
      limits: { runsPerDay: 2 },
    });
    expect(policy.status).toBe(201);
    const thread = await member.post<Created>('/v1/threads', {});
    const base = `/v1/threads/${thread.body.id}/runs`;
    // The first run's model call is slow, so its thread is surely busy for the next create.
    mock.setFaults({ latencyMs: 500 });
    const first = await member.post<Created>(base, { agentId, input: 'one' });
    expect(first.status).toBe(201);
    // Refused for another reason (the thread is busy): the quota is not spent.
    const busy = await member.post(base, { agentId, input: 'busy', strategy: 'reject' });
    mock.setFaults(undefined);
    expect(busy.status).toBe(409);
    await waitForRun(member, { threadId: thread.body.id, runId: first.body.id });
    expect((await member.post(base, { agentId, input: 'two' })).status).toBe(201);
    const third = await member.post<Problem & { resetsAt: string }>(base, {
      agentId,
      input: 'three',
    });
    expect(third.status).toBe(429);
    expect(third.body.code).toBe('quota_exceeded');
    expect(Number(third.headers.get('retry-after'))).toBeGreaterThan(0);
    const limits = await member.get<{
      quotas: { policyId: string; used: number; remaining: number }[];
    }>('/v1/me/limits');
    expect(limits.body.quotas.find((quota) => quota.policyId === policy.body.id)).toMatchObject({
      used: 2,
      remaining: 0,
    });
    // Another key of the same user is not bound by this key's policy.
    const otherKey = await member.post<Created>(
      `/v1/tenants/${tenantId}/users/${memberId}/api-keys`,
      {
        name: 'second',
      },
    );
    expect(otherKey.status).toBe(201);
    const viaOther = apiClient(server.url, String(otherKey.body.secret));
    expect((await viaOther.post(base, { agentId, input: 'other key' })).status).toBe(201);
    await admin.request('DELETE', `/v1/policies/${policy.body.id}`);
  });

  it('counts tool calls per day and tells the model when the quota is used up', async () => {
    const tooly = await admin.post<Created>('/v1/agents', {
      name: 'tooly',
      model: 'local',
      tools: ['calculator'],
    });
    expect(tooly.status).toBe(201);
    const policy = await admin.post<Created>('/v1/policies', {
      level: 'agent',
      subjectId: tooly.body.id,
      limits: { toolCallsPerDay: 1 },
    });
    expect(policy.status).toBe(201);
    const statuses: string[] = [];
    for (let index = 0; index < 2; index += 1) {
      const thread = await member.post<Created>('/v1/threads', {});
      const created = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
        agentId: tooly.body.id,
        input: 'call calculator {"expression":"2+2"}',
      });
      const done = await waitForRun(member, { threadId: thread.body.id, runId: created.body.id });
      expect(done.status).toBe('completed');
      // The run is over, so its event stream replays every event and ends.
      const events = await member.get<string>(
        `/v1/threads/${thread.body.id}/runs/${created.body.id}/events`,
      );
      const finished = String(events.body)
        .split('\n\n')
        .filter((block) => block.includes('event: tool-call-finished'))
        .map((block) => JSON.parse(block.split('data: ')[1] ?? '{}') as { status?: string })[0];
      statuses.push(finished?.status ?? 'missing');
    }
    expect(statuses).toEqual(['ok', 'error']);
    const limits = await member.get<{
      quotas: { kind: string; limit: number; agentId: string; used: number }[];
    }>('/v1/me/limits');
    expect(limits.body.quotas).toContainEqual(
      expect.objectContaining({
        kind: 'toolCallsPerDay',
        limit: 1,
        used: 1,
        agentId: tooly.body.id,
      }),
    );
    await admin.request('DELETE', `/v1/policies/${policy.body.id}`);
  });
});

describe('quotas per API key', () => {
  it('counts a run’s tool calls against the daily quota of the key that started it', async () => {
    const seeded = await seedUser(operator, { tenantId, role: 'member' });
    const client = apiClient(server.url, seeded.secret);
    const agent = await admin.post<Created>('/v1/agents', {
      name: 'keyed',
      model: 'local',
      tools: ['calculator'],
    });
    const policy = await admin.post('/v1/policies', {
      level: 'api_key',
      subjectId: seeded.keyId,
      limits: { toolCallsPerDay: 1 },
    });
    expect(policy.status).toBe(201);
    const outcomes: string[] = [];
    for (let index = 0; index < 2; index += 1) {
      const thread = await client.post<Created>('/v1/threads', {});
      const created = await client.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
        agentId: agent.body.id,
        input: 'call calculator {"expression":"1+1"}',
      });
      await waitForRun(client, { threadId: thread.body.id, runId: created.body.id });
      const events = await client.get<string>(
        `/v1/threads/${thread.body.id}/runs/${created.body.id}/events`,
      );
      outcomes.push(String(events.body).match(/"status":"(ok|error)"/)?.[1] ?? 'missing');
    }
    expect(outcomes).toEqual(['ok', 'error']);
  });
});

describe('rate and concurrency limits', () => {
  it('refuses requests beyond a policy’s requests per minute with the policy named', async () => {
    const seeded = await seedUser(operator, { tenantId, role: 'member' });
    const limited = apiClient(server.url, seeded.secret);
    const policy = await admin.post<Created>('/v1/policies', {
      level: 'user',
      subjectId: seeded.userId,
      limits: { requestsPerMinute: 3 },
    });
    expect(policy.status).toBe(201);
    const statuses: number[] = [];
    for (let index = 0; index < 4; index += 1) statuses.push((await limited.get('/v1/me')).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
    const refused = await limited.get<Problem & { policyId: string }>('/v1/me');
    expect(refused.body.code).toBe('rate_limited');
    expect(refused.body.policyId).toBe(policy.body.id);
    expect(refused.headers.get('ratelimit-policy')).toBe('3;w=60');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    // Others in the tenant are not affected.
    expect((await member.get('/v1/me')).status).toBe(200);
    await admin.request('DELETE', `/v1/policies/${policy.body.id}`);
  });

  it('makes a run wait for room under tokens per minute, failing it at its deadline', async () => {
    const seeded = await seedUser(operator, { tenantId, role: 'member' });
    const limited = apiClient(server.url, seeded.secret);
    const agent = await admin.post<Created>('/v1/agents', {
      name: 'hasty',
      model: 'mock:priced',
      maxOutputTokens: outputTokens,
      runTimeoutMs: 2_000,
    });
    const policy = await admin.post<Created>('/v1/policies', {
      level: 'user',
      subjectId: seeded.userId,
      limits: { tokensPerMinute: 150 },
    });
    expect(policy.status).toBe(201);
    const outcomes: (string | null)[] = [];
    for (let index = 0; index < 3; index += 1) {
      const thread = await limited.post<Created>('/v1/threads', {});
      const created = await limited.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
        agentId: agent.body.id,
        input: 'hi',
      });
      const done = await waitForRun(limited, { threadId: thread.body.id, runId: created.body.id });
      outcomes.push(done.status === 'completed' ? 'completed' : done.errorCode);
    }
    // 107 tokens per call: the second call starts below 150, the third finds the minute full.
    expect(outcomes).toEqual(['completed', 'completed', 'rate_limited']);
    await admin.request('DELETE', `/v1/policies/${policy.body.id}`);
  });

  it('caps a user’s concurrent runs across the scheduler by a concurrentRuns policy', async () => {
    const seeded = await seedUser(operator, { tenantId, role: 'member' });
    const limited = apiClient(server.url, seeded.secret);
    const policy = await admin.post<Created>('/v1/policies', {
      level: 'user',
      subjectId: seeded.userId,
      limits: { concurrentRuns: 1 },
    });
    expect(policy.status).toBe(201);
    mock.setFaults({ latencyMs: 150 });
    try {
      const ids = await Promise.all(
        [0, 1, 2].map(async () => {
          const thread = await limited.post<Created>('/v1/threads', {});
          const created = await limited.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
            agentId,
            input: 'hi',
          });
          return { threadId: thread.body.id, runId: created.body.id };
        }),
      );
      type Timed = RunBody & { startedAt: string; completedAt: string };
      const runs = await Promise.all(ids.map((id) => waitForRun<Timed>(limited, id)));
      expect(runs.map((run) => run.status)).toEqual(['completed', 'completed', 'completed']);
      const spans = runs
        .map((run) => [Date.parse(run.startedAt), Date.parse(run.completedAt)] as const)
        .sort((a, b) => a[0] - b[0]);
      for (let index = 1; index < spans.length; index += 1) {
        expect(spans[index]?.[0]).toBeGreaterThanOrEqual(spans[index - 1]?.[1] ?? Number.NaN);
      }
    } finally {
      mock.setFaults(undefined);
      await admin.request('DELETE', `/v1/policies/${policy.body.id}`);
    }
  });

  it('refuses limits that cannot bind at a level', async () => {
    const response = await admin.post<Problem & { errors: { path: string }[] }>('/v1/policies', {
      level: 'agent',
      subjectId: agentId,
      limits: { requestsPerMinute: 5, concurrentRuns: 1 },
    });
    expect(response.status).toBe(422);
    expect(response.body.errors.map((error) => error.path)).toEqual([
      'limits.requestsPerMinute',
      'limits.concurrentRuns',
    ]);
  });
});
