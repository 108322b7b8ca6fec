import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/** `/metrics` is protected, and its labels carry no tenant, user, key or run id. */
const metricsToken = `metrics-token-${'m'.repeat(20)}`;
let server: TestServer;
let operator: ApiClient;

beforeAll(async () => {
  server = await startTestServer(
    { providers: { openai: { type: 'openai' } } },
    { env: { BRIGADE_METRICS_TOKEN: metricsToken } },
  );
  operator = apiClient(server.url, testOperatorKey);
});

afterAll(async () => {
  await server?.stop();
});

const scrape = (credential?: string) =>
  fetch(`${server.url}/metrics`, {
    headers: credential === undefined ? {} : { authorization: `Bearer ${credential}` },
  });

describe('/metrics', () => {
  it('refuses requests without the metrics token or the operator key', async () => {
    expect((await scrape()).status).toBe(401);
    expect((await scrape(`wrong-token-${'x'.repeat(20)}`)).status).toBe(401);
    const tenantId = await seedTenant(operator, 'metrics-refuse');
    const owner = await seedUser(operator, { tenantId, role: 'owner' });
    expect((await scrape(owner.secret)).status).toBe(403);
  });

  it('serves Prometheus text with either credential and no ids after traffic', async () => {
    const tenantId = await seedTenant(operator, 'metrics-traffic');
    const owner = await seedUser(operator, { tenantId, role: 'owner' });
    const client = apiClient(server.url, owner.secret);
    const agent = await client.post<Created>('/v1/agents', { name: 'echo' });
    const thread = await client.post<Created>('/v1/threads', { title: 'metrics' });
    const run = await client.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId: agent.body.id,
      input: 'hello',
    });
    expect(run.status).toBe(201);
    for (let attempt = 0; attempt < 200; attempt += 1) {
      const current = await client.get<Created>(
        `/v1/threads/${thread.body.id}/runs/${run.body.id}`,
      );
      if (['completed', 'failed'].includes(String(current.body['status']))) break;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    await client.get(`/v1/tenants/${tenantId}/users/${owner.userId}`);
    await client.get('/v1/no-such-route');

    const byOperator = await scrape(testOperatorKey);
    expect(byOperator.status).toBe(200);
    expect(byOperator.headers.get('content-type')).toContain('text/plain');
    const response = await scrape(metricsToken);
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(text).toContain(
      'brigade_http_requests_total{method="POST",route="/v1/threads/:threadId/runs",status_class="2xx"}',
    );
    expect(text).toMatch(
      /brigade_http_requests_total\{method="GET",route="unmatched",status_class="4xx"\} \d/,
    );
    expect(text).toContain('brigade_http_request_duration_seconds_bucket');
    expect(text).toMatch(/brigade_runs_total\{outcome="completed"\} [1-9]/);
    expect(text).toMatch(/brigade_run_queue_wait_seconds_count [1-9]/);
    expect(text).toContain('process_cpu_user_seconds_total');
    expect(text).toContain('brigade_model_calls_total');
    // No id of any kind in any label or value.
    expect(text).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i);
    for (const id of [
      tenantId,
      owner.userId,
      owner.keyId,
      agent.body.id,
      thread.body.id,
      run.body.id,
    ])
      expect(text).not.toContain(id);
  });

  it('labels model calls by provider and model only', () => {
    server.brigade.metrics.recordModelCall({
      provider: 'openai',
      model: 'openai:gpt-4o-mini',
      status: 'ok',
      inputTokens: 10,
      outputTokens: 5,
      costUsd: 0.0001,
      latencyMs: 120,
    });
    return server.brigade.metrics.render().then((text) => {
      expect(text).toContain(
        'brigade_model_calls_total{provider="openai",model="openai:gpt-4o-mini",status="ok"} 1',
      );
      expect(text).toContain(
        'brigade_model_tokens_total{provider="openai",model="openai:gpt-4o-mini",direction="input"} 10',
      );
    });
  });
});
