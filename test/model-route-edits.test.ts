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
 * An invalid route gets one accurate issue per problem, its path naming the body's field.
 */
let mock: MockModelServer;
let server: TestServer;
let admin: ApiClient;

interface Problem {
  code: string;
  errors?: { path: string; message: string }[];
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

describe('an invalid route', () => {
  const deployments = [{ model: 'mock:mock-model' }];

  it('gets one issue for a name the pattern refuses, on create and on change', async () => {
    const created = await admin.post<Created>('/v1/model-routes', { name: 'valid', deployments });
    expect(created.status).toBe(201);
    for (const name of ['Abc', '', 'LOCAL', 'a'.repeat(64), 'has:colon']) {
      const posted = await admin.post<Problem>('/v1/model-routes', { name, deployments });
      const patched = await admin.request<Problem>('PATCH', `/v1/model-routes/${created.body.id}`, {
        name,
      });
      for (const response of [posted, patched]) {
        expect(response.status, name).toBe(422);
        expect(response.body.errors, name).toEqual([
          { path: 'body.name', message: expect.stringContaining('lower-case letters') },
        ]);
      }
    }
    const local = await admin.post<Problem>('/v1/model-routes', { name: 'local', deployments });
    expect(local.body.errors).toEqual([
      { path: 'body.name', message: expect.stringContaining("'local' is the built-in model") },
    ]);
  });

  it('that falls back to itself is told so once', async () => {
    const response = await admin.post<Problem>('/v1/model-routes', {
      name: 'e8',
      deployments,
      fallbacks: [{ route: 'e8', on: ['timeout'] }],
    });
    expect(response.status).toBe(422);
    expect(response.body.errors).toEqual([
      { path: 'body.fallbacks.0.route', message: 'A route cannot fall back to itself.' },
    ]);
  });

  it('names every field with the body. prefix, whichever check found it', async () => {
    const response = await admin.post<Problem>('/v1/model-routes', {
      name: 'inconsistent',
      deployments: [{ model: 'nowhere:model' }, { model: 'mock:mock-model', weight: 0 }],
      fallbacks: [{ route: 'missing', on: ['timeout'] }],
    });
    expect([response.status, response.body.errors?.map((error) => error.path)]).toEqual([
      422,
      ['body.deployments.1.weight'],
    ]);
    const checked = await admin.post<Problem>('/v1/model-routes', {
      name: 'inconsistent',
      deployments: [{ model: 'nowhere:model' }],
      fallbacks: [{ route: 'missing', on: ['timeout'] }],
      attemptTimeoutMs: 5000,
      deadlineMs: 1000,
      retries: { baseDelayMs: 500, maxDelayMs: 100 },
    });
    expect(checked.status).toBe(422);
    expect(checked.body.errors?.map((error) => error.path).sort()).toEqual([
      'body.attemptTimeoutMs',
      'body.deployments.0.model',
      'body.fallbacks.0.route',
      'body.retries.baseDelayMs',
    ]);
  });
});
