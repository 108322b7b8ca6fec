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
 * A platform policy binds every tenant, so each change to one is appended to every tenant's
 * audit chain, where that tenant's admins read it and the chain still verifies.
 */
let server: TestServer;
let operator: ApiClient;
const tenants: { tenantId: string; admin: ApiClient }[] = [];

interface AuditEvent {
  action: string;
  actorKind: string;
  targetType: string | null;
  targetId: string | null;
  data: Record<string, unknown>;
}

async function policyEvents(tenant: { tenantId: string; admin: ApiClient }, policyId: string) {
  const log = await tenant.admin.get<{ data: AuditEvent[] }>(
    `/v1/tenants/${tenant.tenantId}/audit-events?limit=500`,
  );
  expect(log.status).toBe(200);
  return log.body.data.filter((event) => event.targetId === policyId);
}

beforeAll(async () => {
  server = await startTestServer();
  operator = apiClient(server.url, testOperatorKey);
  for (const slug of ['platform-a', 'platform-b']) {
    const tenantId = await seedTenant(operator, slug);
    const admin = await seedUser(operator, { tenantId, role: 'admin' });
    tenants.push({ tenantId, admin: apiClient(server.url, admin.secret) });
  }
});

afterAll(async () => {
  await server?.stop();
});

describe('platform policies in the audit log', () => {
  it("records each change in every tenant's chain, as the operator's", async () => {
    const created = await operator.post<Created>('/v1/policies', {
      level: 'platform',
      name: 'fair use',
      limits: { runsPerDay: 10_000 },
    });
    expect(created.status).toBe(201);
    const id = created.body.id;
    const changed = await operator.request('PATCH', `/v1/policies/${id}`, {
      limits: { runsPerDay: 20_000 },
    });
    expect(changed.status).toBe(200);
    expect((await operator.request('DELETE', `/v1/policies/${id}`)).status).toBe(204);
    for (const tenant of tenants) {
      const events = await policyEvents(tenant, id);
      expect(events.map((event) => event.action)).toEqual([
        'policy.created',
        'policy.updated',
        'policy.deleted',
      ]);
      for (const event of events) {
        expect(event).toMatchObject({ actorKind: 'operator', targetType: 'policy' });
        expect(event.data).toMatchObject({ level: 'platform' });
      }
      const verified = await tenant.admin.post<{ ok: boolean }>(
        `/v1/tenants/${tenant.tenantId}/audit/verify`,
      );
      expect(verified.body.ok).toBe(true);
    }
  });

  it('writes nothing when a tenant admin tries to set one', async () => {
    const platformEvents = async () => {
      const tenant = tenants[1];
      if (tenant === undefined) throw new Error('no tenant');
      const log = await tenant.admin.get<{ data: AuditEvent[] }>(
        `/v1/tenants/${tenant.tenantId}/audit-events?limit=500`,
      );
      return log.body.data.filter((event) => event.data['level'] === 'platform').length;
    };
    const before = await platformEvents();
    const refused = await tenants[0]?.admin.post('/v1/policies', {
      level: 'platform',
      limits: { runsPerDay: 1 },
    });
    expect(refused?.status).toBe(403);
    expect(await platformEvents()).toBe(before);
  });
});
