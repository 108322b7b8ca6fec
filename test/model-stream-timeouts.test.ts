import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  createMockModelServer,
  type MockFaultEffects,
  type MockModelServer,
} from '../src/testing/index.ts';
import { apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * A route's attempt timeout against answers that stream: it bounds the time to the first
 * token (and the gaps between tokens), not an answer still flowing, which only the call's
 * deadline (a run's own timeout included) bounds. Non-streaming attempts keep it as a whole.
 * Route `tight` allows 800 ms an attempt and no retry; the mock streams a word every 300 ms.
 */
let mock: MockModelServer;
let server: TestServer;
let secret: string;

const answer = 'one two three four five six seven eight';
/** What the mock does to every request for now. */
let fault: MockFaultEffects = {};

beforeAll(async () => {
  mock = await createMockModelServer();
  server = await startTestServer(
    {
      providers: {
        mock: { type: 'openai-compatible', baseUrl: mock.url },
        // The same mock through the AI SDK's OpenAI provider (the path of `openai` and
        // `anthropic` providers), not Brigade's own OpenAI-compatible client.
        sdk: { type: 'openai', baseUrl: mock.url, apiKeyEnv: 'SDK_KEY' },
      },
      routes: ['mock', 'sdk'].map((provider) => ({
        name: provider === 'mock' ? 'tight' : 'tight-sdk',
        deployments: [{ model: `${provider}:m-tight` }],
        attemptTimeoutMs: 800,
        deadlineMs: 8_000,
        retries: { maxAttempts: 1, baseDelayMs: 0, maxDelayMs: 0 },
      })),
      limits: { requestsPerMinute: { key: 1_000_000, user: 1_000_000, tenant: 1_000_000 } },
      runs: { pollIntervalMs: 50 },
    },
    { env: { SDK_KEY: 'sdk-key' } },
  );
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'stream-timeouts');
  const admin = apiClient(
    server.url,
    (await seedUser(operator, { tenantId, role: 'admin' })).secret,
  );
  secret = (await seedUser(operator, { tenantId, role: 'member' })).secret;
  for (const agent of [
    { name: 'flowing', model: 'tight', tools: [] },
    { name: 'hurried', model: 'tight', tools: [], runTimeoutMs: 1_000 },
  ]) {
    const created = await admin.post('/v1/agents', agent);
    expect(created.status, JSON.stringify(created.body)).toBe(201);
  }
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await mock?.close();
});

beforeEach(() => {
  mock.reset();
  fault = {};
  mock.setScript(() => ({ text: answer, fault }));
});

async function complete(model: string, stream: boolean) {
  const response = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, stream, messages: [{ role: 'user', content: 'count' }] }),
  });
  return { status: response.status, text: await response.text() };
}

/** The `data:` events of a streamed answer: the text they add up to, errors, and `[DONE]`. */
function eventsOf(body: string) {
  const payloads = body
    .split('\n')
    .filter((line) => line.startsWith('data: '))
    .map((line) => line.slice(6));
  const chunks = payloads
    .filter((payload) => payload !== '[DONE]')
    .map(
      (payload) =>
        JSON.parse(payload) as {
          error?: { message: string };
          choices?: { delta?: { content?: string } }[];
        },
    );
  return {
    text: chunks.map((chunk) => chunk.choices?.[0]?.delta?.content ?? '').join(''),
    errors: chunks.flatMap((chunk) => (chunk.error === undefined ? [] : [chunk.error.message])),
    done: payloads.includes('[DONE]'),
  };
}

describe('a streaming attempt', () => {
  it.each(['tight', 'tight-sdk'])(
    'is not cut off at the attempt timeout while the answer flows (%s)',
    async (route) => {
      fault = { tokenDelayMs: 300 };
      const outcome = await complete(route, true);
      expect(outcome.status).toBe(200);
      const events = eventsOf(outcome.text);
      expect(events.errors).toEqual([]);
      expect(events.text).toBe(answer);
      expect(events.done).toBe(true);
      expect(mock.calls).toHaveLength(1);
    },
  );

  it('is still cut off when no token comes within the attempt timeout', async () => {
    fault = { latencyMs: 2_000 };
    const outcome = await complete('tight', true);
    expect(outcome.status, outcome.text).toBe(503);
    expect(outcome.text).toContain('within 800 ms');
  });
});

describe('a non-streaming attempt', () => {
  it('keeps the attempt timeout for the whole answer', async () => {
    fault = { latencyMs: 1_500 };
    const outcome = await complete('tight', false);
    expect(outcome.status, outcome.text).toBe(503);
    expect(outcome.text).toContain('within 800 ms');
  });
});

describe('a run’s model call (streamed from the provider)', () => {
  it('is not cut off at the attempt timeout while the answer flows', async () => {
    fault = { tokenDelayMs: 300 };
    const outcome = await complete('agent:flowing', false);
    expect(outcome.status, outcome.text).toBe(200);
    const body = JSON.parse(outcome.text) as { choices: { message: { content: string } }[] };
    expect(body.choices[0]?.message.content).toBe(answer);
    expect(mock.calls).toHaveLength(1);
  });

  it('still ends at the run’s own timeout', async () => {
    fault = { tokenDelayMs: 300 };
    const started = performance.now();
    const outcome = await complete('agent:hurried', false);
    expect(outcome.status, outcome.text).toBe(504);
    expect(JSON.parse(outcome.text)).toMatchObject({ error: { code: 'request_timeout' } });
    // About the run's 1 s, not the route's 8 s deadline (generous: a busy machine).
    expect(performance.now() - started).toBeLessThan(6_000);
  });
});
