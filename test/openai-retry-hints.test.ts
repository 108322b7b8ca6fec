import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createMockModelServer, type MockModelServer } from '../src/testing/index.ts';
import { type ApiClient, apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { failureOf, openAiClient } from './support/openai-fixtures.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * What `/v1/chat/completions` tells a client about retrying, as official clients read it: a
 * deployment at its `maxConcurrency` is waited for (or handed to a fallback), a passing provider
 * failure says "retry in a second" rather than the breaker's 10 s, and an agent run that
 * stopped or failed after it started is never run again by the client's own retries. And a
 * prompt is not sent to a deployment whose known context window it exceeds.
 */
let mock: MockModelServer;
let spare: MockModelServer;
let server: TestServer;
let member: ApiClient;
let secret: string;

beforeAll(async () => {
  // `slow` in the prompt: the answer takes 600 ms; `fail` once: a 503.
  mock = await createMockModelServer();
  spare = await createMockModelServer({ script: () => ({ text: 'spare here' }) });
  server = await startTestServer({
    providers: {
      mock: { type: 'openai-compatible', baseUrl: mock.url },
      spare: { type: 'openai-compatible', baseUrl: spare.url },
    },
    routes: [
      {
        name: 'single',
        deployments: [{ model: 'mock:mock-model', maxConcurrency: 1 }],
        deadlineMs: 10_000,
        attemptTimeoutMs: 5_000,
      },
      {
        name: 'single-or-spare',
        deployments: [{ model: 'mock:mock-model', maxConcurrency: 1 }],
        fallbacks: [{ route: 'spare', on: ['rate_limited'] }],
      },
      { name: 'spare', deployments: [{ model: 'spare:mock-model' }] },
      { name: 'once', deployments: [{ model: 'mock:mock-model' }], retries: { maxAttempts: 1 } },
      {
        name: 'small-then-big',
        deployments: [{ model: 'mock:mock-model', contextTokens: 500 }],
        fallbacks: [{ route: 'spare', on: ['context_length'] }],
      },
    ],
    limits: { requestsPerMinute: { key: 1_000_000, user: 1_000_000, tenant: 1_000_000 } },
    runs: { pollIntervalMs: 50 },
  });
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'retry-hints');
  const admin = apiClient(
    server.url,
    (await seedUser(operator, { tenantId, role: 'admin' })).secret,
  );
  secret = (await seedUser(operator, { tenantId, role: 'member' })).secret;
  member = apiClient(server.url, secret);
  const careful = await admin.post('/v1/agents', {
    name: 'careful',
    tools: ['calculator'],
    approvalRequiredTools: ['calculator'],
  });
  expect(careful.status).toBe(201);
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await mock?.close();
  await spare?.close();
});

beforeEach(() => {
  mock.reset();
  mock.setScript((request) =>
    JSON.stringify(request.messages).includes('slow')
      ? { text: 'slow answer', fault: { latencyMs: 600 } }
      : { text: 'quick answer' },
  );
});

async function complete(model: string, content: string) {
  const response = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content }] }),
  });
  const body = (await response.json()) as {
    error?: { code: string };
    choices?: { message: { content: string } }[];
  };
  return { status: response.status, retryAfter: response.headers.get('retry-after'), body };
}

describe('a deployment at its maxConcurrency', () => {
  it('makes the next call wait for the place, within the deadline, and answer', async () => {
    const first = complete('single', 'slow please');
    await new Promise((resolve) => setTimeout(resolve, 100));
    const second = await complete('single', 'quick please');
    expect((await first).status).toBe(200);
    expect(second.status, JSON.stringify(second.body)).toBe(200);
    expect(second.body.choices?.[0]?.message.content).toBe('quick answer');
    expect(mock.calls).toHaveLength(2);
  });

  it('lets waiting calls through one at a time as places free, never two at once', async () => {
    const answers = await Promise.all(
      Array.from({ length: 4 }, () => complete('single', 'slow please')),
    );
    expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200, 200]);
    const spans = mock.calls
      .map((call) => [call.startedAt, call.finishedAt ?? Number.POSITIVE_INFINITY] as const)
      .sort((a, b) => a[0] - b[0]);
    expect(spans).toHaveLength(4);
    for (let index = 1; index < spans.length; index += 1)
      expect(spans[index]?.[0]).toBeGreaterThanOrEqual(spans[index - 1]?.[1] ?? 0);
  });

  it('hands the call to a fallback on rate_limited at once instead', async () => {
    const first = complete('single-or-spare', 'slow please');
    await new Promise((resolve) => setTimeout(resolve, 100));
    const started = performance.now();
    const second = await complete('single-or-spare', 'quick please');
    expect(second.status).toBe(200);
    expect(second.body.choices?.[0]?.message.content).toBe('spare here');
    expect(performance.now() - started).toBeLessThan(500);
    expect((await first).status).toBe(200);
  });
});

describe('a provider failure with every breaker closed', () => {
  it('says to retry in a second, not after the breaker’s half-open time', async () => {
    mock.setScript(() => ({ fault: { status: 503 } }));
    const failed = await complete('once', 'hello');
    expect(failed.status).toBe(503);
    expect(failed.retryAfter).toBe('1');
  });
});

describe('a prompt larger than a deployment’s known context window', () => {
  it('is not sent to it: the route fails over on context_length to one it fits', async () => {
    const answer = await complete('small-then-big', 'word '.repeat(1_200));
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(answer.body.choices?.[0]?.message.content).toBe('spare here');
    expect(mock.calls).toHaveLength(0);
    // A prompt it fits still goes to it.
    expect((await complete('small-then-big', 'hello')).body.choices?.[0]?.message.content).toBe(
      'quick answer',
    );
  });
});

describe('an agent run behind /v1/chat/completions', () => {
  it('that stopped for an approval (409) is not retried by the official client: one run', async () => {
    const before = await member.get<{ data: unknown[] }>('/v1/approvals');
    const error = await failureOf(
      openAiClient(server.url, secret, 2).chat.completions.create({
        model: 'agent:careful',
        messages: [{ role: 'user', content: 'call calculator {"expression":"6*7"}' }],
      }),
    );
    expect(error.status).toBe(409);
    const after = await member.get<{ data: { runId: string; threadId: string }[] }>(
      '/v1/approvals',
    );
    expect(after.body.data.length - before.body.data.length).toBe(1);
    // The response names the run it started, as a successful one does (they were missing on
    // every error that ended an agent completion).
    const runIds = after.body.data.map((approval) => approval.runId);
    expect(runIds).toContain(error.headers?.get('x-brigade-run-id'));
    expect(error.headers?.get('x-brigade-thread-id')).toMatch(/^[0-9a-f-]{36}$/);
  });
});
