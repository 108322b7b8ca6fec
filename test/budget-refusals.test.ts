import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedUser,
  waitForRun,
} from './support/api-client.ts';
import {
  callCostUsd,
  outputTokens,
  type PolicyWorld,
  startPolicyWorld,
} from './support/policy-world.ts';

/**
 * What a budget refusal tells the caller (the amount left, what the call needed, when the
 * period resets), in each of its forms: a run's failure, and the OpenAI-compatible API's error.
 * Each test takes a member of its own, so their budgets do not meet.
 */
let world: PolicyWorld;

beforeAll(async () => {
  world = await startPolicyWorld('refusals');
});

afterAll(async () => {
  await world?.stop();
});

/** A new member of the tenant with a user budget of `amountUsd` (daily unless `period` says). */
async function memberWithBudget(
  amountUsd: number,
  period: { period: string; windowHours?: number } = { period: 'day' },
): Promise<{ client: ApiClient; userId: string; policyId: string }> {
  const seeded = await seedUser(world.operator, { tenantId: world.tenantId, role: 'member' });
  const policy = await world.admin.post<Created>('/v1/policies', {
    level: 'user',
    subjectId: seeded.userId,
    limits: { budget: { amountUsd, ...period } },
  });
  expect(policy.status).toBe(201);
  return {
    client: apiClient(world.server.url, seeded.secret),
    userId: seeded.userId,
    policyId: policy.body.id,
  };
}

type Details = {
  policyId: string;
  level: string;
  remainingUsd: number;
  requiredUsd: number;
  resetsAt: string;
};

/** The refusal's details, as each form must carry them. */
function expectDetails(details: Partial<Details> | null | undefined, policyId: string): void {
  expect(details).toMatchObject({ policyId, level: 'user' });
  expect(details?.remainingUsd).toBeCloseTo(1e-7, 15);
  expect(details?.requiredUsd).toBeGreaterThanOrEqual(callCostUsd);
  const resetsAt = new Date(details?.resetsAt ?? 0).getTime();
  expect(resetsAt).toBeGreaterThan(Date.now());
  expect(resetsAt).toBeLessThanOrEqual(Date.now() + 25 * 3_600_000);
}

describe('a budget refusal', () => {
  it('fails the run with errorDetails in getRun and in the run-failed event, and a message that shows what is left', async () => {
    const { client, policyId } = await memberWithBudget(1e-7);
    const thread = await client.post<Created>('/v1/threads', {});
    const created = await client.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId: world.agentId,
      input: 'hello',
    });
    expect(created.status).toBe(201);
    const run = await waitForRun<{
      status: string;
      errorCode: string | null;
      errorMessage: string | null;
      errorDetails: Partial<Details> | null;
    }>(client, { threadId: thread.body.id, runId: created.body.id });
    expect(run.status).toBe('failed');
    expect(run.errorCode).toBe('budget_exceeded');
    expectDetails(run.errorDetails, policyId);
    // Not "$0.000000 left": enough digits to show the tenth of a micro-dollar.
    expect(run.errorMessage).toContain('$0.000000100 left');
    expect(run.errorMessage).toContain(`resets at ${run.errorDetails?.resetsAt}`);

    const events = await client.get<string>(
      `/v1/threads/${thread.body.id}/runs/${created.body.id}/events`,
    );
    const failed = String(events.body)
      .split('\n\n')
      .find((block) => block.includes('event: run-failed'));
    const data = JSON.parse(failed?.split('data: ')[1] ?? '{}') as {
      errorCode?: string;
      errorDetails?: Partial<Details>;
    };
    expect(data.errorCode).toBe('budget_exceeded');
    expectDetails(data.errorDetails, policyId);
  });

  it('answers the OpenAI-compatible API with the details as extra fields of the error object', async () => {
    const { client, policyId } = await memberWithBudget(1e-7);
    for (const model of ['mock:priced', 'agent:priced']) {
      const refused = await client.post<{ error: Record<string, unknown> & Partial<Details> }>(
        '/v1/chat/completions',
        { model, messages: [{ role: 'user', content: 'hello' }] },
      );
      expect(refused.status).toBe(429);
      expect(refused.headers.get('x-should-retry')).toBe('false');
      expect(refused.body.error).toMatchObject({
        type: 'insufficient_quota',
        code: 'insufficient_quota',
        param: null,
      });
      expectDetails(refused.body.error, policyId);
    }
  });
});

describe('a rolling budget', () => {
  it('tells in getMyLimits when its oldest spending leaves the window, as a refusal does', async () => {
    const { client, policyId } = await memberWithBudget(callCostUsd * 1.5, {
      period: 'rolling',
      windowHours: 2,
    });
    type Limits = { budgets: { policyId: string; periodStart: string | null; resetsAt: string }[] };
    const before = await client.get<Limits>('/v1/me/limits');
    // Nothing spent in the window: nothing to free.
    expect(before.body.budgets).toEqual([
      expect.objectContaining({ policyId, periodStart: null, resetsAt: null }),
    ]);
    expect((await world.run(client)).status).toBe('completed');
    const refused = await client.post<{ error: Partial<Details> }>('/v1/chat/completions', {
      model: 'mock:priced',
      messages: [{ role: 'user', content: 'hello' }],
    });
    expect(refused.status).toBe(429);
    const resetsAt = refused.body.error.resetsAt;
    expect(new Date(resetsAt ?? 0).getTime()).toBeGreaterThan(Date.now() + 3_600_000);
    expect(new Date(resetsAt ?? 0).getTime()).toBeLessThanOrEqual(Date.now() + 2 * 3_600_000);
    const after = await client.get<Limits>('/v1/me/limits');
    const budget = after.body.budgets.find((entry) => entry.policyId === policyId);
    expect(budget?.periodStart).toBeNull();
    expect(new Date(budget?.resetsAt ?? 0).toISOString()).toBe(
      new Date(resetsAt ?? 1).toISOString(),
    );
  });
});

describe('a budget alert on a refusal', () => {
  type Alert = { policyId: string; threshold: number; usedUsd: number; limitUsd: number };
  const alertsOf = async (policyId: string) =>
    (await world.admin.get<{ data: Alert[] }>('/v1/budget-alerts')).body.data.filter(
      (alert) => alert.policyId === policyId,
    );

  it('is not recorded when the refused call alone did not fit and nothing was spent', async () => {
    const { client, policyId } = await memberWithBudget(callCostUsd / 2);
    const refused = await client.post('/v1/chat/completions', {
      model: 'mock:priced',
      messages: [{ role: 'user', content: 'too dear' }],
      max_tokens: outputTokens,
    });
    expect(refused.status).toBe(429);
    expect(await alertsOf(policyId)).toEqual([]);
  });

  it('says 100 % when what was used has reached a limit lowered below it', async () => {
    const { client, policyId } = await memberWithBudget(callCostUsd * 3);
    const paid = await client.post('/v1/chat/completions', {
      model: 'mock:priced',
      messages: [{ role: 'user', content: 'spend' }],
      max_tokens: outputTokens,
    });
    expect(paid.status).toBe(200);
    expect(await alertsOf(policyId)).toEqual([]);
    const lowered = await world.admin.request('PATCH', `/v1/policies/${policyId}`, {
      limits: { budget: { amountUsd: callCostUsd / 2, period: 'day' } },
    });
    expect(lowered.status).toBe(200);
    const refused = await client.post('/v1/chat/completions', {
      model: 'mock:priced',
      messages: [{ role: 'user', content: 'spend again' }],
      max_tokens: outputTokens,
    });
    expect(refused.status).toBe(429);
    const alerts = await alertsOf(policyId);
    expect(alerts.map((alert) => alert.threshold)).toEqual([100]);
    expect(alerts[0]?.usedUsd).toBeCloseTo(callCostUsd, 12);
    expect(alerts[0]?.limitUsd).toBeCloseTo(callCostUsd / 2, 12);
  });
});

describe('a budget amount', () => {
  it('is refused with 422 below one nano-dollar, which it would be stored as 0', async () => {
    const seeded = await seedUser(world.operator, { tenantId: world.tenantId, role: 'member' });
    for (const amountUsd of [1e-12, 4e-10, 0]) {
      const created = await world.admin.post<{ code: string; errors: { path: string }[] }>(
        '/v1/policies',
        {
          level: 'user',
          subjectId: seeded.userId,
          limits: { budget: { amountUsd, period: 'day' } },
        },
      );
      expect(created.status).toBe(422);
      expect(created.body.errors[0]?.path).toBe('body.limits.budget.amountUsd');
    }
    const smallest = await world.admin.post<
      Created & { limits: { budget: { amountUsd: number } } }
    >('/v1/policies', {
      level: 'user',
      subjectId: seeded.userId,
      limits: { budget: { amountUsd: 1e-9, period: 'day' } },
    });
    expect(smallest.status).toBe(201);
    expect(smallest.body.limits.budget.amountUsd).toBe(1e-9);
    const patched = await world.admin.request('PATCH', `/v1/policies/${smallest.body.id}`, {
      limits: { budget: { amountUsd: 1e-12, period: 'day' } },
    });
    expect(patched.status).toBe(422);
  });
});
