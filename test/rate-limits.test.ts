import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/index.ts';
import { type Brigade, createBrigade } from '../src/main.ts';
import { createLogger } from '../src/observability/index.ts';
import { apiClient, seedTenant, seedUser, waitForRun } from './support/api-client.ts';
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

async function scrape(url: string): Promise<string> {
  const response = await fetch(`${url}/metrics`, {
    headers: { authorization: `Bearer ${testOperatorKey}` },
  });
  expect(response.status).toBe(200);
  return response.text();
}

/** `brigade_rate_limit_store_fallbacks_total` of one limiter (0 when absent). */
function fallbacks(metrics: string, limiter: string): number {
  const line = metrics
    .split('\n')
    .find((candidate) =>
      candidate.startsWith(`brigade_rate_limit_store_fallbacks_total{limiter="${limiter}"}`),
    );
  return Number(line?.split(' ').at(-1) ?? 0);
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
    // Without Redis the limits are per process by configuration: not degraded, no fallback.
    const metrics = await scrape(server.url);
    expect(metrics).toMatch(/^brigade_rate_limit_store_degraded 0$/m);
    expect(fallbacks(metrics, 'requests')).toBe(0);
  });
});

describe('requests another limit refused', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({
      limits: { requestsPerMinute: { key: 2, user: 3, tenant: 5 } },
    });
  });
  afterAll(async () => {
    await server?.stop();
  });

  const statuses = async (secret: string, times: number) =>
    (await hit(server.url, secret, times)).map((response) => response.status);

  it("do not use up the wider limits: a user over theirs leaves their tenant's to the others", async () => {
    const operator = apiClient(server.url, testOperatorKey);
    const tenantId = await seedTenant(operator, 'noisy-neighbour');
    const noisy = await seedUser(operator, { tenantId, role: 'member' });
    // The noisy key is served twice (its own limit), then refused by it eight times.
    expect(await statuses(noisy.secret, 10)).toEqual([200, 200, ...Array(8).fill(429)]);
    // Its user was served two requests of three: a second key of theirs gets the third.
    const created = await operator.post<{ secret: string }>(
      `/v1/tenants/${tenantId}/users/${noisy.userId}/api-keys`,
      { name: 'second' },
    );
    expect(await statuses(created.body.secret, 3)).toEqual([200, 429, 429]);
    // The tenant served three of five: another user gets the other two (their key's limit)...
    const quiet = await seedUser(operator, { tenantId, role: 'member' });
    expect(await statuses(quiet.secret, 2)).toEqual([200, 200]);
    // ...and then the tenant's limit is spent for everyone.
    const late = (
      await hit(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret, 1)
    )[0];
    expect(await late?.json()).toMatchObject({ code: 'rate_limited', limitScope: 'tenant' });
  });

  it('do not use up the wider limits under a concurrent burst either', async () => {
    const operator = apiClient(server.url, testOperatorKey);
    const tenantId = await seedTenant(operator, 'noisy-burst');
    const noisy = await seedUser(operator, { tenantId, role: 'member' });
    // Forty at once: two served (the key's limit), the rest refused by the key alone. Counted
    // all at once and refunded afterwards, the refused ones filled the user's and the tenant's
    // counters meanwhile, and some were refused by those and kept there.
    const burst = await Promise.all(
      Array.from({ length: 40 }, () =>
        fetch(`${server.url}/v1/me`, { headers: { authorization: `Bearer ${noisy.secret}` } }),
      ),
    );
    const codes = burst.map((response) => response.status);
    expect(codes.filter((status) => status === 200)).toHaveLength(2);
    for (const response of burst.filter((candidate) => candidate.status === 429))
      expect(await response.json()).toMatchObject({ limitScope: 'key' });
    // Their user has one request left (three a minute), and the tenant three more (five).
    const created = await operator.post<{ secret: string }>(
      `/v1/tenants/${tenantId}/users/${noisy.userId}/api-keys`,
      { name: 'second' },
    );
    expect(await statuses(created.body.secret, 2)).toEqual([200, 429]);
    const quiet = await seedUser(operator, { tenantId, role: 'member' });
    expect(await statuses(quiet.secret, 2)).toEqual([200, 200]);
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

  it('says so in /metrics: the store is degraded, and what was counted per process', async () => {
    const operator = apiClient(server.url, testOperatorKey);
    const tenantId = await seedTenant(operator, 'no-redis-metrics');
    const owner = await seedUser(operator, { tenantId, role: 'owner' });
    const member = await seedUser(operator, { tenantId, role: 'member' });
    const policy = await apiClient(server.url, owner.secret).post('/v1/policies', {
      level: 'user',
      subjectId: member.userId,
      limits: { tokensPerMinute: 100_000, concurrentModelCalls: 5 },
    });
    expect(policy.status).toBe(201);
    const chat = await apiClient(server.url, member.secret).post('/v1/chat/completions', {
      model: 'local',
      messages: [{ role: 'user', content: 'hello' }],
      max_tokens: 5,
    });
    expect(chat.status).toBe(200);
    const metrics = await scrape(server.url);
    expect(metrics).toMatch(/^brigade_rate_limit_store_degraded 1$/m);
    for (const limiter of ['requests', 'tokens', 'model_calls'])
      expect(fallbacks(metrics, limiter)).toBeGreaterThan(0);
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
    expect(await scrape(first.url)).toMatch(/^brigade_rate_limit_store_degraded 0$/m);
  });
});

describe.runIf(redisUrl !== undefined)('when Redis dies mid-run', () => {
  let server: TestServer;
  let proxy: Server;
  const sockets = new Set<Socket>();
  beforeAll(async () => {
    // Brigade talks to Redis through this proxy, so the test can cut Redis off.
    const target = new URL(redisUrl ?? 'redis://127.0.0.1:6379');
    proxy = createServer((client) => {
      const upstream = connect(Number(target.port || 6379), target.hostname);
      sockets.add(client).add(upstream);
      client.pipe(upstream).pipe(client);
      const drop = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const port = (proxy.address() as AddressInfo).port;
    server = await startTestServer(
      {},
      { env: { REDIS_URL: `redis://127.0.0.1:${port}${target.pathname}` } },
    );
  });
  afterAll(async () => {
    await server?.stop();
    proxy?.close();
  });

  it('keeps serving, limits fall back to per-process counters, budgets stay exact', async () => {
    const operator = apiClient(server.url, testOperatorKey);
    const tenantId = await seedTenant(operator, 'redis-dies');
    // An owner: it limits itself below (admins may not write policies that bind an admin).
    const admin = await seedUser(operator, { tenantId, role: 'owner' });
    const user = await seedUser(operator, { tenantId, role: 'member' });
    const adminClient = apiClient(server.url, admin.secret);
    const limit = await adminClient.post('/v1/policies', {
      level: 'user',
      subjectId: user.userId,
      limits: { requestsPerMinute: 5 },
    });
    expect(limit.status).toBe(201);
    expect((await hit(server.url, user.secret, 2)).map((response) => response.status)).toEqual([
      200, 200,
    ]);
    // Redis goes away: the proxy stops accepting and every open connection is cut.
    proxy.close();
    for (const socket of sockets) socket.destroy();
    // Per-process limits from here: the key gets its full limit again, then 429.
    const after = (await hit(server.url, user.secret, 6)).map((response) => response.status);
    expect(after.filter((status) => status === 200).length).toBeGreaterThanOrEqual(3);
    expect(after.at(-1)).toBe(429);
    // Budgets live in PostgreSQL: still exact. The local model costs $1/M in, $2/M out.
    const agent = await adminClient.post<{ id: string }>('/v1/agents', {
      name: 'solo',
      model: 'local',
    });
    const policy = await adminClient.post('/v1/policies', {
      level: 'user',
      subjectId: admin.userId,
      limits: { budget: { amountUsd: 0.000_001, period: 'day' } },
    });
    expect(policy.status).toBe(201);
    const thread = await adminClient.post<{ id: string }>('/v1/threads', {});
    const run = await adminClient.post<{ id: string }>(`/v1/threads/${thread.body.id}/runs`, {
      agentId: agent.body.id,
      input: 'hello',
    });
    const done = await waitForRun(adminClient, { threadId: thread.body.id, runId: run.body.id });
    expect(done.errorCode).toBe('budget_exceeded');
  });
});

describe.runIf(redisUrl !== undefined)('when Redis stops answering', () => {
  let server: TestServer;
  let proxy: Server;
  const sockets = new Set<Socket>();
  beforeAll(async () => {
    // The proxy keeps every connection open but can stop passing bytes: a Redis that accepts
    // commands and never answers (stalled, paused, half-open after a failover).
    const target = new URL(redisUrl ?? 'redis://127.0.0.1:6379');
    proxy = createServer((client) => {
      const upstream = connect(Number(target.port || 6379), target.hostname);
      sockets.add(client).add(upstream);
      client.pipe(upstream).pipe(client);
      const drop = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const port = (proxy.address() as AddressInfo).port;
    server = await startTestServer(limits, {
      env: { REDIS_URL: `redis://127.0.0.1:${port}${target.pathname}` },
    });
  });
  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await server?.stop();
    proxy?.close();
  });

  it('answers within a second, counting per process, instead of waiting for Redis', async () => {
    const operator = apiClient(server.url, testOperatorKey);
    const tenantId = await seedTenant(operator, 'redis-stalls');
    const user = await seedUser(operator, { tenantId, role: 'member' });
    expect((await hit(server.url, user.secret, 1))[0]?.status).toBe(200);
    for (const socket of sockets) socket.pause();
    const started = Date.now();
    const statuses = await Promise.all(
      [0, 1].map(() =>
        fetch(`${server.url}/v1/me`, {
          headers: { authorization: `Bearer ${user.secret}` },
          signal: AbortSignal.timeout(10_000),
        }).then(
          (response) => response.status,
          (error: Error) => error.name,
        ),
      ),
    );
    expect(statuses).toEqual([200, 200]);
    expect(Date.now() - started).toBeLessThan(2_000);
    // Connected, but not answering: the requests that fell back say it is degraded.
    const metrics = await scrape(server.url);
    expect(metrics).toMatch(/^brigade_rate_limit_store_degraded 1$/m);
    expect(fallbacks(metrics, 'requests')).toBeGreaterThan(0);
  });
});
