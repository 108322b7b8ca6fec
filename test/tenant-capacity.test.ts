import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { petstore } from './support/openapi-fixtures.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * `limits.perTenant`: a tenant's admins cannot make the server hold (and check on every
 * request) an unbounded number of agents, tools, routes, policies or keys. Attacked the way a
 * hostile admin would: many creations at once, an import past the cap, another tenant beside.
 */
let server: TestServer;
let operator: ApiClient;
let admin: ApiClient;
let other: ApiClient;
let tenantId: string;
let adminUserId: string;

interface Refusal extends Created {
  readonly code?: string;
  readonly limit?: number;
  readonly current?: number;
  readonly resource?: string;
}

const capacity = { agents: 3, tools: 2, modelRoutes: 2, policies: 2, apiKeysPerUser: 3 };

beforeAll(async () => {
  server = await startTestServer({
    limits: { perTenant: capacity },
    tools: { tenantHttp: { allowPrivateNetworks: true, allowedHosts: ['127.0.0.1:9'] } },
  });
  operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'capacity-a');
  const seeded = await seedUser(operator, { tenantId, role: 'admin' });
  adminUserId = seeded.userId;
  admin = apiClient(server.url, seeded.secret);
  const otherTenant = await seedTenant(operator, 'capacity-b');
  other = apiClient(
    server.url,
    (await seedUser(operator, { tenantId: otherTenant, role: 'admin' })).secret,
  );
}, 120_000);

afterAll(async () => {
  await server?.stop();
});

const agent = (index: number) => ({ name: `agent-${index}`, model: 'local' });

describe('limits.perTenant', () => {
  it('lets exactly the cap through when many agents are created at once', async () => {
    const attempts = await Promise.all(
      Array.from({ length: 10 }, (_, index) => admin.post<Refusal>('/v1/agents', agent(index))),
    );
    const created = attempts.filter((attempt) => attempt.status === 201);
    const refused = attempts.filter((attempt) => attempt.status !== 201);
    expect(created).toHaveLength(3);
    expect(refused.map((attempt) => [attempt.status, attempt.body.code])).toEqual(
      Array(7).fill([409, 'resource_limit_exceeded']),
    );
    expect(refused[0]?.body).toMatchObject({ resource: 'agents', limit: 3, current: 3 });
    expect(refused[0]?.headers.get('content-type')).toContain('application/problem+json');
    const listed = await admin.get<{ data: unknown[] }>('/v1/agents?limit=100');
    expect(listed.body.data).toHaveLength(3);
    // Another tenant has its own count.
    expect((await other.post('/v1/agents', agent(1))).status).toBe(201);
    // Deleting one makes room for one.
    const deleted = await admin.request('DELETE', `/v1/agents/${created[0]?.body.id}`);
    expect(deleted.status).toBe(204);
    expect((await admin.post('/v1/agents', agent(20))).status).toBe(201);
    expect((await admin.post('/v1/agents', agent(21))).status).toBe(409);
  });

  it('refuses an OpenAPI import that would pass the tool cap, writing none of it', async () => {
    const document = petstore('http://127.0.0.1:9');
    // The dry run tells the admin what the real import would: no room for it.
    const dry = await admin.post<Refusal>('/v1/tools/import-openapi', { document, dryRun: true });
    expect(dry.status, JSON.stringify(dry.body)).toBe(409);
    expect(dry.body).toMatchObject({ code: 'resource_limit_exceeded', resource: 'tools' });
    const refused = await admin.post<Refusal>('/v1/tools/import-openapi', { document });
    expect(refused.status, JSON.stringify(refused.body)).toBe(409);
    expect(refused.body).toMatchObject({ code: 'resource_limit_exceeded', resource: 'tools' });
    const tools = await admin.get<{ data: { id: string | null }[] }>('/v1/tools');
    // Only the built-in tools (no id) are listed.
    expect(tools.body.data.filter((tool) => tool.id !== null)).toEqual([]);
  });

  it('caps model routes and policies', async () => {
    for (const name of ['r1', 'r2'])
      expect(
        (await admin.post('/v1/model-routes', { name, deployments: [{ model: 'local' }] })).status,
      ).toBe(201);
    const route = await admin.post<Refusal>('/v1/model-routes', {
      name: 'r3',
      deployments: [{ model: 'local' }],
    });
    expect([route.status, route.body.code, route.body.resource]).toEqual([
      409,
      'resource_limit_exceeded',
      'modelRoutes',
    ]);
    for (const role of ['viewer', 'member'])
      expect(
        (await admin.post('/v1/policies', { level: 'role', role, limits: { runsPerDay: 5 } }))
          .status,
      ).toBe(201);
    const policy = await admin.post<Refusal>('/v1/policies', {
      level: 'tenant',
      limits: { runsPerDay: 5 },
    });
    expect([policy.status, policy.body.code, policy.body.resource]).toEqual([
      409,
      'resource_limit_exceeded',
      'policies',
    ]);
  });

  it("caps a user's active API keys; a revoked key frees its place", async () => {
    const keys = `/v1/tenants/${tenantId}/users/${adminUserId}/api-keys`;
    // The seeded key is the first of three.
    const second = await operator.post<Created>(keys, { name: 'second' });
    expect(second.status).toBe(201);
    expect((await operator.post(keys, { name: 'third' })).status).toBe(201);
    const fourth = await operator.post<Refusal>(keys, { name: 'fourth' });
    expect([fourth.status, fourth.body.code, fourth.body.resource]).toEqual([
      409,
      'resource_limit_exceeded',
      'apiKeysPerUser',
    ]);
    expect((await operator.request('DELETE', `${keys}/${second.body.id}`)).status).toBe(200);
    expect((await operator.post(keys, { name: 'fourth' })).status).toBe(201);
  });
});
