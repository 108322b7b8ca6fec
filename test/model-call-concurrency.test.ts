import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/index.ts';
import { type Brigade, createBrigade } from '../src/main.ts';
import { createLogger } from '../src/observability/index.ts';
import { createMemorySlots, createRedisSlots } from '../src/runtime/model-call-slots.ts';
import { createMockModelServer, type MockModelServer } from '../src/testing/index.ts';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
  waitForRun,
} from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * The `concurrentModelCalls` policy: API calls beyond it are refused with 429, runs wait for a
 * slot, and with Redis the limit holds across processes (leased slots that free themselves when
 * their process dies).
 */
// biome-ignore lint/style/noProcessEnv: the cross-process tests run only where Redis is configured.
const redisUrl = process.env['REDIS_URL'];
let mock: MockModelServer;

const config = (mockUrl: string) => ({
  providers: { mock: { type: 'openai-compatible', baseUrl: mockUrl, apiKeyEnv: 'MOCK_KEY' } },
  runs: { pollIntervalMs: 50 },
});

/**
 * Posts a completion whose provider call takes `latencyMs` (with `max_tokens` when given);
 * resolves with the status, the headers and the error object of a refusal.
 */
async function complete(
  url: string,
  secret: string,
  call: number | { latencyMs: number; maxTokens: number },
) {
  const { latencyMs, maxTokens } = typeof call === 'number' ? { latencyMs: call } : call;
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'mock:mock-model',
      messages: [{ role: 'user', content: `wait ${latencyMs}` }],
      ...(maxTokens === undefined ? {} : { max_tokens: maxTokens }),
    }),
  });
  const body = (await response.json()) as { error?: Record<string, unknown> };
  return {
    status: response.status,
    retryAfter: response.headers.get('retry-after'),
    headers: response.headers,
    error: body.error,
  };
}

/** A member of a new tenant whose user policy allows `calls` model calls at once (or `limits`). */
async function limitedMember(url: string, slug: string, calls: number | object) {
  const operator = apiClient(url, testOperatorKey);
  const tenantId = await seedTenant(operator, slug);
  const admin = apiClient(url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  const member = await seedUser(operator, { tenantId, role: 'member' });
  const policy = await admin.post<Created>('/v1/policies', {
    level: 'user',
    subjectId: member.userId,
    limits: typeof calls === 'number' ? { concurrentModelCalls: calls } : calls,
  });
  expect(policy.status).toBe(201);
  return { admin, member, policyId: policy.body.id };
}

/**
 * A refusal by a model-call limit names its policy, and carries no RateLimit headers: those
 * describe the request limit, which had room (they said `remaining=598` next to the 429).
 */
function expectRefusalBy(refused: Awaited<ReturnType<typeof complete>>, policyId: string) {
  expect(refused.status).toBe(429);
  expect(Number(refused.retryAfter)).toBeGreaterThanOrEqual(1);
  expect(refused.error).toMatchObject({ code: 'rate_limit_exceeded', policyId, level: 'user' });
  expect(refused.headers.get('ratelimit')).toBeNull();
  expect(refused.headers.get('ratelimit-policy')).toBeNull();
}

beforeAll(async () => {
  mock = await createMockModelServer({
    apiKey: 'mock-key',
    // `wait <ms>` answers after that long.
    script: (request) => {
      const text = JSON.stringify(request.messages.at(-1)?.content ?? '');
      const latencyMs = Number(/wait (\d+)/.exec(text)?.[1] ?? 0);
      return { text: 'done', ...(latencyMs > 0 ? { fault: { latencyMs } } : {}) };
    },
  });
});

afterAll(async () => {
  await mock?.close();
});

describe('concurrentModelCalls in one process', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer(config(mock.url), { env: { MOCK_KEY: 'mock-key' } });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('refuses an API call beyond the limit with 429 and Retry-After, and frees the slot after', async () => {
    const { member, policyId } = await limitedMember(server.url, 'slots-api', 1);
    const slow = complete(server.url, member.secret, 600);
    await new Promise((resolve) => setTimeout(resolve, 150));
    expectRefusalBy(await complete(server.url, member.secret, 0), policyId);
    expect((await slow).status).toBe(200);
    const served = await complete(server.url, member.secret, 0);
    expect(served.status).toBe(200);
    expect(served.headers.get('ratelimit')).toMatch(/^limit=\d+, remaining=\d+, reset=\d+$/);
  });

  it('names the tokens-per-minute policy that refuses an API call', async () => {
    const { member, policyId } = await limitedMember(server.url, 'tpm-api', {
      tokensPerMinute: 100,
    });
    const slow = complete(server.url, member.secret, { latencyMs: 600, maxTokens: 60 });
    await new Promise((resolve) => setTimeout(resolve, 150));
    expectRefusalBy(
      await complete(server.url, member.secret, { latencyMs: 0, maxTokens: 60 }),
      policyId,
    );
    expect((await slow).status).toBe(200);
  });

  it('makes runs wait for a slot: never two of the user’s calls at the provider at once', async () => {
    const { admin, member } = await limitedMember(server.url, 'slots-runs', 1);
    const agent = await admin.post<Created>('/v1/agents', {
      name: 'serial',
      model: 'mock:mock-model',
    });
    const client: ApiClient = apiClient(server.url, member.secret);
    const started = mock.calls.length;
    const runs = await Promise.all(
      [0, 1, 2].map(async () => {
        const thread = await client.post<Created>('/v1/threads', {});
        const run = await client.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
          agentId: agent.body.id,
          input: 'wait 300',
        });
        return { threadId: thread.body.id, runId: run.body.id };
      }),
    );
    for (const ids of runs) expect((await waitForRun(client, ids)).status).toBe('completed');
    const calls = mock.calls.slice(started);
    expect(calls).toHaveLength(3);
    const spans = calls
      .map((call) => [call.startedAt, call.finishedAt ?? Number.POSITIVE_INFINITY] as const)
      .sort((left, right) => left[0] - right[0]);
    for (let index = 1; index < spans.length; index += 1)
      expect(spans[index]?.[0]).toBeGreaterThanOrEqual(spans[index - 1]?.[1] ?? 0);
  });
});

describe.runIf(redisUrl !== undefined)('concurrentModelCalls across processes (Redis)', () => {
  let first: TestServer;
  let second: Brigade;
  let secondUrl: string;
  beforeAll(async () => {
    const env = { MOCK_KEY: 'mock-key', REDIS_URL: redisUrl ?? '' };
    first = await startTestServer(config(mock.url), { env });
    second = await createBrigade({
      config: loadConfig({
        file: { ...config(mock.url), server: { port: 0 } },
        env: {
          ...env,
          DATABASE_URL: first.database.url,
          BRIGADE_OPERATOR_KEY: testOperatorKey,
          LOG_LEVEL: 'silent',
        },
      }),
      logger: createLogger({ level: 'silent' }),
    });
    secondUrl = await second.listen();
  });
  afterAll(async () => {
    await second?.stop();
    await first?.stop();
  });

  it('refuses a call on one process while the other holds the only slot', async () => {
    const { member, policyId } = await limitedMember(first.url, 'slots-shared', 1);
    const slow = complete(first.url, member.secret, 800);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expectRefusalBy(await complete(secondUrl, member.secret, 0), policyId);
    expect((await slow).status).toBe(200);
    expect((await complete(secondUrl, member.secret, 0)).status).toBe(200);
  });

  it('frees the slots of a process that died once their lease ends', async () => {
    const redis = new Redis(redisUrl ?? '', { maxRetriesPerRequest: 1 });
    const onError = (error: unknown) => {
      throw error;
    };
    const key = `test:${Date.now()}`;
    const dead = createRedisSlots({ redis, fallback: createMemorySlots(), onError, leaseMs: 400 });
    const alive = createRedisSlots({ redis, fallback: createMemorySlots(), onError, leaseMs: 400 });
    try {
      const held = await dead.take([{ key, limit: 1 }]);
      expect(held).toHaveProperty('release');
      // Renewed while its holder lives: still taken after more than one lease.
      await new Promise((resolve) => setTimeout(resolve, 700));
      expect(await alive.take([{ key, limit: 1 }])).toEqual({ full: { key, limit: 1 } });
      dead.close(); // the process dies: no release, no renewal
      await new Promise((resolve) => setTimeout(resolve, 600));
      const taken = await alive.take([{ key, limit: 1 }]);
      if (!('release' in taken)) throw new Error('no slot after the lease ended');
      taken.release();
    } finally {
      alive.close();
      redis.disconnect();
    }
  });

  it('gives back a slot whose taking timed out after Redis took it', async () => {
    const redis = new Redis(redisUrl ?? '', { maxRetriesPerRequest: 1 });
    const errors: unknown[] = [];
    // Redis runs the script, and the reply is lost (ioredis' commandTimeout fired first).
    const lostReply = {
      eval: async (...args: Parameters<Redis['eval']>) => {
        await redis.eval(...args);
        throw new Error('Command timed out');
      },
      zrem: (...args: Parameters<Redis['zrem']>) => redis.zrem(...args),
    } as unknown as Pick<Redis, 'eval' | 'zrem'>;
    const key = `test:lost:${Date.now()}`;
    const slots = createRedisSlots({
      redis: lostReply,
      fallback: createMemorySlots(),
      onError: (error) => errors.push(error),
    });
    try {
      const held = await slots.take([{ key, limit: 1 }]);
      // Counted in this process instead, as when Redis fails.
      if (!('release' in held)) throw new Error('no slot counted in this process');
      expect(errors).toHaveLength(1);
      held.release();
      await redis.ping();
      // Nothing is left held in Redis: another process can take the only slot at once.
      expect(await redis.zcard(`brigade:slots:${key}`)).toBe(0);
    } finally {
      slots.close();
      redis.disconnect();
    }
  });

  it('takes a slot under every limit or under none', async () => {
    const redis = new Redis(redisUrl ?? '', { maxRetriesPerRequest: 1 });
    const slots = createRedisSlots({
      redis,
      fallback: createMemorySlots(),
      onError: (error) => {
        throw error;
      },
    });
    const [user, tenant] = [`test:u:${Date.now()}`, `test:t:${Date.now()}`];
    try {
      const first = await slots.take([{ key: tenant, limit: 1 }]);
      // The user has room, the tenant has none (named): nothing is taken for the user either.
      expect(
        await slots.take([
          { key: user, limit: 1 },
          { key: tenant, limit: 1 },
        ]),
      ).toEqual({ full: { key: tenant, limit: 1 } });
      const alone = await slots.take([{ key: user, limit: 1 }]);
      if (!('release' in first && 'release' in alone)) throw new Error('no slot taken');
      first.release();
      alone.release();
    } finally {
      slots.close();
      redis.disconnect();
    }
  });
});
