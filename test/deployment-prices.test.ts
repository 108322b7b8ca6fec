import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockModelServer, type MockModelServer } from '../src/testing/index.ts';
import {
  type ApiClient,
  apiClient,
  seedTenant,
  seedUser,
  usageWhen,
} from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * The operator prices a platform route's deployment (`price`); tenants cannot price their
 * routes. A tenant must not pay less by reaching the same model another way: a direct
 * `<provider>:<model>` call, or a route of its own to the same deployment (which, under the
 * platform route's name, shadows it for the tenant).
 */
let mock: MockModelServer;
let server: TestServer;
let admin: ApiClient;
let member: ApiClient;
let memberSecret: string;

// 1 input and 2 output tokens at $1,000 / $2,000 per million: $0.005 a call.
const operatorPrice = { inputPerMTok: 1000, outputPerMTok: 2000 };

beforeAll(async () => {
  mock = await createMockModelServer({ apiKey: 'mock-secret-key' });
  server = await startTestServer(
    {
      providers: {
        ok: { type: 'openai-compatible', baseUrl: mock.url, apiKeyEnv: 'MOCK_API_KEY' },
      },
      routes: [{ name: 'priced', deployments: [{ model: 'ok:m-priced', price: operatorPrice }] }],
      limits: { requestsPerMinute: { key: 1_000_000, user: 1_000_000, tenant: 1_000_000 } },
    },
    { env: { MOCK_API_KEY: 'mock-secret-key' } },
  );
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'deployment-prices');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  memberSecret = (await seedUser(operator, { tenantId, role: 'member' })).secret;
  member = apiClient(server.url, memberSecret);
  mock.setScript(() => ({ text: 'ok', usage: { promptTokens: 1, completionTokens: 2 } }));
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await mock?.close();
});

async function complete(model: string): Promise<void> {
  const response = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${memberSecret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
  });
  await response.arrayBuffer();
  expect(response.status).toBe(200);
}

/** The member's total cost once `calls` calls are recorded (records are written in batches). */
async function costAfter(calls: number): Promise<number> {
  const report = await usageWhen<{ totals: { requests: number; costUsd: number } }>(
    member,
    '',
    (current) => current.totals.requests >= calls,
  );
  return report.totals.costUsd;
}

describe('a platform deployment’s price', () => {
  it('applies however the model is reached: the route, a direct call, a tenant’s own route', async () => {
    await complete('priced');
    expect(await costAfter(1)).toBeCloseTo(0.005, 9);
    await complete('ok:m-priced');
    expect(await costAfter(2)).toBeCloseTo(0.01, 9);
    // The tenant's own route under the platform route's name shadows it for the tenant.
    const own = await admin.post('/v1/model-routes', {
      name: 'priced',
      deployments: [{ model: 'ok:m-priced' }],
    });
    expect(own.status, JSON.stringify(own.body)).toBe(201);
    await complete('priced');
    expect(await costAfter(3)).toBeCloseTo(0.015, 9);
  });
});
