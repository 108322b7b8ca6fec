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
 * A usage record per attempt and per call: a call that retried and fell back writes a record
 * for each failed attempt (`kind: attempt`) and one for itself (`kind: call`, its deployments
 * tried in `attempts`, its final status). Reports count calls as requests and errors, and the
 * failed attempts apart, so retries do not read as failed requests.
 */
let primary: MockModelServer;
let backup: MockModelServer;
let slow: MockModelServer;
let server: TestServer;
let member: ApiClient;
let admin: ApiClient;
let memberSecret: string;
let tenantId: string;

beforeAll(async () => {
  primary = await createMockModelServer({ apiKey: 'primary-key' });
  backup = await createMockModelServer({ apiKey: 'backup-key' });
  // Streams its answer a token every 300 ms: a client can hang up after the first.
  slow = await createMockModelServer({ faults: { tokenDelayMs: 300 } });
  server = await startTestServer(
    {
      providers: {
        primary: { type: 'openai-compatible', baseUrl: primary.url, apiKeyEnv: 'PRIMARY_KEY' },
        backup: { type: 'openai-compatible', baseUrl: backup.url, apiKeyEnv: 'BACKUP_KEY' },
        slow: { type: 'openai-compatible', baseUrl: slow.url },
      },
      routes: [
        {
          name: 'main',
          deployments: [{ model: 'primary:mock-model' }],
          retries: { maxAttempts: 2, baseDelayMs: 0, maxDelayMs: 0 },
          // No breaker opens during the test: every call tries the primary twice.
          breaker: { failureRate: 1, windowMs: 1_000, minimumRps: 1_000, halfOpenAfterMs: 1_000 },
          fallbacks: [{ route: 'spare', on: ['server_error'] }],
        },
        { name: 'spare', deployments: [{ model: 'backup:mock-model' }] },
        {
          name: 'down',
          deployments: [{ model: 'primary:mock-model' }],
          retries: { maxAttempts: 3, baseDelayMs: 0, maxDelayMs: 0 },
          breaker: { failureRate: 1, windowMs: 1_000, minimumRps: 1_000, halfOpenAfterMs: 1_000 },
        },
        { name: 'drip', deployments: [{ model: 'slow:mock-model' }] },
      ],
      limits: { requestsPerMinute: { key: 1_000_000, user: 1_000_000, tenant: 1_000_000 } },
    },
    { env: { PRIMARY_KEY: 'primary-key', BACKUP_KEY: 'backup-key' } },
  );
  const operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'usage-calls');
  memberSecret = (await seedUser(operator, { tenantId, role: 'member' })).secret;
  member = apiClient(server.url, memberSecret);
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  primary.setFaults({ status: 503 });
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await primary?.close();
  await backup?.close();
  await slow?.close();
});

async function complete(model: string): Promise<number> {
  const response = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${memberSecret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hello there' }] }),
  });
  await response.arrayBuffer();
  return response.status;
}

interface Totals {
  requests: number;
  errors: number;
  failedAttempts: number;
}

interface UsageRecord {
  kind: string;
  attempts: number | null;
  status: string;
  model: string;
  provider: string;
  route: string | null;
  error_code: string | null;
}

/** Streams a chat completion on `model` and hangs up once its first text has arrived. */
async function hangUpAfterFirstToken(secret: string, model: string): Promise<void> {
  const controller = new AbortController();
  const response = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    signal: controller.signal,
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      model,
      stream: true,
      messages: [{ role: 'user', content: 'one two three four five six' }],
    }),
  });
  expect(response.status).toBe(200);
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let text = '';
  while (!text.includes('"content":"')) {
    const chunk = await reader.read();
    if (chunk.done) throw new Error(`the stream ended before any text: ${text}`);
    text += decoder.decode(chunk.value, { stream: true });
  }
  controller.abort();
  await reader.closed.catch(() => undefined);
}

/** The member's usage totals once `calls` calls are recorded (records are written in batches). */
async function totalsAfter(calls: number): Promise<Totals> {
  const report = await usageWhen<{ totals: Totals }>(
    member,
    '',
    (current) => current.totals.requests >= calls,
  );
  return report.totals;
}

describe('usage records of calls and their attempts', () => {
  it('counts a call that retried and fell back once, its failed attempts apart', async () => {
    expect(await complete('main')).toBe(200);
    expect(await complete('main')).toBe(200);
    // Each call: two failed attempts on the primary, then the spare answers.
    expect(primary.calls.length).toBe(4);
    expect(await totalsAfter(2)).toEqual(
      expect.objectContaining({ requests: 2, errors: 0, failedAttempts: 4 }),
    );

    // A call that fails on every attempt is one failed request.
    expect(await complete('down')).toBe(503);
    expect(await totalsAfter(3)).toEqual(
      expect.objectContaining({ requests: 3, errors: 1, failedAttempts: 6 }),
    );

    // The user's export tells the records apart.
    const exported = await member.get<{ usageRecords: UsageRecord[] }>('/v1/me/export');
    expect(exported.status).toBe(200);
    const calls = exported.body.usageRecords.filter((record) => record.kind === 'call');
    const attempts = exported.body.usageRecords.filter((record) => record.kind === 'attempt');
    expect(calls.map((record) => [record.status, record.attempts]).sort()).toEqual([
      ['error', 3],
      ['ok', 3],
      ['ok', 3],
    ]);
    expect(attempts).toHaveLength(6);
    expect(attempts.every((record) => record.status === 'error')).toBe(true);
    expect(attempts.every((record) => record.attempts === null)).toBe(true);
  });

  it('accepts a breaker failure rate of 1 (open only when every call failed) and serves calls', async () => {
    const created = await admin.post('/v1/model-routes', {
      name: 'patient',
      deployments: [{ model: 'backup:mock-model' }],
      breaker: { failureRate: 1, windowMs: 1_000, minimumRps: 1, halfOpenAfterMs: 1_000 },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    // It was a 500 on every call: the breaker library refused the rate.
    expect(await complete('patient')).toBe(200);
  });

  it('meters a routed stream the client cancelled under the deployment it was reading', async () => {
    const operator = apiClient(server.url, testOperatorKey);
    const seeded = await seedUser(operator, { tenantId, role: 'member' });
    const caller = apiClient(server.url, seeded.secret);
    await hangUpAfterFirstToken(seeded.secret, 'drip');
    await hangUpAfterFirstToken(seeded.secret, 'slow:mock-model');
    await usageWhen<{ totals: Totals }>(caller, '', (report) => report.totals.requests >= 2);
    const exported = await caller.get<{ usageRecords: UsageRecord[] }>('/v1/me/export');
    const calls = exported.body.usageRecords.map((record) => [
      record.kind,
      record.status,
      record.route,
      record.provider,
      record.model,
    ]);
    // The routed call is the deployment's as the direct one is (not the route's name as
    // provider and model), its route beside it.
    expect(calls.sort()).toEqual([
      ['call', 'cancelled', null, 'slow', 'slow:mock-model'],
      ['call', 'cancelled', 'drip', 'slow', 'slow:mock-model'],
    ]);
    const report = await caller.get<{ data: { provider: string; model: string }[] }>(
      '/v1/usage?groupBy=provider,model',
    );
    expect(report.body.data).toEqual([
      expect.objectContaining({ provider: 'slow', model: 'slow:mock-model', requests: 2 }),
    ]);
    const metrics = await fetch(`${server.url}/metrics`, {
      headers: { authorization: `Bearer ${testOperatorKey}` },
    });
    const text = await metrics.text();
    expect(text).toMatch(
      /brigade_model_calls_total\{provider="slow",model="slow:mock-model",status="cancelled"\} 2\n/,
    );
    expect(text).not.toMatch(/provider="drip"|model="drip"/);
  });
});
