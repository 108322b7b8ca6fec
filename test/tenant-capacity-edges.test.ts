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
 * `limits.perTenant` at its edges (found by review): the operator's policies are not the
 * tenant's to fill, and a rotated key in its grace period is still a working key.
 */
let server: TestServer;
let operator: ApiClient;

interface Refusal extends Created {
  readonly code?: string;
}

beforeAll(async () => {
  server = await startTestServer({
    limits: { perTenant: { policies: 2, apiKeysPerUser: 2 } },
  });
  operator = apiClient(server.url, testOperatorKey);
}, 120_000);

afterAll(async () => {
  await server?.stop();
});

describe('limits.perTenant at its edges', () => {
  it('lets the operator set a tenant budget even when the tenant admin filled the policy cap', async () => {
    const tenantId = await seedTenant(operator, 'review-cap-policies');
    const admin = apiClient(
      server.url,
      (await seedUser(operator, { tenantId, role: 'admin' })).secret,
    );
    // The hostile admin fills the tenant's policy places with generous policies of their own.
    for (const role of ['viewer', 'member'])
      expect(
        (
          await admin.post('/v1/policies', {
            level: 'role',
            role,
            limits: { runsPerDay: 1_000_000 },
          })
        ).status,
      ).toBe(201);
    // The operator now wants to throttle the tenant: the operator's own policy must not be
    // refused because of what the tenant's admins created.
    const throttle = await operator.post<Refusal>('/v1/policies', {
      tenantId,
      level: 'tenant',
      limits: { budget: { amountUsd: 1, period: 'day' } },
    });
    expect(throttle.status, JSON.stringify(throttle.body)).toBe(201);
  });

  it('rotating keys with a grace period cannot give a user more working keys than the cap', async () => {
    const tenantId = await seedTenant(operator, 'review-cap-keys');
    const seeded = await seedUser(operator, { tenantId, role: 'member' });
    const keys = `/v1/tenants/${tenantId}/users/${seeded.userId}/api-keys`;
    const second = await operator.post<Created>(keys, { name: 'second' });
    expect(second.status).toBe(201);
    // At the cap of 2: one more is refused.
    expect((await operator.post<Refusal>(keys, { name: 'third' })).body.code).toBe(
      'resource_limit_exceeded',
    );
    const secrets = [seeded.secret, second.body.secret as string];
    let current = second.body.id;
    for (let index = 0; index < 4; index += 1) {
      const rotated = await operator.post<Created>(`${keys}/${current}/rotate`, {
        gracePeriodSeconds: 86_400,
      });
      if (rotated.status !== 201) break;
      secrets.push(rotated.body.secret as string);
      current = rotated.body.id;
    }
    expect((await apiClient(server.url, 'brg_not_a_key').get('/v1/me/limits')).status).toBe(401);
    let working = 0;
    for (const secret of secrets)
      if ((await apiClient(server.url, secret).get('/v1/me/limits')).status === 200) working += 1;
    expect(working).toBeLessThanOrEqual(2);
    // And a key in its grace period is still a key: creating one more stays refused.
    expect((await operator.post<Refusal>(keys, { name: 'fourth' })).status).toBe(409);
  });
});
