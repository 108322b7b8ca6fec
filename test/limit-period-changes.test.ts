import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockModelServer, type MockModelServer } from '../src/testing/index.ts';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import {
  type BudgetState,
  callNanos,
  maxOutputTokens,
  nanosPerUsd,
  pricedConfig,
  toNanos,
} from './support/budget-fixtures.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/*
 * A limit's period is the tenant's calendar (its time zone) or the policy's period; changing
 * either must not hand out a fresh, empty period. An owner who changed the tenant's time zone
 * used to get a new day under the operator's daily budget and run quota each time, and a
 * budget changed from `day` to `month` forgot what the day had spent. Spend and quota carry
 * into the new period (migration 0050). Every model call costs exactly `callNanos`.
 */
let mock: MockModelServer;
let server: TestServer;
let operator: ApiClient;

beforeAll(async () => {
  mock = await createMockModelServer({
    script: () => ({ text: 'ok', usage: { promptTokens: 7, completionTokens: maxOutputTokens } }),
  });
  server = await startTestServer(pricedConfig(mock.url));
  operator = apiClient(server.url, testOperatorKey);
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await mock?.close();
});

async function call(client: ApiClient): Promise<number> {
  const response = await client.post('/v1/chat/completions', {
    model: 'mock:priced',
    max_tokens: maxOutputTokens,
    messages: [{ role: 'user', content: 'hello' }],
  });
  return response.status;
}

async function usedNanos(client: ApiClient, policyId: string): Promise<number> {
  const limits = await client.get<{ budgets: BudgetState[] }>('/v1/me/limits');
  const budget = limits.body.budgets.find((candidate) => candidate.policyId === policyId);
  return toNanos(budget?.used ?? -1);
}

// Back and forth too: each call's spend is moved on, never counted twice.
const zones = [
  'Asia/Tokyo',
  'UTC',
  'Asia/Tokyo',
  'Pacific/Kiritimati',
  'Etc/GMT+12',
  'America/New_York',
  'UTC',
];

describe("changing the tenant's time zone", () => {
  it("does not give the owner a fresh day under the operator's daily budget", async () => {
    const tenantId = await seedTenant(operator, 'zone-budget');
    const owner = apiClient(
      server.url,
      (await seedUser(operator, { tenantId, role: 'owner' })).secret,
    );
    const policy = await operator.post<Created>('/v1/policies', {
      tenantId,
      level: 'tenant',
      limits: { budget: { amountUsd: (3 * callNanos) / nanosPerUsd, period: 'day' } },
    });
    expect(policy.status, JSON.stringify(policy.body)).toBe(201);
    for (let index = 0; index < 3; index += 1) expect(await call(owner)).toBe(200);
    expect(await call(owner)).toBe(429);
    for (const timeZone of zones) {
      const changed = await owner.request('PATCH', `/v1/tenants/${tenantId}`, { timeZone });
      expect(changed.status, JSON.stringify(changed.body)).toBe(200);
      expect(await usedNanos(owner, policy.body.id), timeZone).toBe(3 * callNanos);
      expect(await call(owner)).toBe(429);
    }
  });

  it('does not reset the daily run quota', async () => {
    const tenantId = await seedTenant(operator, 'zone-quota');
    const owner = apiClient(
      server.url,
      (await seedUser(operator, { tenantId, role: 'owner' })).secret,
    );
    const policy = await operator.post('/v1/policies', {
      tenantId,
      level: 'tenant',
      limits: { runsPerDay: 2 },
    });
    expect(policy.status, JSON.stringify(policy.body)).toBe(201);
    const agent = await owner.post<Created>('/v1/agents', { name: 'counted' });
    const thread = await owner.post<Created>('/v1/threads', {});
    const run = () =>
      owner.post(`/v1/threads/${thread.body.id}/runs`, {
        agentId: agent.body.id,
        input: 'hi',
        strategy: 'enqueue',
      });
    expect((await run()).status).toBe(201);
    expect((await run()).status).toBe(201);
    expect((await run()).status).toBe(429);
    for (const timeZone of zones) {
      await owner.request('PATCH', `/v1/tenants/${tenantId}`, { timeZone });
      const refused = await run();
      expect(refused.status, timeZone).toBe(429);
      expect((refused.body as { code: string }).code).toBe('quota_exceeded');
    }
  });
});

describe("changing a budget's period", () => {
  it('carries what was spent into the new period', async () => {
    const tenantId = await seedTenant(operator, 'period-change');
    const admin = apiClient(
      server.url,
      (await seedUser(operator, { tenantId, role: 'admin' })).secret,
    );
    const seeded = await seedUser(operator, { tenantId, role: 'member' });
    const member = apiClient(server.url, seeded.secret);
    const amountUsd = (3 * callNanos) / nanosPerUsd;
    const policy = await admin.post<Created>('/v1/policies', {
      level: 'user',
      subjectId: seeded.userId,
      limits: { budget: { amountUsd, period: 'day' } },
    });
    expect(policy.status, JSON.stringify(policy.body)).toBe(201);
    expect(await call(member)).toBe(200);
    expect(await call(member)).toBe(200);
    const patch = (budget: Record<string, unknown>) =>
      admin.request('PATCH', `/v1/policies/${policy.body.id}`, {
        limits: { budget: { amountUsd, ...budget } },
      });
    expect((await patch({ period: 'month' })).status).toBe(200);
    expect(await usedNanos(member, policy.body.id)).toBe(2 * callNanos);
    expect(await call(member)).toBe(200);
    expect(await call(member)).toBe(429);
    for (const budget of [
      { period: 'rolling', windowHours: 24 },
      { period: 'day' },
      { period: 'week' },
      { period: 'day' },
      { period: 'month' },
    ]) {
      expect((await patch(budget)).status).toBe(200);
      expect(await usedNanos(member, policy.body.id), JSON.stringify(budget)).toBe(3 * callNanos);
      expect(await call(member), JSON.stringify(budget)).toBe(429);
    }
  });
});

describe('a change while calls are in flight', () => {
  it('moves an open reservation as a reservation: the call is charged its cost, not its worst case', async () => {
    const tenantId = await seedTenant(operator, 'period-in-flight');
    const admin = apiClient(
      server.url,
      (await seedUser(operator, { tenantId, role: 'admin' })).secret,
    );
    const seeded = await seedUser(operator, { tenantId, role: 'member' });
    const member = apiClient(server.url, seeded.secret);
    const amountUsd = (3 * callNanos) / nanosPerUsd;
    const policy = await admin.post<Created>('/v1/policies', {
      level: 'user',
      subjectId: seeded.userId,
      limits: { budget: { amountUsd, period: 'day' } },
    });
    expect(policy.status, JSON.stringify(policy.body)).toBe(201);
    // One output token ($1 per million: 1,000 nano-USD) where maxOutputTokens were reserved.
    mock.setScript(() => ({
      text: 'ok',
      usage: { promptTokens: 7, completionTokens: 1 },
      fault: { latencyMs: 1_500 },
    }));
    try {
      const inFlight = call(member);
      const budget = async () =>
        (await member.get<{ budgets: BudgetState[] }>('/v1/me/limits')).body.budgets.find(
          (candidate) => candidate.policyId === policy.body.id,
        );
      const deadline = Date.now() + 5_000;
      while (toNanos((await budget())?.reserved ?? 0) === 0 && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 20));
      for (const period of ['month', 'week']) {
        const changed = await admin.request('PATCH', `/v1/policies/${policy.body.id}`, {
          limits: { budget: { amountUsd, period } },
        });
        expect(changed.status).toBe(200);
        // Still a reservation on the new period's counter, not spend.
        expect(await budget()).toMatchObject({ used: 0, reserved: callNanos / nanosPerUsd });
      }
      expect(await inFlight).toBe(200);
      // Settled where it was moved: its real cost used, nothing reserved, as the ledger says.
      expect(await budget()).toMatchObject({ used: 1_000 / nanosPerUsd, reserved: 0 });
      const ledger = await member.get<{ totals: { costUsd: number } }>('/v1/usage');
      expect(toNanos(ledger.body.totals.costUsd)).toBe(1_000);
    } finally {
      mock.setScript(() => ({
        text: 'ok',
        usage: { promptTokens: 7, completionTokens: maxOutputTokens },
      }));
    }
  });

  it('answers every call and every zone or period change under traffic (no deadlock between them)', async () => {
    const tenantId = await seedTenant(operator, 'zone-traffic');
    const owner = apiClient(
      server.url,
      (await seedUser(operator, { tenantId, role: 'owner' })).secret,
    );
    const members = await Promise.all(
      [0, 1, 2].map(async () => {
        const seeded = await seedUser(operator, { tenantId, role: 'member' });
        return { seeded, client: apiClient(server.url, seeded.secret) };
      }),
    );
    // A tenant budget and a budget per member: every reservation holds two counters.
    const plenty = (1_000 * callNanos) / nanosPerUsd;
    expect(
      (
        await operator.post('/v1/policies', {
          tenantId,
          level: 'tenant',
          limits: { budget: { amountUsd: plenty, period: 'day' } },
        })
      ).status,
    ).toBe(201);
    const userPolicies: string[] = [];
    for (const { seeded } of members) {
      const created = await owner.post<Created>('/v1/policies', {
        level: 'user',
        subjectId: seeded.userId,
        limits: { budget: { amountUsd: plenty, period: 'day' } },
      });
      expect(created.status).toBe(201);
      userPolicies.push(created.body.id);
    }
    let stop = false;
    const statuses: number[] = [];
    const traffic = members.map(async ({ client }) => {
      while (!stop) statuses.push(await call(client));
    });
    const changes: number[] = [];
    for (const [index, timeZone] of zones.entries()) {
      const changed = await owner.request('PATCH', `/v1/tenants/${tenantId}`, { timeZone });
      changes.push(changed.status);
      // And a budget's period, changed under the same traffic.
      const period = ['week', 'month', 'day'][index % 3];
      const repriced = await owner.request('PATCH', `/v1/policies/${userPolicies[index % 3]}`, {
        limits: { budget: { amountUsd: plenty, period } },
      });
      changes.push(repriced.status);
    }
    stop = true;
    await Promise.all(traffic);
    expect(
      changes.every((status) => status === 200),
      JSON.stringify(changes),
    ).toBe(true);
    expect(statuses.length).toBeGreaterThan(0);
    expect(
      statuses.every((status) => status === 200),
      JSON.stringify(statuses),
    ).toBe(true);
  });
});
