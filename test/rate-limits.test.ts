import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/index.ts';
import { type Brigade, createBrigade } from '../src/main.ts';
import { createLogger } from '../src/observability/index.ts';
import { apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

// biome-ignore lint/style/noProcessEnv: the shared-store test runs only where Redis is configured.
const redisUrl = process.env['REDIS_URL'];
const limits = { limits: { requestsPerMinute: { key: 5, user: 1000, tenant: 1000 } } };

async function hit(url: string, secret: string, times: number): Promise<Response[]> {
  const responses: Response[] = [];
  for (let index = 0; index < times; index += 1) {
    responses.push(await fetch(`${url}/v1/me`, { headers: { authorization: `Bearer ${secret}` } }));
  }
  return responses;
}

describe('request rate limits (per process)', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer(limits);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('answers 429 with Retry-After and RateLimit headers once a key spends its limit', async () => {
    const operator = apiClient(server.url, testOperatorKey);
    const tenantId = await seedTenant(operator, 'limited');
    const first = await seedUser(operator, { tenantId, role: 'member' });
    const responses = await hit(server.url, first.secret, 6);
    expect(responses.map((response) => response.status)).toEqual([200, 200, 200, 200, 200, 429]);
    expect(responses[0]?.headers.get('ratelimit-policy')).toBe('5;w=60');
    expect(responses[0]?.headers.get('ratelimit')).toMatch(/^limit=5, remaining=4, reset=\d+$/);
    const refused = responses[5];
    expect(Number(refused?.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(refused?.headers.get('ratelimit')).toMatch(/remaining=0/);
    expect(await refused?.json()).toMatchObject({ code: 'rate_limited', status: 429 });
    // Another user's key is counted separately; the operator is not limited.
    const second = await seedUser(operator, { tenantId, role: 'member' });
    expect((await hit(server.url, second.secret, 1))[0]?.status).toBe(200);
    expect(
      (await hit(server.url, testOperatorKey, 8)).every((response) => response.status === 200),
    ).toBe(true);
  });
});

describe('request rate limits when Redis is unreachable', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer(limits, { env: { REDIS_URL: 'redis://127.0.0.1:1' } });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('keeps serving and falls back to per-process limits', async () => {
    const operator = apiClient(server.url, testOperatorKey);
    const tenantId = await seedTenant(operator, 'no-redis');
    const user = await seedUser(operator, { tenantId, role: 'member' });
    const statuses = (await hit(server.url, user.secret, 6)).map((response) => response.status);
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
  });
});

describe.runIf(redisUrl !== undefined)('request rate limits shared through Redis', () => {
  let first: TestServer;
  let second: Brigade;
  let secondUrl: string;
  beforeAll(async () => {
    first = await startTestServer(limits, { env: { REDIS_URL: redisUrl ?? '' } });
    const config = loadConfig({
      file: { ...limits, server: { port: 0 } },
      env: {
        DATABASE_URL: first.database.url,
        BRIGADE_OPERATOR_KEY: testOperatorKey,
        REDIS_URL: redisUrl,
        LOG_LEVEL: 'silent',
      },
    });
    second = await createBrigade({ config, logger: createLogger({ level: 'silent' }) });
    secondUrl = await second.listen();
  });
  afterAll(async () => {
    await second?.stop();
    await first?.stop();
  });

  it('holds one limit across two processes', async () => {
    const operator = apiClient(first.url, testOperatorKey);
    const tenantId = await seedTenant(operator, 'shared');
    const user = await seedUser(operator, { tenantId, role: 'member' });
    const responses = [
      ...(await hit(first.url, user.secret, 3)),
      ...(await hit(secondUrl, user.secret, 3)),
    ];
    expect(responses.filter((response) => response.status === 200)).toHaveLength(5);
    expect(responses.at(-1)?.status).toBe(429);
  });
});
