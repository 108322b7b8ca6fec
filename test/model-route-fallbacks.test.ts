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
 * A tenant route other routes fall back to, as an admin manages it: it is neither deleted nor
 * renamed while a fallback names it (409 `route_in_use`, naming those routes), under
 * concurrency too; a tenant route that shadows a platform route is not in use, since its
 * name then reaches the platform route again.
 */
let mock: MockModelServer;
let server: TestServer;
let admin: ApiClient;

interface Problem {
  status: number;
  code: string;
  routes?: string[];
  agents?: string[];
  errors?: { path: string; message: string }[];
}

interface Route extends Created {
  name: string;
  fallbacks: { route: string; on: string[] }[];
}

const deployments = [{ model: 'mock:mock-model' }];

async function createRoute(name: string, fallbacks: string[] = []): Promise<Route> {
  const created = await admin.post<Route>('/v1/model-routes', {
    name,
    deployments,
    fallbacks: fallbacks.map((route) => ({ route, on: ['server_error'] })),
  });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  return created.body;
}

beforeAll(async () => {
  mock = await createMockModelServer();
  server = await startTestServer({
    providers: { mock: { type: 'openai-compatible', baseUrl: mock.url } },
    routes: [{ name: 'shared', deployments }],
    limits: { requestsPerMinute: { key: 1_000_000, user: 1_000_000, tenant: 1_000_000 } },
  });
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'route-fallbacks');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await mock?.close();
});

describe('a route other routes fall back to', () => {
  it('is not deleted (409 route_in_use naming them) until their fallbacks let it go', async () => {
    const target = await createRoute('e15');
    const first = await createRoute('r1', ['e15']);
    await createRoute('r2', ['e15']);
    const refused = await admin.request<Problem>('DELETE', `/v1/model-routes/${target.id}`);
    expect(refused.status).toBe(409);
    expect(refused.headers.get('content-type')).toContain('application/problem+json');
    expect(refused.body).toMatchObject({ status: 409, code: 'route_in_use', routes: ['r1', 'r2'] });
    // Nothing changed: the route is there, and the routes naming it can still be edited.
    expect((await admin.get(`/v1/model-routes/${target.id}`)).status).toBe(200);
    const edited = await admin.request<Route>('PATCH', `/v1/model-routes/${first.id}`, {
      deadlineMs: 60_000,
    });
    expect(edited.status, JSON.stringify(edited.body)).toBe(200);
    expect(edited.body.fallbacks).toEqual([{ route: 'e15', on: ['server_error'] }]);
    expect(
      (await admin.request('PATCH', `/v1/model-routes/${first.id}`, { fallbacks: [] })).status,
    ).toBe(200);
    const still = await admin.request<Problem>('DELETE', `/v1/model-routes/${target.id}`);
    expect([still.status, still.body.routes]).toEqual([409, ['r2']]);
  });

  it('is not deleted or renamed while an agent calls it (409 naming the agents)', async () => {
    const target = await createRoute('agents-route');
    const spare = await createRoute('spare-route');
    const agent = await admin.post<{ id: string }>('/v1/agents', {
      name: 'routed-agent',
      model: 'agents-route',
    });
    expect(agent.status, JSON.stringify(agent.body)).toBe(201);
    const degrading = await admin.post<{ id: string }>('/v1/agents', {
      name: 'degrading-agent',
      model: 'spare-route',
      degradation: { atBudgetPercent: 80, model: 'agents-route' },
    });
    expect(degrading.status, JSON.stringify(degrading.body)).toBe(201);
    // Before, the delete was accepted and the agents' runs failed with unknown_model (and
    // agent:<name> answered 404 model_not_found for an agent /v1/models still listed).
    const refused = await admin.request<Problem>('DELETE', `/v1/model-routes/${target.id}`);
    expect(refused.body).toMatchObject({
      status: 409,
      code: 'route_in_use',
      routes: [],
      agents: ['degrading-agent', 'routed-agent'],
    });
    const renamed = await admin.request<Problem>('PATCH', `/v1/model-routes/${target.id}`, {
      name: 'moved-route',
    });
    expect([renamed.status, renamed.body.code]).toEqual([409, 'route_in_use']);
    for (const id of [agent.body.id, degrading.body.id])
      expect((await admin.request('DELETE', `/v1/agents/${id}`)).status).toBe(204);
    expect((await admin.request('DELETE', `/v1/model-routes/${target.id}`)).status).toBe(204);
    expect((await admin.request('DELETE', `/v1/model-routes/${spare.id}`)).status).toBe(204);
  });

  it('keeps its name while in use: a rename is refused the same way', async () => {
    const target = await createRoute('named');
    await createRoute('namer', ['named']);
    const renamed = await admin.request<Problem>('PATCH', `/v1/model-routes/${target.id}`, {
      name: 'renamed',
    });
    expect(renamed.status).toBe(409);
    expect(renamed.body).toMatchObject({ code: 'route_in_use', routes: ['namer'] });
    expect((await admin.get<Route>(`/v1/model-routes/${target.id}`)).body.name).toBe('named');
    // Other changes of the route are not a rename.
    const changed = await admin.request('PATCH', `/v1/model-routes/${target.id}`, {
      deadlineMs: 90_000,
    });
    expect(changed.status).toBe(200);
  });

  it('that shadows a platform route can go: its fallbacks reach the platform route again', async () => {
    const shadow = await createRoute('shared');
    const referring = await createRoute('leans-on-shared', ['shared']);
    expect((await admin.request('DELETE', `/v1/model-routes/${shadow.id}`)).status).toBe(204);
    const edited = await admin.request<Route>('PATCH', `/v1/model-routes/${referring.id}`, {
      deadlineMs: 60_000,
    });
    expect(edited.status, JSON.stringify(edited.body)).toBe(200);
    expect(edited.body.fallbacks).toEqual([{ route: 'shared', on: ['server_error'] }]);
  });

  it('is never both deleted and newly named as a fallback by concurrent requests', async () => {
    for (let round = 0; round < 15; round += 1) {
      const target = await createRoute(`target-${round}`);
      const caller = await createRoute(`caller-${round}`);
      const created = admin.post<Problem>('/v1/model-routes', {
        name: `newcomer-${round}`,
        deployments,
        fallbacks: [{ route: `target-${round}`, on: ['timeout'] }],
      });
      const [patched, deleted, added] = await Promise.all([
        admin.request<Problem>('PATCH', `/v1/model-routes/${caller.id}`, {
          fallbacks: [{ route: `target-${round}`, on: ['timeout'] }],
        }),
        admin.request<Problem>('DELETE', `/v1/model-routes/${target.id}`),
        created,
      ]);
      const outcome = [patched.status, deleted.status, added.status];
      if (deleted.status === 204) {
        // The fallbacks that lost the race were refused as naming no route.
        expect(outcome, JSON.stringify(outcome)).toEqual([422, 204, 422]);
        expect(patched.body.errors?.[0]?.path).toBe('body.fallbacks.0.route');
      } else {
        expect([deleted.status, deleted.body.code]).toEqual([409, 'route_in_use']);
        expect(patched.status === 200 || added.status === 201, JSON.stringify(outcome)).toBe(true);
      }
      // Whatever won, no stored route falls back to a route that is gone.
      const listed = await admin.get<{ data: Route[] }>('/v1/model-routes');
      const names = new Set(listed.body.data.map((route) => route.name));
      for (const route of listed.body.data)
        for (const fallback of route.fallbacks)
          expect(names.has(fallback.route), `${route.name} → ${fallback.route}`).toBe(true);
    }
  });
});
