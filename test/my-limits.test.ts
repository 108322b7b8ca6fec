import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * getMyLimits reports what is enforced: the configuration's limits (request rates per key, user
 * and tenant; concurrent runs per user and tenant) beside the policies', the tightest of each
 * kind winning.
 */
let server: TestServer;
let operator: ApiClient;
let admin: ApiClient;
let tenantId: string;

const perKey = 20;

beforeAll(async () => {
  server = await startTestServer({
    limits: { requestsPerMinute: { key: perKey, user: 40, tenant: 1_000 } },
    runs: { maxConcurrentPerUser: 3, maxConcurrentPerTenant: 0 },
  });
  operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'my-limits');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
});

afterAll(async () => {
  await server?.stop();
});

type Reported = {
  limit: number;
  source: string;
  policyId: string | null;
  level: string | null;
  scope?: string;
  setting?: string;
};
type MyLimits = { limits: Record<string, Reported> };

async function newMember(): Promise<{ client: ApiClient; userId: string }> {
  const seeded = await seedUser(operator, { tenantId, role: 'member' });
  return { client: apiClient(server.url, seeded.secret), userId: seeded.userId };
}

describe('getMyLimits', () => {
  it("reports the configuration's limits when they are tighter than a policy's, as they are enforced", async () => {
    const { client, userId } = await newMember();
    const policy = await admin.post<Created>('/v1/policies', {
      level: 'user',
      subjectId: userId,
      limits: { requestsPerMinute: 5_000, concurrentRuns: 50, runsPerDay: 100 },
    });
    expect(policy.status).toBe(201);
    const mine = await client.get<MyLimits>('/v1/me/limits');
    expect(mine.status).toBe(200);
    expect(mine.body.limits['requestsPerMinute']).toEqual({
      limit: perKey,
      source: 'config',
      policyId: null,
      level: null,
      scope: 'key',
      setting: 'limits.requestsPerMinute.key',
    });
    expect(mine.body.limits['concurrentRuns']).toMatchObject({
      limit: 3,
      source: 'config',
      scope: 'user',
      setting: 'runs.maxConcurrentPerUser',
    });
    expect(mine.body.limits['runsPerDay']).toEqual({
      limit: 100,
      source: 'policy',
      policyId: policy.body.id,
      level: 'user',
    });
    // The limit reported is the one that refuses: the key's minute ends at `perKey` requests
    // (getMyLimits was the first).
    let served = 1;
    let refused: { limitScope?: string } | undefined;
    while (refused === undefined && served <= perKey) {
      const response = await client.get<{ limitScope?: string }>('/v1/me');
      if (response.status === 429) refused = response.body;
      else served += 1;
    }
    expect(served).toBe(perKey);
    expect(refused?.limitScope).toBe('key');
  });

  it('reports a policy tighter than the configuration, and the configuration alone without policies', async () => {
    const bare = await newMember();
    const alone = await bare.client.get<MyLimits>('/v1/me/limits');
    expect(Object.keys(alone.body.limits).sort()).toEqual(['concurrentRuns', 'requestsPerMinute']);
    expect(alone.body.limits['requestsPerMinute']?.limit).toBe(perKey);
    const { client, userId } = await newMember();
    const policy = await admin.post<Created>('/v1/policies', {
      level: 'user',
      subjectId: userId,
      limits: { requestsPerMinute: 5 },
    });
    const mine = await client.get<MyLimits>('/v1/me/limits');
    expect(mine.body.limits['requestsPerMinute']).toEqual({
      limit: 5,
      source: 'policy',
      policyId: policy.body.id,
      level: 'user',
    });
  });
});

describe('getMyLimits query parameters', () => {
  it('refuses any with 422 instead of answering for the caller as if it were obeyed', async () => {
    const { userId } = await newMember();
    const asked = await admin.get<{ code: string; errors: { path: string }[] }>(
      `/v1/me/limits?userId=${userId}`,
    );
    expect(asked.status).toBe(422);
    expect(asked.body.code).toBe('validation_failed');
    expect(asked.body.errors[0]?.path).toBe('query.userId');
    expect((await admin.get('/v1/me/limits')).status).toBe(200);
  });
});
