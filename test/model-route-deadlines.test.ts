import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createMockModelServer, type MockModelServer } from '../src/testing/index.ts';
import { apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * A call near its deadline, through `/v1/chat/completions`: a timeout names the limit it hit
 * (the route's attempt timeout or the call's deadline), and no provider request is started with
 * less than 100 ms of the deadline left (a retry, a fallback, a call that waited for a place):
 * the call fails instead of paying for a request it would abandon. Models of the one mock
 * decide what it does: `m-quick` answers, `m-capped` answers unless told to hold, the others
 * hang.
 */
let mock: MockModelServer;
let server: TestServer;
let secret: string;

beforeAll(async () => {
  mock = await createMockModelServer();
  const hanging = (name: string, settings: Record<string, unknown>) => ({
    name,
    deployments: [{ model: `mock:m-${name}` }],
    ...settings,
  });
  server = await startTestServer({
    providers: { mock: { type: 'openai-compatible', baseUrl: mock.url } },
    routes: [
      hanging('hanging', {
        attemptTimeoutMs: 800,
        deadlineMs: 2_000,
        retries: { maxAttempts: 3, baseDelayMs: 0, maxDelayMs: 0 },
      }),
      hanging('nearly', {
        attemptTimeoutMs: 950,
        deadlineMs: 1_000,
        retries: { maxAttempts: 2, baseDelayMs: 0, maxDelayMs: 0 },
      }),
      hanging('late', {
        attemptTimeoutMs: 950,
        deadlineMs: 1_000,
        retries: { maxAttempts: 1, baseDelayMs: 0, maxDelayMs: 0 },
        fallbacks: [{ route: 'quick', on: ['timeout'] }],
      }),
      { name: 'quick', deployments: [{ model: 'mock:m-quick' }] },
      {
        name: 'capped',
        deployments: [{ model: 'mock:m-capped', maxConcurrency: 1 }],
        attemptTimeoutMs: 1_000,
        deadlineMs: 1_000,
        retries: { maxAttempts: 1, baseDelayMs: 0, maxDelayMs: 0 },
      },
    ],
    limits: { requestsPerMinute: { key: 1_000_000, user: 1_000_000, tenant: 1_000_000 } },
  });
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'deadlines');
  secret = (await seedUser(operator, { tenantId, role: 'member' })).secret;
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await mock?.close();
});

beforeEach(() => {
  mock.reset();
  mock.setScript((request) => {
    if (request.model === 'm-quick') return { text: 'quick answer' };
    const hold = JSON.stringify(request.messages).includes('hold');
    if (request.model === 'm-capped' && !hold) return { text: 'capped answer' };
    return { fault: { hang: true } };
  });
});

function callsTo(model: string) {
  return mock.calls.filter(
    (call) => (call.body as { model?: string } | undefined)?.model === model,
  );
}

async function complete(model: string, content = 'hello') {
  const response = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content }] }),
  });
  const body = (await response.json()) as { error?: { code: string; message: string } };
  return { status: response.status, retryAfter: response.headers.get('retry-after'), body };
}

describe('a call that runs out of time', () => {
  it('names the call’s deadline when that cut the last attempt short', async () => {
    const outcome = await complete('hanging');
    expect(outcome.status).toBe(503);
    expect(outcome.retryAfter).toBe('1');
    // Attempts at 0, 800 and 1,600 ms: the last one had 400 ms, and the deadline ended it.
    expect(callsTo('m-hanging')).toHaveLength(3);
    expect(outcome.body.error).toEqual(
      expect.objectContaining({
        code: 'provider_unavailable',
        message: "The model did not answer within the call's deadline (2000 ms).",
      }),
    );
  });

  it('names the attempt timeout when that ended the attempt', async () => {
    const outcome = await complete('nearly');
    expect(outcome.status).toBe(503);
    expect(outcome.body.error?.message).toBe(
      "The model did not answer within 950 ms (the route's attempt timeout).",
    );
  });
});

describe('an attempt with too little of the deadline left', () => {
  it('is not started as a retry', async () => {
    // The first attempt ends at 950 ms of 1,000: a retry would have 50 ms.
    const outcome = await complete('nearly');
    expect(outcome.status).toBe(503);
    expect(callsTo('m-nearly')).toHaveLength(1);
  });

  it('is not started on a fallback; the call fails with the route’s own failure', async () => {
    const outcome = await complete('late');
    expect(outcome.status).toBe(503);
    expect(outcome.body.error?.message).toContain('950 ms');
    expect(callsTo('m-late')).toHaveLength(1);
    expect(callsTo('m-quick')).toHaveLength(0);
  });

  it('is not started for a call that waited for a place until its deadline was nearly out', async () => {
    const holding = complete('capped', 'hold the place');
    while (callsTo('m-capped').length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    await new Promise((resolve) => setTimeout(resolve, 30));
    // This call's deadline ends some 30-60 ms after the holder's: its place would come with
    // less than 100 ms to go.
    const waiting = await complete('capped');
    expect((await holding).status).toBe(503);
    expect([429, 503]).toContain(waiting.status);
    expect(waiting.retryAfter).not.toBeNull();
    expect(callsTo('m-capped')).toHaveLength(1);
  });
});
