import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MockModelServer } from '../src/testing/index.ts';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
  waitForRun,
} from './support/api-client.ts';
import {
  callCostUsd,
  outputTokens,
  type PolicyWorld,
  type Problem,
  type RunBody,
  startPolicyWorld,
} from './support/policy-world.ts';
import type { TestServer } from './support/test-brigade.ts';

/**
 * Policies, budgets and quotas through the public API (see support/policy-world.ts: a budget
 * of k calls affords exactly k). Key quotas and rate and concurrency limits are in
 * policy-limits.test.ts.
 */
let world: PolicyWorld;
let mock: MockModelServer;
let server: TestServer;
let operator: ApiClient;
let owner: ApiClient;
let admin: ApiClient;
let member: ApiClient;
let memberId: string;
let memberKeyId: string;
let tenantId: string;
let agentId: string;
const run = (client: ApiClient, input?: string): Promise<RunBody> => world.run(client, input);

beforeAll(async () => {
  world = await startPolicyWorld('guarded');
  ({ mock, server, operator, owner, admin, member, memberId, memberKeyId, tenantId, agentId } =
    world);
});

afterAll(async () => {
  await world?.stop();
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
    // An empty patch changes nothing, so it is refused (as for agents, tenants and users).
    expect((await admin.request('PATCH', `/v1/policies/${id}`, {})).status).toBe(422);
    expect((await admin.get<{ version: number }>(`/v1/policies/${id}`)).body.version).toBe(2);
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
      'user,requests,errors,inputTokens,outputTokens,cachedTokens,costUsd,failedAttempts',
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

  it('makes one successor when rotations of a key race', async () => {
    const keys = `/v1/tenants/${tenantId}/users/${memberId}/api-keys`;
    // Rotations racing each other make one successor; the rest are told the key was rotated
    // (else each would fork a line of keys that revoking one successor would not end). A race
    // is not lost every time, so it is run a few times.
    for (let attempt = 0; attempt < 3; attempt += 1) {
      const own = await member.post<Created>(keys, { name: `rotated-${attempt}` });
      expect(own.status).toBe(201);
      const racing = await Promise.all(
        [1, 2, 3].map(() => member.post(`${keys}/${own.body.id}/rotate`, {})),
      );
      expect(racing.map((response) => response.status).sort()).toEqual([201, 409, 409]);
      const listed = await member.get<{ data: { rotatedFromId: string | null }[] }>(
        `${keys}?limit=100`,
      );
      expect(listed.body.data.filter((key) => key.rotatedFromId === own.body.id)).toHaveLength(1);
    }
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
    let steps = '';
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
      steps = `/v1/threads/${thread.body.id}/runs/${created.body.id}/steps`;
    }
    expect(statuses).toEqual(['ok', 'error']);
    // The refused call's step says why, with the stable code.
    const refused = await member.get<{
      data: { type: string; tool?: { status: string; error?: { code: string | null } } }[];
    }>(steps);
    expect(refused.body.data.find((step) => step.type === 'tool')?.tool).toMatchObject({
      status: 'error',
      error: { code: 'quota_exceeded' },
    });
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
