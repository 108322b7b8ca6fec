import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockModelServer, type MockModelServer } from '../src/testing/index.ts';
import { apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * What tenants share of a deployment and what they do not, through `/v1/chat/completions`:
 * a platform route's caps (`rpm`) count every tenant's calls together (they protect the
 * operator's provider account), while breakers are per tenant, for direct
 * `<provider>:<model>` calls too (one tenant's failing prompts must not cut the others off).
 */
let mock: MockModelServer;
let server: TestServer;
const secrets: string[] = [];

async function complete(secret: string, model: string, content = 'hello') {
  const response = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, max_tokens: 8, messages: [{ role: 'user', content }] }),
  });
  return {
    status: response.status,
    retryAfter: response.headers.get('retry-after'),
    body: (await response.json()) as Record<string, unknown>,
  };
}

beforeAll(async () => {
  mock = await createMockModelServer();
  // A prompt saying `crash` makes the provider fail, as some inputs do with real providers.
  mock.setScript((request) =>
    JSON.stringify(request.messages).includes('crash')
      ? { fault: { status: 500 } }
      : { text: 'fine' },
  );
  server = await startTestServer({
    providers: { mock: { type: 'openai-compatible', baseUrl: mock.url } },
    routes: [
      {
        name: 'capped',
        deployments: [{ model: 'mock:mock-model', rpm: 2 }],
        deadlineMs: 600,
        attemptTimeoutMs: 500,
      },
    ],
    limits: { requestsPerMinute: { key: 1_000_000, user: 1_000_000, tenant: 1_000_000 } },
  });
  const operator = apiClient(server.url, testOperatorKey);
  for (const slug of ['share-a', 'share-b', 'share-c']) {
    const tenantId = await seedTenant(operator, slug);
    secrets.push((await seedUser(operator, { tenantId, role: 'member' })).secret);
  }
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await mock?.close();
});

describe('a platform route’s deployment caps', () => {
  it('count every tenant’s calls: rpm 2 lets two calls through a minute, whoever makes them', async () => {
    const answers = [];
    for (const secret of secrets) answers.push(await complete(secret, 'capped'));
    expect(answers.slice(0, 2).map((answer) => answer.status)).toEqual([200, 200]);
    // No room before the route's deadline (the minute's first call must age out): the third
    // tenant hears at once that the route is at capacity, and when room comes.
    expect(answers[2]?.status).toBe(429);
    expect(answers[2]?.body).toMatchObject({ error: { code: 'rate_limit_exceeded' } });
    const retryAfter = Number(answers[2]?.retryAfter);
    expect(retryAfter).toBeGreaterThanOrEqual(58);
    expect(retryAfter).toBeLessThanOrEqual(60);
  });
});

describe('breakers of a direct model', () => {
  it('open for the tenant whose calls fail, not for the others', async () => {
    const [victim, attacker] = secrets as [string, string];
    let opened = false;
    for (let tries = 0; tries < 40 && !opened; tries += 1) {
      const outcome = await complete(attacker, 'mock:mock-model', 'crash');
      expect([502, 503]).toContain(outcome.status);
      opened = JSON.stringify(outcome.body).includes('circuit open');
    }
    expect(opened).toBe(true);
    const before = mock.calls.length;
    const healthy = await complete(victim, 'mock:mock-model');
    expect(healthy.status, JSON.stringify(healthy.body)).toBe(200);
    expect(mock.calls.length).toBe(before + 1);
  });
});
