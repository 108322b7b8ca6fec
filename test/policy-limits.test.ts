import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MockModelServer } from '../src/testing/index.ts';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedUser,
  waitForRun,
} from './support/api-client.ts';
import {
  outputTokens,
  type PolicyWorld,
  type Problem,
  type RunBody,
  startPolicyWorld,
} from './support/policy-world.ts';
import type { TestServer } from './support/test-brigade.ts';

/**
 * Daily quotas of API keys, and rate and concurrency limits, through the public API (see
 * support/policy-world.ts).
 */
let world: PolicyWorld;
let mock: MockModelServer;
let server: TestServer;
let operator: ApiClient;
let admin: ApiClient;
let member: ApiClient;
let tenantId: string;
let agentId: string;

beforeAll(async () => {
  world = await startPolicyWorld('limited');
  ({ mock, server, operator, admin, member, tenantId, agentId } = world);
});

afterAll(async () => {
  await world?.stop();
});

describe('quotas per API key', () => {
  it('counts a run’s tool calls against the daily quota of the key that started it', async () => {
    const seeded = await seedUser(operator, { tenantId, role: 'member' });
    const client = apiClient(server.url, seeded.secret);
    const agent = await admin.post<Created>('/v1/agents', {
      name: 'keyed',
      model: 'local',
      tools: ['calculator'],
    });
    const policy = await admin.post('/v1/policies', {
      level: 'api_key',
      subjectId: seeded.keyId,
      limits: { toolCallsPerDay: 1 },
    });
    expect(policy.status).toBe(201);
    const outcomes: string[] = [];
    for (let index = 0; index < 2; index += 1) {
      const thread = await client.post<Created>('/v1/threads', {});
      const created = await client.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
        agentId: agent.body.id,
        input: 'call calculator {"expression":"1+1"}',
      });
      await waitForRun(client, { threadId: thread.body.id, runId: created.body.id });
      const events = await client.get<string>(
        `/v1/threads/${thread.body.id}/runs/${created.body.id}/events`,
      );
      outcomes.push(String(events.body).match(/"status":"(ok|error)"/)?.[1] ?? 'missing');
    }
    expect(outcomes).toEqual(['ok', 'error']);
  });
});

describe('rate and concurrency limits', () => {
  it('refuses requests beyond a policy’s requests per minute with the policy named', async () => {
    const seeded = await seedUser(operator, { tenantId, role: 'member' });
    const limited = apiClient(server.url, seeded.secret);
    const policy = await admin.post<Created>('/v1/policies', {
      level: 'user',
      subjectId: seeded.userId,
      limits: { requestsPerMinute: 3 },
    });
    expect(policy.status).toBe(201);
    const statuses: number[] = [];
    for (let index = 0; index < 4; index += 1) statuses.push((await limited.get('/v1/me')).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
    const refused = await limited.get<Problem & { policyId: string }>('/v1/me');
    expect(refused.body.code).toBe('rate_limited');
    expect(refused.body.policyId).toBe(policy.body.id);
    expect(refused.headers.get('ratelimit-policy')).toBe('3;w=60');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    // Others in the tenant are not affected.
    expect((await member.get('/v1/me')).status).toBe(200);
    await admin.request('DELETE', `/v1/policies/${policy.body.id}`);
  });

  it('makes a run wait for room under tokens per minute, failing it at its deadline', async () => {
    const seeded = await seedUser(operator, { tenantId, role: 'member' });
    const limited = apiClient(server.url, seeded.secret);
    const agent = await admin.post<Created>('/v1/agents', {
      name: 'hasty',
      model: 'mock:priced',
      maxOutputTokens: outputTokens,
      runTimeoutMs: 2_000,
    });
    const policy = await admin.post<Created>('/v1/policies', {
      level: 'user',
      subjectId: seeded.userId,
      limits: { tokensPerMinute: 250 },
    });
    expect(policy.status).toBe(201);
    const outcomes: (string | null)[] = [];
    for (let index = 0; index < 3; index += 1) {
      const thread = await limited.post<Created>('/v1/threads', {});
      const created = await limited.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
        agentId: agent.body.id,
        input: 'hi',
      });
      const done = await waitForRun(limited, { threadId: thread.body.id, runId: created.body.id });
      outcomes.push(done.status === 'completed' ? 'completed' : done.errorCode);
    }
    // Each call is counted at its start as its input's floor plus its 100-token output limit,
    // then as the 107 tokens it used: two fit in 250, the third finds too little left.
    expect(outcomes).toEqual(['completed', 'completed', 'rate_limited']);
    await admin.request('DELETE', `/v1/policies/${policy.body.id}`);
  });

  it('keeps a call’s tokens counted when its stream is cut off before the end', async () => {
    const seeded = await seedUser(operator, { tenantId, role: 'member' });
    const policy = await admin.post<Created>('/v1/policies', {
      level: 'user',
      subjectId: seeded.userId,
      limits: { tokensPerMinute: 250 },
    });
    const call = (stream: boolean, signal?: AbortSignal) =>
      fetch(`${server.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${seeded.secret}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'mock:priced',
          max_tokens: outputTokens,
          stream,
          messages: [{ role: 'user', content: 'hi' }],
        }),
        ...(signal === undefined ? {} : { signal }),
      });
    mock.setScript(() => ({
      text: 'word '.repeat(100),
      usage: { completionTokens: outputTokens },
    }));
    mock.setFaults({ tokenDelayMs: 30 });
    try {
      const hangUp = new AbortController();
      const streamed = await call(true, hangUp.signal);
      await streamed.body?.getReader().read();
      hangUp.abort();
      await new Promise((resolve) => setTimeout(resolve, 300));
    } finally {
      mock.setFaults(undefined);
      mock.setScript(() => ({
        text: 'ok',
        usage: { promptTokens: 7, completionTokens: outputTokens },
      }));
    }
    // The cut-off call still counts its ~101 tokens: one more call fits in 250, not two.
    expect((await call(false)).status).toBe(200);
    expect((await call(false)).status).toBe(429);
    await admin.request('DELETE', `/v1/policies/${policy.body.id}`);
  });

  it('counts calls made at once against tokens per minute: they cannot all pass one window', async () => {
    const seeded = await seedUser(operator, { tenantId, role: 'member' });
    const policy = await admin.post<Created>('/v1/policies', {
      level: 'user',
      subjectId: seeded.userId,
      limits: { tokensPerMinute: 250 },
    });
    expect(policy.status).toBe(201);
    const statuses = await Promise.all(
      Array.from({ length: 6 }, async () => {
        const response = await fetch(`${server.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${seeded.secret}`, 'content-type': 'application/json' },
          body: JSON.stringify({
            model: 'mock:priced',
            max_tokens: outputTokens,
            messages: [{ role: 'user', content: 'hi' }],
          }),
        });
        return response.status;
      }),
    );
    expect(statuses.filter((status) => status === 200)).toHaveLength(2);
    expect(statuses.filter((status) => status === 429)).toHaveLength(4);
    await admin.request('DELETE', `/v1/policies/${policy.body.id}`);
  });

  it('caps a user’s concurrent runs across the scheduler by a concurrentRuns policy', async () => {
    const seeded = await seedUser(operator, { tenantId, role: 'member' });
    const limited = apiClient(server.url, seeded.secret);
    const policy = await admin.post<Created>('/v1/policies', {
      level: 'user',
      subjectId: seeded.userId,
      limits: { concurrentRuns: 1 },
    });
    expect(policy.status).toBe(201);
    mock.setFaults({ latencyMs: 150 });
    try {
      const ids = await Promise.all(
        [0, 1, 2].map(async () => {
          const thread = await limited.post<Created>('/v1/threads', {});
          const created = await limited.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
            agentId,
            input: 'hi',
          });
          return { threadId: thread.body.id, runId: created.body.id };
        }),
      );
      type Timed = RunBody & { startedAt: string; completedAt: string };
      const runs = await Promise.all(ids.map((id) => waitForRun<Timed>(limited, id)));
      expect(runs.map((run) => run.status)).toEqual(['completed', 'completed', 'completed']);
      const spans = runs
        .map((run) => [Date.parse(run.startedAt), Date.parse(run.completedAt)] as const)
        .sort((a, b) => a[0] - b[0]);
      for (let index = 1; index < spans.length; index += 1) {
        expect(spans[index]?.[0]).toBeGreaterThanOrEqual(spans[index - 1]?.[1] ?? Number.NaN);
      }
    } finally {
      mock.setFaults(undefined);
      await admin.request('DELETE', `/v1/policies/${policy.body.id}`);
    }
  });

  it('refuses limits that cannot bind at a level', async () => {
    const response = await admin.post<Problem & { errors: { path: string }[] }>('/v1/policies', {
      level: 'agent',
      subjectId: agentId,
      limits: { requestsPerMinute: 5, concurrentRuns: 1 },
    });
    expect(response.status).toBe(422);
    expect(response.body.errors.map((error) => error.path)).toEqual([
      'limits.requestsPerMinute',
      'limits.concurrentRuns',
    ]);
  });
});
