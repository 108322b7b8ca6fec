import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  createMockModelServer,
  type MockFault,
  type MockModelServer,
} from '../src/testing/index.ts';
import { apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * A provider's Retry-After through `/v1/chat/completions`: the deployment that sent it cools
 * down; a route with a fallback on `rate_limited` hands over at once, a route without one waits
 * the time out (within its deadline) or fails at once with the provider's time. Each route has
 * a model of its own on the `primary` mock, so the calls each one made can be counted.
 */
let primary: MockModelServer;
let spare: MockModelServer;
let server: TestServer;
let secret: string;

/** The fault each `primary` model answers with (none: a normal answer). */
const faults = new Map<string, MockFault>();

beforeAll(async () => {
  primary = await createMockModelServer();
  spare = await createMockModelServer({ script: () => ({ text: 'spare here' }) });
  server = await startTestServer({
    providers: {
      primary: { type: 'openai-compatible', baseUrl: primary.url },
      spare: { type: 'openai-compatible', baseUrl: spare.url },
    },
    routes: [
      { name: 'spare', deployments: [{ model: 'spare:mock-model' }] },
      {
        name: 'limited-with-fallback',
        deployments: [{ model: 'primary:m-limited-fb' }],
        fallbacks: [{ route: 'spare', on: ['rate_limited'] }],
        deadlineMs: 40_000,
      },
      {
        name: 'limited-alone',
        deployments: [{ model: 'primary:m-limited-alone' }],
        retries: { maxAttempts: 3, baseDelayMs: 0, maxDelayMs: 0 },
      },
      {
        name: 'limited-short',
        deployments: [{ model: 'primary:m-limited-short' }],
        deadlineMs: 3_000,
        attemptTimeoutMs: 3_000,
      },
      {
        name: 'failing-with-fallback',
        deployments: [{ model: 'primary:m-failing-fb' }],
        fallbacks: [{ route: 'spare', on: ['rate_limited'] }],
        deadlineMs: 40_000,
      },
      {
        name: 'failing-alone',
        deployments: [{ model: 'primary:m-failing-alone' }],
        retries: { maxAttempts: 2, baseDelayMs: 10, maxDelayMs: 20 },
      },
      {
        name: 'failing-short',
        deployments: [{ model: 'primary:m-failing-short' }],
        deadlineMs: 1_000,
        attemptTimeoutMs: 1_000,
      },
    ],
    limits: { requestsPerMinute: { key: 1_000_000, user: 1_000_000, tenant: 1_000_000 } },
  });
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'retry-after');
  secret = (await seedUser(operator, { tenantId, role: 'member' })).secret;
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await primary?.close();
  await spare?.close();
});

beforeEach(() => {
  primary.reset();
  spare.reset();
  faults.clear();
  primary.setScript((request) => {
    const fault = faults.get(request.model);
    return fault === undefined ? { text: 'primary here' } : { fault };
  });
});

/** The requests `primary` got for `model`, oldest first. */
function callsTo(model: string) {
  return primary.calls.filter(
    (call) => (call.body as { model?: string } | undefined)?.model === model,
  );
}

async function complete(model: string) {
  const response = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hello' }] }),
  });
  const body = (await response.json()) as {
    error?: { code: string; message: string };
    choices?: { message: { content: string } }[];
  };
  return {
    status: response.status,
    retryAfter: response.headers.get('retry-after'),
    text: body.choices?.[0]?.message.content,
    body,
  };
}

describe('a 429 with Retry-After from the only deployment', () => {
  it('hands the call to a fallback on rate_limited at once, not after the cooldown', async () => {
    faults.set('m-limited-fb', { status: 429, retryAfterSeconds: 15 });
    const outcome = await complete('limited-with-fallback');
    expect(outcome.status, JSON.stringify(outcome.body)).toBe(200);
    expect(outcome.text).toBe('spare here');
    // The cooling deployment was not tried again (it would have been, 15 s later).
    expect(callsTo('m-limited-fb')).toHaveLength(1);
    expect(spare.calls).toHaveLength(1);
    // The next call, the provider healthy again, goes there too while the deployment cools.
    faults.delete('m-limited-fb');
    expect((await complete('limited-with-fallback')).text).toBe('spare here');
    expect(callsTo('m-limited-fb')).toHaveLength(1);
  });

  it('waits the Retry-After out on a route without such a fallback, and then answers', async () => {
    primary.setScript((request) =>
      request.model === 'm-limited-alone' && callsTo('m-limited-alone').length === 1
        ? { fault: { status: 429, retryAfterSeconds: 1 } }
        : { text: 'primary here' },
    );
    const outcome = await complete('limited-alone');
    expect(outcome.status, JSON.stringify(outcome.body)).toBe(200);
    expect(outcome.text).toBe('primary here');
    const [first, second] = callsTo('m-limited-alone');
    expect((second?.startedAt ?? 0) - (first?.startedAt ?? 0)).toBeGreaterThanOrEqual(1_000);
  });

  it('fails at once with the provider’s time when the Retry-After outlasts the deadline', async () => {
    faults.set('m-limited-short', { status: 429, retryAfterSeconds: 15 });
    const outcome = await complete('limited-short');
    expect(outcome.status).toBe(429);
    expect(outcome.retryAfter).toBe('15');
    expect(callsTo('m-limited-short')).toHaveLength(1);
  });
});

describe('a 5xx with Retry-After', () => {
  it('hands the call to a fallback on rate_limited at once, as a 429 does', async () => {
    faults.set('m-failing-fb', { status: 503, retryAfterSeconds: 15 });
    const outcome = await complete('failing-with-fallback');
    expect(outcome.status, JSON.stringify(outcome.body)).toBe(200);
    expect(outcome.text).toBe('spare here');
    expect(callsTo('m-failing-fb')).toHaveLength(1);
  });

  it('makes the retry of the deployment wait at least the Retry-After', async () => {
    primary.setScript((request) =>
      request.model === 'm-failing-alone' && callsTo('m-failing-alone').length === 1
        ? { fault: { status: 503, retryAfterSeconds: 1 } }
        : { text: 'primary here' },
    );
    const outcome = await complete('failing-alone');
    expect(outcome.status, JSON.stringify(outcome.body)).toBe(200);
    const [first, second] = callsTo('m-failing-alone');
    expect((second?.startedAt ?? 0) - (first?.startedAt ?? 0)).toBeGreaterThanOrEqual(1_000);
  });

  it('honours retry-after-ms on a direct <provider>:<model> call', async () => {
    primary.setScript((request) =>
      request.model === 'm-direct' && callsTo('m-direct').length === 1
        ? { fault: { status: 500, retryAfterMs: 1_200 } }
        : { text: 'primary here' },
    );
    const outcome = await complete('primary:m-direct');
    expect(outcome.status, JSON.stringify(outcome.body)).toBe(200);
    const [first, second] = callsTo('m-direct');
    expect((second?.startedAt ?? 0) - (first?.startedAt ?? 0)).toBeGreaterThanOrEqual(1_200);
  });

  it('fails at once, telling the client the provider’s time, when it outlasts the deadline', async () => {
    faults.set('m-failing-short', { status: 500, retryAfterMs: 1_500 });
    const outcome = await complete('failing-short');
    expect(outcome.status).toBe(503);
    expect(outcome.body.error?.code).toBe('provider_unavailable');
    expect(outcome.retryAfter).toBe('2');
    expect(callsTo('m-failing-short')).toHaveLength(1);
  });
});
