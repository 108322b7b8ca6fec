import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createModelGateway } from '../src/gateway/model-gateway.ts';
import type { ModelRouteDefinition } from '../src/gateway/model-routes.ts';
import { modelRouteSchema } from '../src/gateway/route-schema.ts';
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
 * Model routes through the public API, against two mock providers: `primary` (which the tests
 * make fail) and `backup` (healthy). Calls go through `/v1/chat/completions` and through runs.
 */
let primary: MockModelServer;
let backup: MockModelServer;
let server: TestServer;
let admin: ApiClient;
let member: ApiClient;
let memberSecret: string;

type Problem = { code: string; errors?: { path: string }[] };

async function complete(
  model: string,
  secret = memberSecret,
): Promise<{ status: number; ms: number; body: Record<string, unknown> }> {
  const started = Date.now();
  const response = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hello there' }] }),
  });
  const body = (await response.json()) as Record<string, unknown>;
  return { status: response.status, ms: Date.now() - started, body };
}

beforeAll(async () => {
  primary = await createMockModelServer({ apiKey: 'primary-key', seed: 7 });
  backup = await createMockModelServer({ apiKey: 'backup-key' });
  server = await startTestServer(
    {
      providers: {
        primary: { type: 'openai-compatible', baseUrl: primary.url, apiKeyEnv: 'PRIMARY_KEY' },
        backup: { type: 'openai-compatible', baseUrl: backup.url, apiKeyEnv: 'BACKUP_KEY' },
      },
      routes: [
        {
          name: 'resilient',
          deployments: [{ model: 'primary:mock-model' }],
          fallbacks: [{ route: 'spare', on: ['rate_limited', 'server_error', 'timeout'] }],
          attemptTimeoutMs: 300,
          retries: { maxAttempts: 2, baseDelayMs: 20, maxDelayMs: 100 },
        },
        { name: 'spare', deployments: [{ model: 'backup:mock-model' }] },
        { name: 'narrow', deployments: [{ model: 'primary:mock-model', contextTokens: 100 }] },
      ],
      limits: { requestsPerMinute: { key: 1_000_000, user: 1_000_000, tenant: 1_000_000 } },
      runs: { pollIntervalMs: 50 },
    },
    { env: { PRIMARY_KEY: 'primary-key', BACKUP_KEY: 'backup-key' } },
  );
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'routed');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  memberSecret = (await seedUser(operator, { tenantId, role: 'member' })).secret;
  member = apiClient(server.url, memberSecret);
});

afterAll(async () => {
  await server?.stop();
  await primary?.close();
  await backup?.close();
});

describe('model routes API', () => {
  it('lets admins create, read, change and delete tenant routes; members read them', async () => {
    const created = await admin.post<Created & { scope: string; version: number }>(
      '/v1/model-routes',
      {
        name: 'chat',
        strategy: 'least-busy',
        deployments: [{ model: 'primary:mock-model' }, { model: 'backup:mock-model', weight: 2 }],
        fallbacks: [{ route: 'spare', on: ['server_error'] }],
      },
    );
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: 'chat', scope: 'tenant', version: 1 });
    const listed = await member.get<{ data: { name: string; scope: string }[] }>(
      '/v1/model-routes',
    );
    expect(listed.body.data).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ name: 'chat', scope: 'tenant' }),
        expect.objectContaining({ name: 'resilient', scope: 'platform' }),
      ]),
    );
    expect(
      (await member.post('/v1/model-routes', { name: 'x', deployments: [{ model: 'local' }] }))
        .status,
    ).toBe(403);
    const changed = await admin.request<{ version: number; deployments: unknown[] }>(
      'PATCH',
      `/v1/model-routes/${created.body.id}`,
      { deployments: [{ model: 'local' }] },
    );
    expect(changed.status).toBe(200);
    // Only what was sent changes: the strategy and fallbacks stay.
    expect(changed.body).toMatchObject({
      version: 2,
      deployments: [{ model: 'local' }],
      strategy: 'least-busy',
      fallbacks: [{ route: 'spare', on: ['server_error'] }],
    });
    // The route is a model name: an agent can use it, and so can the API.
    expect((await complete('chat')).status).toBe(200);
    expect((await admin.request('DELETE', `/v1/model-routes/${created.body.id}`)).status).toBe(204);
    expect((await member.get<Problem>(`/v1/model-routes/${created.body.id}`)).body.code).toBe(
      'model_route_not_found',
    );
    expect((await complete('chat')).status).toBe(404);
  });

  it('refuses routes naming unknown providers or routes, or falling back to themselves', async () => {
    const response = await admin.post<Problem>('/v1/model-routes', {
      name: 'broken',
      deployments: [{ model: 'nowhere:model' }],
      fallbacks: [
        { route: 'missing', on: ['timeout'] },
        { route: 'broken', on: ['timeout'] },
      ],
    });
    expect(response.status).toBe(422);
    // One issue per problem, each path naming the body's field.
    expect(response.body.errors?.map((error) => error.path).sort()).toEqual([
      'body.deployments.0.model',
      'body.fallbacks.0.route',
      'body.fallbacks.1.route',
    ]);
    const priced = await admin.post<Problem>('/v1/model-routes', {
      name: 'free',
      deployments: [
        { model: 'primary:mock-model', price: { inputPerMTok: 0, outputPerMTok: 0 } },
        { model: 'backup:mock-model', contextTokens: 10_000_000 },
      ],
    });
    // Prices and context windows decide what budgets reserve: the operator's, not a tenant's.
    expect(priced.status).toBe(422);
    expect(priced.body.errors?.map((error) => error.path)).toEqual(
      expect.arrayContaining(['body.deployments.0.price', 'body.deployments.1.contextTokens']),
    );
    const first = await admin.post<Created>('/v1/model-routes', {
      name: 'twice',
      deployments: [{ model: 'local' }],
    });
    expect(first.status).toBe(201);
    const second = await admin.post('/v1/model-routes', {
      name: 'twice',
      deployments: [{ model: 'local' }],
    });
    expect(second.status).toBe(409);
  });

  it('runs an agent whose model is a route, and records the route and deployment in usage', async () => {
    const agent = await admin.post<Created>('/v1/agents', { name: 'routed', model: 'resilient' });
    expect(agent.status).toBe(201);
    const thread = await member.post<Created>('/v1/threads', {});
    const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId: agent.body.id,
      input: 'hi',
    });
    const done = await waitForRun(member, { threadId: thread.body.id, runId: run.body.id });
    expect(done.status).toBe('completed');
    const usage = await member.get<{ data: { model: string }[] }>('/v1/usage?groupBy=model');
    expect(usage.body.data.map((row) => row.model)).toContain('primary:mock-model');
  });
});

/** The primary's faults: 5xx, 429 with Retry-After and hangs, about half of all calls. */
const halfFailing = [
  { failRate: 0.25, fault: { status: 503 } },
  { failRate: 0.2, fault: { status: 429, retryAfterMs: 50 } },
  { failRate: 0.07, fault: { hang: true } },
];

/** A route definition with the defaults filled in, as the config file's parser would. */
function route(input: Record<string, unknown>): ModelRouteDefinition {
  return modelRouteSchema.parse(input) as ModelRouteDefinition;
}

describe('fault tolerance', () => {
  it('answers at least 99.9% of 2,000 calls while the primary fails half of them', async () => {
    // The gateway on its own (the same code every API call and run goes through), so 2,000
    // calls take seconds; the next test drives the HTTP API.
    const gateway = createModelGateway({
      localTokenDelayMs: 0,
      providers: {
        primary: { type: 'openai-compatible', baseUrl: primary.url, apiKey: 'primary-key' },
        backup: { type: 'openai-compatible', baseUrl: backup.url, apiKey: 'backup-key' },
      },
      platformRoutes: [
        route({
          name: 'resilient',
          deployments: [{ model: 'primary:mock-model' }],
          fallbacks: [{ route: 'spare', on: ['rate_limited', 'server_error', 'timeout'] }],
          attemptTimeoutMs: 300,
          retries: { maxAttempts: 2, baseDelayMs: 20, maxDelayMs: 100 },
          // Retries and fallbacks are under test here, not the breaker (tested below): at a
          // 50 % failure rate a 0.5 threshold would sometimes open it and spare the primary.
          breaker: { failureRate: 0.9 },
        }),
        route({ name: 'spare', deployments: [{ model: 'backup:mock-model' }] }),
      ],
    });
    primary.reset();
    backup.reset();
    primary.setFaults(halfFailing);
    const total = 2_000;
    let next = 0;
    let ok = 0;
    const worker = async () => {
      while (next < total) {
        next += 1;
        const answered = await gateway
          .generate({
            model: 'resilient',
            messages: [
              { role: 'user', content: [{ type: 'text', text: 'hello' }], provenance: 'user' },
            ],
            tools: [],
            maxOutputTokens: 16,
            signal: new AbortController().signal,
          })
          .then(() => true)
          .catch(() => false);
        if (answered) ok += 1;
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));
    primary.setFaults(undefined);
    const failedOnPrimary = primary.calls.filter((call) => call.fault !== undefined).length;
    // Faults really struck the primary (how many reached it depends on timing and backoff).
    expect(failedOnPrimary).toBeGreaterThan(0);
    expect(backup.calls.length).toBeGreaterThan(0);
    expect(ok / total).toBeGreaterThanOrEqual(0.999);
  }, 120_000);

  it('answers every one of 300 API requests while the primary fails half of them', async () => {
    primary.reset();
    backup.reset();
    primary.setFaults(halfFailing);
    const total = 300;
    let next = 0;
    let ok = 0;
    const worker = async () => {
      while (next < total) {
        next += 1;
        if ((await complete('resilient')).status === 200) ok += 1;
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    primary.setFaults(undefined);
    expect(backup.calls.length).toBeGreaterThan(0);
    expect(ok).toBe(total);
  }, 120_000);

  it('stops sending to a dead deployment once its breaker opens, and probes it back', async () => {
    const route = await admin.post<Created>('/v1/model-routes', {
      name: 'breaker',
      deployments: [{ model: 'primary:mock-model' }, { model: 'backup:mock-model' }],
      retries: { maxAttempts: 2, baseDelayMs: 0, maxDelayMs: 0 },
      breaker: { failureRate: 0.5, windowMs: 5_000, minimumRps: 1, halfOpenAfterMs: 3_000 },
    });
    expect(route.status).toBe(201);
    primary.reset();
    backup.reset();
    primary.setFaults({ status: 503 });
    for (let index = 0; index < 40; index += 1)
      expect((await complete('breaker')).status).toBe(200);
    const deadCalls = primary.calls.length;
    // Open: the next requests do not reach the dead deployment (at most a half-open probe
    // does, should these 20 requests outlast the 3 s on a busy machine).
    for (let index = 0; index < 20; index += 1)
      expect((await complete('breaker')).status).toBe(200);
    expect(primary.calls.length - deadCalls).toBeLessThanOrEqual(1);
    // Half-open after 3 s: a probe reaches it; it is healthy again, so traffic returns.
    primary.setFaults(undefined);
    await new Promise((resolve) => setTimeout(resolve, 3_100));
    for (let index = 0; index < 20; index += 1)
      expect((await complete('breaker')).status).toBe(200);
    expect(primary.calls.length).toBeGreaterThan(deadCalls + 1);
  });

  it('never lets a request outlive its route deadline, and says when to come back', async () => {
    const route = await admin.post<Created>('/v1/model-routes', {
      name: 'hurried',
      deployments: [{ model: 'primary:mock-model' }],
      attemptTimeoutMs: 400,
      deadlineMs: 1_000,
    });
    expect(route.status).toBe(201);
    primary.setFaults({ hang: true });
    const outcome = await complete('hurried');
    primary.setFaults(undefined);
    expect(outcome.status).toBe(503);
    // The deadline bounds the call; the slack is for a busy test machine, not for the gateway.
    expect(outcome.ms).toBeLessThan(1_000 + 1_500);
  });

  it('waits out a Retry-After before trying the same deployment again', async () => {
    const route = await admin.post<Created>('/v1/model-routes', {
      name: 'patient',
      deployments: [{ model: 'primary:mock-model' }],
      retries: { maxAttempts: 2, baseDelayMs: 0, maxDelayMs: 0 },
    });
    expect(route.status).toBe(201);
    primary.reset();
    primary.setScript([
      { text: 'slow down', fault: { status: 429, retryAfterMs: 700 } },
      { text: 'now then' },
    ]);
    const outcome = await complete('patient');
    primary.setScript(undefined);
    // The body and the calls the mock saw say why, should this ever fail (it did once on CI
    // with a 429 after 189 ms, which nothing here explains yet).
    expect(outcome.status, JSON.stringify({ ...outcome, calls: primary.calls })).toBe(200);
    const [first, second] = primary.calls;
    expect(second).toBeDefined();
    expect((second?.startedAt ?? 0) - (first?.startedAt ?? 0)).toBeGreaterThanOrEqual(700);
  });

  it('refuses a prompt beyond every deployment’s context before any provider is paid', async () => {
    // 'narrow' is a platform route (context windows are the operator's to set).
    primary.reset();
    const response = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${memberSecret}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'narrow',
        messages: [{ role: 'user', content: 'word '.repeat(400) }],
      }),
    });
    const body = (await response.json()) as { error: { code: string; param: string } };
    expect(response.status).toBe(400);
    expect(body.error).toMatchObject({ code: 'context_length_exceeded', param: 'messages' });
    expect(primary.calls).toHaveLength(0);
  });

  it('answers a provider’s own context-length refusal as OpenAI does: 400 context_length_exceeded', async () => {
    primary.reset();
    const errorMessage = 'The maximum context length is 8192 tokens (context_length_exceeded).';
    primary.setFaults({ status: 400, errorMessage });
    try {
      const outcome = await complete('primary:mock-model');
      expect(outcome.status, JSON.stringify(outcome.body)).toBe(400);
      expect(outcome.body['error']).toMatchObject({
        type: 'invalid_request_error',
        code: 'context_length_exceeded',
      });
    } finally {
      primary.setFaults(undefined);
    }
  });

  it('does not open a breaker for callers who hang up', async () => {
    const gateway = createModelGateway({
      localTokenDelayMs: 0,
      providers: {
        primary: { type: 'openai-compatible', baseUrl: primary.url, apiKey: 'primary-key' },
      },
      platformRoutes: [
        route({
          name: 'touchy',
          deployments: [{ model: 'primary:mock-model' }],
          retries: { maxAttempts: 1, baseDelayMs: 0, maxDelayMs: 0 },
          breaker: { failureRate: 0.5, windowMs: 10_000, minimumRps: 0.1, halfOpenAfterMs: 60_000 },
        }),
      ],
    });
    const call = (signal: AbortSignal) =>
      gateway.generate({
        model: 'touchy',
        messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }], provenance: 'user' }],
        tools: [],
        maxOutputTokens: 16,
        signal,
      });
    primary.reset();
    primary.setFaults({ hang: true });
    // Twenty callers give up after 30 ms: their own doing, not the deployment's.
    for (let index = 0; index < 20; index += 1)
      await call(AbortSignal.timeout(30)).catch(() => undefined);
    primary.setFaults(undefined);
    const answer = await call(new AbortController().signal);
    expect(answer.served.model).toBe('primary:mock-model');
  });
});
