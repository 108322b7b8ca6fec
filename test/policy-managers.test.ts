import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiClient, apiClient, type Created, seedUser } from './support/api-client.ts';
import {
  callCostUsd,
  type PolicyWorld,
  type Problem,
  startPolicyWorld,
} from './support/policy-world.ts';

/**
 * The operator's policies and the tenant's on one target: both exist, both bind (the tightest
 * wins), and neither side changes the other's (support/policy-world.ts: a budget of k calls
 * affords exactly k).
 */
let world: PolicyWorld;
let operator: ApiClient;
let owner: ApiClient;
let admin: ApiClient;
let tenantId: string;

type PolicyBody = Created & { managedBy: string; version: number };

beforeAll(async () => {
  world = await startPolicyWorld('managers');
  ({ operator, owner, admin, tenantId } = world);
});

afterAll(async () => {
  await world?.stop();
});

describe('an operator policy and a tenant policy on one target', () => {
  it('both bind, the tightest wins, and the admin cannot change or remove the operator’s', async () => {
    const { member, memberId } = world;
    const loose = await admin.post<PolicyBody>('/v1/policies', {
      level: 'user',
      subjectId: memberId,
      limits: { budget: { amountUsd: callCostUsd * 100, period: 'day' } },
    });
    expect(loose.status).toBe(201);
    expect(loose.body.managedBy).toBe('tenant');
    const tight = await operator.post<PolicyBody>('/v1/policies', {
      tenantId,
      level: 'user',
      subjectId: memberId,
      limits: { budget: { amountUsd: callCostUsd, period: 'day' } },
    });
    expect(tight.status).toBe(201);
    expect(tight.body.managedBy).toBe('operator');

    expect((await world.run(member)).status).toBe('completed');
    const refused = (await world.run(member)) as { errorCode: string | null } & {
      errorDetails?: { policyId?: string };
    };
    expect(refused.errorCode).toBe('budget_exceeded');
    expect(refused.errorDetails?.policyId).toBe(tight.body.id);
    const limits = await member.get<{ budgets: { policyId: string; remaining: number }[] }>(
      '/v1/me/limits',
    );
    expect(limits.body.budgets.map((budget) => budget.policyId).sort()).toEqual(
      [loose.body.id, tight.body.id].sort(),
    );
    expect(limits.body.budgets.find((b) => b.policyId === tight.body.id)?.remaining).toBe(0);

    // The admin cannot lift the operator's limit, nor the operator make the admin's its own.
    const raise = await admin.request<Problem>('PATCH', `/v1/policies/${tight.body.id}`, {
      limits: { budget: { amountUsd: 1000, period: 'day' } },
    });
    expect(raise.status).toBe(403);
    expect((await admin.request('DELETE', `/v1/policies/${tight.body.id}`)).status).toBe(403);
    const takeOver = await operator.request<Problem>('PATCH', `/v1/policies/${loose.body.id}`, {
      limits: { budget: { amountUsd: callCostUsd, period: 'day' } },
    });
    expect(takeOver.status).toBe(403);
    expect(takeOver.body.code).toBe('forbidden');
    expect((await admin.get<PolicyBody>(`/v1/policies/${loose.body.id}`)).body.version).toBe(1);

    // One per target and manager: a second of the same side is still a conflict.
    for (const [client, extra] of [
      [admin, {}],
      [operator, { tenantId }],
    ] as const) {
      const second = await client.post<Problem>('/v1/policies', {
        ...extra,
        level: 'user',
        subjectId: memberId,
        limits: { runsPerDay: 5 },
      });
      expect(second.status).toBe(409);
      expect(second.body.code).toBe('conflict');
    }
    expect((await operator.request('DELETE', `/v1/policies/${tight.body.id}`)).status).toBe(204);
    expect((await admin.request('DELETE', `/v1/policies/${loose.body.id}`)).status).toBe(204);
  });

  it('counts request rates against both, naming the operator’s when it refuses', async () => {
    const seeded = await seedUser(operator, { tenantId, role: 'member' });
    const member = apiClient(world.server.url, seeded.secret);
    const loose = await admin.post<PolicyBody>('/v1/policies', {
      level: 'user',
      subjectId: seeded.userId,
      limits: { requestsPerMinute: 1000 },
    });
    expect(loose.status).toBe(201);
    const tight = await operator.post<PolicyBody>('/v1/policies', {
      tenantId,
      level: 'user',
      subjectId: seeded.userId,
      limits: { requestsPerMinute: 2 },
    });
    expect(tight.status).toBe(201);
    const first = await member.get<{ limits: { requestsPerMinute?: { policyId: string } } }>(
      '/v1/me/limits',
    );
    expect(first.status).toBe(200);
    expect(first.body.limits.requestsPerMinute?.policyId).toBe(tight.body.id);
    expect((await member.get('/v1/me/limits')).status).toBe(200);
    const third = await member.get<Problem>('/v1/me/limits');
    expect(third.status).toBe(429);
    expect(third.body['policyId']).toBe(tight.body.id);
  });

  it('lets the owner add a tighter tenant policy next to the operator’s', async () => {
    const operators = await operator.post<PolicyBody>('/v1/policies', {
      tenantId,
      level: 'tenant',
      limits: { runsPerDay: 1000 },
    });
    expect(operators.status).toBe(201);
    const owners = await owner.post<PolicyBody>('/v1/policies', {
      level: 'tenant',
      limits: { runsPerDay: 1 },
    });
    expect(owners.status).toBe(201);
    expect(owners.body.managedBy).toBe('tenant');
    const { member } = world;
    const thread = await member.post<Created>('/v1/threads', {});
    const runs = `/v1/threads/${thread.body.id}/runs`;
    expect((await member.post(runs, { agentId: world.agentId, input: 'one' })).status).toBe(201);
    const other = await member.post<Created>('/v1/threads', {});
    const refused = await member.post<Problem>(`/v1/threads/${other.body.id}/runs`, {
      agentId: world.agentId,
      input: 'two',
    });
    expect(refused.status).toBe(429);
    expect(refused.body.code).toBe('quota_exceeded');
    expect(refused.body['policyId']).toBe(owners.body.id);
  });
});
