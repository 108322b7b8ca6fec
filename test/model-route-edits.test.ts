import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockModelServer, type MockModelServer } from '../src/testing/index.ts';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * Changing a tenant route as an admin would: PATCH is a JSON merge patch (a field sent as null
 * is removed, so a cache can be turned off), and a route cannot take the built-in `local`.
 */
let mock: MockModelServer;
let server: TestServer;
let admin: ApiClient;

interface Problem {
  code: string;
  errors?: { path: string }[];
}

beforeAll(async () => {
  mock = await createMockModelServer();
  server = await startTestServer({
    providers: { mock: { type: 'openai-compatible', baseUrl: mock.url } },
  });
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'route-edits');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
});

afterAll(async () => {
  await server?.stop();
  await mock?.close();
});

describe('a tenant route’s changes', () => {
  it('remove a field sent as null (its default comes back); a required one cannot go', async () => {
    const created = await admin.post<Created>('/v1/model-routes', {
      name: 'cached',
      strategy: 'least-busy',
      deployments: [{ model: 'mock:mock-model' }],
      cache: { ttlSeconds: 60 },
    });
    expect(created.status).toBe(201);
    const path = `/v1/model-routes/${created.body.id}`;
    const uncached = await admin.request<{ cache?: unknown; strategy: string }>('PATCH', path, {
      cache: null,
      strategy: null,
    });
    expect(uncached.status, JSON.stringify(uncached.body)).toBe(200);
    expect(uncached.body.cache).toBeUndefined();
    expect(uncached.body.strategy).toBe('weighted');
    expect((await admin.get<{ cache?: unknown }>(path)).body.cache).toBeUndefined();
    const required = await admin.request<Problem>('PATCH', path, { deployments: null });
    expect([required.status, required.body.errors?.[0]?.path]).toEqual([422, 'body.deployments']);
  });

  it('never take the built-in model’s name', async () => {
    const local = await admin.post<Problem>('/v1/model-routes', {
      name: 'local',
      deployments: [{ model: 'mock:mock-model' }],
    });
    expect([local.status, local.body.errors?.[0]?.path]).toEqual([422, 'body.name']);
  });
});
