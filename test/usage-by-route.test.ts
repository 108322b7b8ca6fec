import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockModelServer, type MockModelServer } from '../src/testing/index.ts';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
  usageWhen,
  waitForRun,
} from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * `GET /v1/usage?groupBy=route`: spend per model route, the route a call named (its fallback's
 * attempts included), beside the deployment (`model`) that answered; calls that named no
 * route (`local`, a direct `<provider>:<model>`) under null. Members see their own calls,
 * admins the tenant's, as for every other grouping.
 */
let healthy: MockModelServer;
let failing: MockModelServer;
let server: TestServer;
let admin: ApiClient;
let member: ApiClient;
let other: ApiClient;
let otherId: string;

interface Row {
  route?: string | null;
  model?: string | null;
  user?: string | null;
  source?: string | null;
  requests: number;
  errors: number;
  costUsd: number;
  failedAttempts: number;
}

interface Report {
  groupBy: string[];
  data: Row[];
  totals: { requests: number };
}

async function complete(client: ApiClient, model: string): Promise<void> {
  const answer = await client.post('/v1/chat/completions', {
    model,
    messages: [{ role: 'user', content: 'hello there' }],
  });
  expect(answer.status, `${model}: ${JSON.stringify(answer.body)}`).toBe(200);
}

/** The report once it counts `requests` records (each call's records are written as it ends). */
function reportOf(client: ApiClient, query: string, requests: number): Promise<Report> {
  return usageWhen<Report>(client, query, (report) => report.totals.requests >= requests);
}

const counts = (rows: readonly Row[], ...keys: (keyof Row)[]) =>
  rows.map((row) => [...keys.map((key) => row[key]), row.requests, row.errors]);

beforeAll(async () => {
  healthy = await createMockModelServer();
  failing = await createMockModelServer({ faults: { status: 503 } });
  server = await startTestServer({
    providers: {
      mock: { type: 'openai-compatible', baseUrl: healthy.url },
      other: { type: 'openai-compatible', baseUrl: healthy.url },
      failing: { type: 'openai-compatible', baseUrl: failing.url },
    },
    routes: [
      { name: 'house', deployments: [{ model: 'mock:mock-model' }] },
      {
        name: 'shaky',
        deployments: [{ model: 'failing:mock-model' }],
        fallbacks: [{ route: 'house', on: ['server_error'] }],
        retries: { maxAttempts: 1, baseDelayMs: 0, maxDelayMs: 0 },
        breaker: { minimumRps: 1000 },
      },
    ],
    limits: { requestsPerMinute: { key: 1_000_000, user: 1_000_000, tenant: 1_000_000 } },
    runs: { pollIntervalMs: 50 },
  });
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'usage-routes');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  member = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  const second = await seedUser(operator, { tenantId, role: 'member' });
  other = apiClient(server.url, second.secret);
  otherId = second.userId;
  const team = await admin.post('/v1/model-routes', {
    name: 'team',
    deployments: [{ model: 'other:mock-model' }],
  });
  expect(team.status).toBe(201);
  // The member's calls: two routes, the fallback of a third, and two that name no route.
  for (const model of ['house', 'house', 'team', 'shaky', 'local', 'mock:mock-model'])
    await complete(member, model);
  // An agent run whose model is a route counts under the route too.
  const agent = await admin.post<Created>('/v1/agents', { name: 'routed', model: 'team' });
  expect(agent.status).toBe(201);
  const thread = await member.post<Created>('/v1/threads', {});
  const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
    agentId: agent.body.id,
    input: 'hi',
  });
  const done = await waitForRun(member, { threadId: thread.body.id, runId: run.body.id });
  expect(done.status).toBe('completed');
  await complete(other, 'house');
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await healthy?.close();
  await failing?.close();
});

describe('usage grouped by route', () => {
  it('counts each call under the route it named, and calls that named none under null', async () => {
    // 6 API calls (shaky's failed attempt is not a call of its own) and the run's.
    const report = await reportOf(member, 'groupBy=route,source', 7);
    expect(report.groupBy).toEqual(['route', 'source']);
    expect(counts(report.data, 'route', 'source')).toEqual([
      ['house', 'api', 2, 0],
      ['shaky', 'api', 1, 0],
      ['team', 'api', 1, 0],
      ['team', 'run', 1, 0],
      [null, 'api', 2, 0],
    ]);
    expect(report.data.every((row) => row.costUsd > 0)).toBe(true);
    expect(report.data.find((row) => row.route === 'shaky')?.failedAttempts).toBe(1);
  });

  it('breaks a route down by the deployments that answered it', async () => {
    const report = await reportOf(member, 'groupBy=route,model', 7);
    expect(counts(report.data, 'route', 'model')).toEqual([
      ['house', 'mock:mock-model', 2, 0],
      // Its failed attempt only: no call answered there (failedAttempts 1).
      ['shaky', 'failing:mock-model', 0, 0],
      ['shaky', 'mock:mock-model', 1, 0],
      ['team', 'other:mock-model', 2, 0],
      [null, 'local', 1, 0],
      [null, 'mock:mock-model', 1, 0],
    ]);
  });

  it('shows members their own calls and admins the tenant’s, per user or for one', async () => {
    const own = await reportOf(member, 'groupBy=route', 7);
    expect(own.data.find((row) => row.route === 'house')?.requests).toBe(2);
    const tenant = await reportOf(admin, 'groupBy=route', 8);
    expect(tenant.data.find((row) => row.route === 'house')?.requests).toBe(3);
    const one = await reportOf(admin, `groupBy=route,user&userId=${otherId}`, 1);
    expect(counts(one.data, 'route', 'user')).toEqual([['house', otherId, 1, 0]]);
    const refused = await member.get(`/v1/usage?groupBy=route&userId=${otherId}`);
    expect(refused.status).toBe(403);
    expect((await other.get<Report>('/v1/usage?groupBy=route')).body.data).toEqual([
      expect.objectContaining({ route: 'house', requests: 1 }),
    ]);
  });

  it('exports the route column as CSV, null as an empty cell', async () => {
    await reportOf(member, 'groupBy=route', 7);
    const csv = await member.get<string>('/v1/usage/export?groupBy=route');
    expect(csv.status).toBe(200);
    const lines = csv.body.trim().split('\r\n');
    expect(lines[0]).toBe(
      'route,requests,errors,inputTokens,outputTokens,cachedTokens,costUsd,failedAttempts',
    );
    expect(lines.map((line) => line.split(',').slice(0, 3).join(','))).toEqual([
      'route,requests,errors',
      'house,2,0',
      'shaky,1,0',
      'team,2,0',
      ',2,0',
      'total,7,0',
    ]);
  });
});
