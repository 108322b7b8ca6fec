import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/** An agent's policies go with the agent, as a user's go with the user's erasure. */
let server: TestServer;
let operator: ApiClient;
let admin: ApiClient;
let tenantId: string;

beforeAll(async () => {
  server = await startTestServer({ limits: { perTenant: { policies: 2 } } });
  operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'agent-policies');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
});

afterAll(async () => {
  await server?.stop();
});

type AuditEvent = {
  action: string;
  targetId: string | null;
  data: Record<string, unknown>;
};

describe('deleting an agent', () => {
  it('deletes its policies, the operator’s too, in the same change, each audited', async () => {
    const agents: string[] = [];
    for (const name of ['first', 'second']) {
      const agent = await admin.post<Created>('/v1/agents', { name, model: 'local' });
      expect(agent.status).toBe(201);
      agents.push(agent.body.id);
    }
    const own = await admin.post<Created>('/v1/policies', {
      level: 'agent',
      subjectId: agents[0],
      limits: { runsPerDay: 5 },
    });
    expect(own.status).toBe(201);
    const operators = await operator.post<Created>('/v1/policies', {
      tenantId,
      level: 'agent',
      subjectId: agents[1],
      limits: { toolCallsPerDay: 5 },
    });
    expect(operators.status).toBe(201);
    // Within `limits.perTenant.policies` (2): one tenant policy made, one place left.
    for (const agentId of agents)
      expect((await admin.request('DELETE', `/v1/agents/${agentId}`)).status).toBe(204);

    for (const policyId of [own.body.id, operators.body.id]) {
      expect((await admin.get(`/v1/policies/${policyId}`)).status).toBe(404);
      expect((await operator.get(`/v1/policies/${policyId}`)).status).toBe(404);
      expect(
        (await admin.request('PATCH', `/v1/policies/${policyId}`, { limits: { runsPerDay: 1 } }))
          .status,
      ).toBe(404);
    }
    const listed = await admin.get<{ data: { id: string }[] }>('/v1/policies');
    expect(listed.body.data.map((policy) => policy.id)).not.toContain(own.body.id);
    // The deleted agent's policy no longer takes a place: two new ones fit.
    for (const role of ['member', 'viewer'])
      expect(
        (
          await admin.post('/v1/policies', {
            level: 'role',
            role,
            limits: { runsPerDay: 10 },
          })
        ).status,
      ).toBe(201);

    const log = await admin.get<{ data: AuditEvent[] }>(
      `/v1/tenants/${tenantId}/audit-events?limit=500`,
    );
    const deletions = log.body.data.filter((event) => event.action === 'policy.deleted');
    expect(deletions.map((event) => event.targetId).sort()).toEqual(
      [own.body.id, operators.body.id].sort(),
    );
    expect(deletions[0]?.data).toMatchObject({ level: 'agent', reason: 'agent_deleted' });
    const agentDeleted = log.body.data.find(
      (event) => event.action === 'agent.deleted' && event.targetId === agents[0],
    );
    expect(agentDeleted?.data).toMatchObject({ policiesDeleted: 1 });
  });
});
