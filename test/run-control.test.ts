import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
  waitForRun,
} from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

let server: TestServer;
let member: ApiClient;
let agentId: string;
let quickTimeoutAgentId: string;

type RunBody = Created & { status: string; errorCode: string | null };

const longInput = Array.from({ length: 400 }, (_, index) => `word${index}`).join(' ');

beforeAll(async () => {
  // The local model streams one token every 20 ms: a 400-word answer takes ~8 s.
  server = await startTestServer({
    models: { local: { tokenDelayMs: 20 } },
    runs: { pollIntervalMs: 50 },
  });
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'control');
  const admin = apiClient(
    server.url,
    (await seedUser(operator, { tenantId, role: 'admin' })).secret,
  );
  member = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  agentId = (await admin.post<Created>('/v1/agents', { name: 'talker', maxOutputTokens: 2000 }))
    .body.id;
  quickTimeoutAgentId = (
    await admin.post<Created>('/v1/agents', {
      name: 'hasty',
      maxOutputTokens: 2000,
      runTimeoutMs: 1000,
    })
  ).body.id;
});

afterAll(async () => {
  await server?.stop();
});

describe('run control', () => {
  it('cancels a streaming run at once and records no assistant message', async () => {
    const thread = await member.post<Created>('/v1/threads', {});
    const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId,
      input: longInput,
    });
    const ids = { threadId: thread.body.id, runId: run.body.id };
    await waitForRun<RunBody>(member, ids, ['running']);
    const started = Date.now();
    const cancelled = await member.post(`/v1/threads/${ids.threadId}/runs/${ids.runId}/cancel`);
    expect(cancelled.status).toBe(202);
    const final = await waitForRun<RunBody>(member, ids, ['cancelled', 'completed', 'failed']);
    expect(final.status).toBe('cancelled');
    expect(Date.now() - started).toBeLessThan(3000);
    const messages = await member.get<{ data: { role: string }[] }>(
      `/v1/threads/${ids.threadId}/messages`,
    );
    expect(messages.body.data.map((message) => message.role)).toEqual(['user']);
    const again = await member.post(`/v1/threads/${ids.threadId}/runs/${ids.runId}/cancel`);
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({ code: 'run_not_active' });
  });

  it('expires a run that outlives its timeout', async () => {
    const thread = await member.post<Created>('/v1/threads', {});
    const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId: quickTimeoutAgentId,
      input: longInput,
    });
    const final = await waitForRun<RunBody>(
      member,
      { threadId: thread.body.id, runId: run.body.id },
      ['expired', 'completed', 'failed'],
    );
    expect(final.status).toBe('expired');
    expect(final.errorCode).toBe('run_timeout');
  });

  it('rejects a new run with 409 thread_busy while the thread has an active run', async () => {
    const thread = await member.post<Created>('/v1/threads', {});
    const base = `/v1/threads/${thread.body.id}/runs`;
    const first = await member.post<Created>(base, { agentId, input: longInput });
    await waitForRun<RunBody>(member, { threadId: thread.body.id, runId: first.body.id }, [
      'running',
    ]);
    const rejected = await member.post(base, { agentId, input: 'second', strategy: 'reject' });
    expect(rejected.status).toBe(409);
    expect(rejected.body).toMatchObject({ code: 'thread_busy', activeRunId: first.body.id });
    await member.post(`${base}/${first.body.id}/cancel`);
  });

  it('interrupts the active run when the new run asks for it', async () => {
    const thread = await member.post<Created>('/v1/threads', {});
    const base = `/v1/threads/${thread.body.id}/runs`;
    const first = await member.post<Created>(base, { agentId, input: longInput });
    await waitForRun<RunBody>(member, { threadId: thread.body.id, runId: first.body.id }, [
      'running',
    ]);
    const second = await member.post<Created>(base, {
      agentId,
      input: 'short',
      strategy: 'interrupt',
    });
    expect(second.status).toBe(201);
    const secondFinal = await waitForRun<RunBody>(
      member,
      { threadId: thread.body.id, runId: second.body.id },
      ['completed', 'failed'],
    );
    expect(secondFinal.status).toBe('completed');
    const firstFinal = await member.get<RunBody>(`${base}/${first.body.id}`);
    expect(firstFinal.body.status).toBe('cancelled');
    const messages = await member.get<{ data: { role: string; runId: string }[] }>(
      `/v1/threads/${thread.body.id}/messages`,
    );
    // interrupt keeps the interrupted run's input; the new run answers.
    expect(messages.body.data.map((message) => message.role)).toEqual([
      'user',
      'user',
      'assistant',
    ]);
  });

  it('rolls back the active run and its messages when the new run asks for it', async () => {
    const thread = await member.post<Created>('/v1/threads', {});
    const base = `/v1/threads/${thread.body.id}/runs`;
    const first = await member.post<Created>(base, { agentId, input: longInput });
    await waitForRun<RunBody>(member, { threadId: thread.body.id, runId: first.body.id }, [
      'running',
    ]);
    const second = await member.post<Created>(base, {
      agentId,
      input: 'instead',
      strategy: 'rollback',
    });
    await waitForRun<RunBody>(member, { threadId: thread.body.id, runId: second.body.id }, [
      'completed',
    ]);
    const messages = await member.get<{ data: { role: string; runId: string }[] }>(
      `/v1/threads/${thread.body.id}/messages`,
    );
    expect(messages.body.data.every((message) => message.runId === second.body.id)).toBe(true);
    expect(messages.body.data.map((message) => message.role)).toEqual(['user', 'assistant']);
  });
});
