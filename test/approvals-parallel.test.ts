import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockModelServer, type MockModelServer } from '../src/testing/index.ts';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
  waitForRun,
} from './support/api-client.ts';
import { testOperatorKey } from './support/test-brigade.ts';
import { type LoggedServer, startLoggedServer } from './support/tool-fixtures.ts';

/**
 * Two calls of one model step that both need approval, decided one after the other while the
 * first approved call is still running: each call must run exactly once. The second decision
 * must not hand the run to a new execution while the first call's result is not recorded.
 */
let upstream: Server;
let upstreamUrl: string;
/** Idempotency keys of the calls the slow upstream received, in order. */
const received: string[] = [];
let model: MockModelServer;
let server: LoggedServer;
let admin: ApiClient;
let member: ApiClient;
let agentId: string;

beforeAll(async () => {
  upstream = createServer((request, response) => {
    received.push(String(request.headers['idempotency-key']));
    const timer = setTimeout(() => response.end('{"done":true}'), 1_500);
    response.on('close', () => clearTimeout(timer));
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  model = await createMockModelServer({ apiKey: 'parallel-key' });
  // Two parallel calls first; once the tools answered, a final answer.
  model.setScript((request) =>
    JSON.stringify(request.body).includes('"role":"tool"')
      ? { text: 'Both done.' }
      : {
          toolCalls: [
            { name: 'effect', arguments: { n: 1 } },
            { name: 'effect', arguments: { n: 2 } },
          ],
          // A slow answer for the run whose agent is deleted while the model thinks.
          ...(JSON.stringify(request.body).includes('think slowly')
            ? { fault: { latencyMs: 1_500 } }
            : {}),
        },
  );
  server = await startLoggedServer(
    {
      providers: {
        mock: { type: 'openai-compatible', baseUrl: model.url, apiKeyEnv: 'PARALLEL_KEY' },
      },
      tools: { tenantHttp: { allowedHosts: ['127.0.0.1'] } },
    },
    { PARALLEL_KEY: 'parallel-key' },
  );
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'parallel-approvals');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  member = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  const tool = await admin.post('/v1/tools', {
    name: 'effect',
    description: 'Has a side effect.',
    risk: 'write',
    method: 'POST',
    urlTemplate: `${upstreamUrl}/effect`,
    inputSchema: { type: 'object', properties: { n: { type: 'integer' } } },
  });
  expect(tool.status, JSON.stringify(tool.body)).toBe(201);
  agentId = (
    await admin.post<Created>('/v1/agents', {
      name: 'careful',
      model: 'mock:mock-model',
      tools: ['effect'],
      approvalRequiredTools: ['effect'],
    })
  ).body.id;
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await model?.close();
  upstream?.closeAllConnections();
  await new Promise((resolve) => upstream?.close(resolve));
});

async function pendingOf(runId: string) {
  const pending = await member.get<{
    data: { id: string; runId: string; arguments: { n: number } }[];
  }>('/v1/approvals');
  return pending.body.data.filter((approval) => approval.runId === runId);
}

/** The run's two pending approvals, once both are recorded (about 2 s at most). */
async function bothPending(runId: string) {
  let pending = await pendingOf(runId);
  for (let tries = 0; pending.length < 2 && tries < 40; tries += 1) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    pending = await pendingOf(runId);
  }
  return pending;
}

describe('parallel calls that need approval', () => {
  it('run each call once when the second is approved while the first is running', async () => {
    const thread = await member.post<Created>('/v1/threads', {});
    const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId,
      input: 'do both',
    });
    const ids = { threadId: thread.body.id, runId: run.body.id };
    await waitForRun(member, ids, ['requires_action']);
    const pending = await bothPending(run.body.id);
    expect(pending).toHaveLength(2);
    const [first, second] = [...pending].sort((a, b) => a.arguments.n - b.arguments.n);
    expect(
      (await member.post(`/v1/approvals/${first?.id}/decision`, { decision: 'approve' })).status,
    ).toBe(200);
    // The first call is now running (1.5 s): approve the second meanwhile.
    for (let tries = 0; received.length === 0 && tries < 100; tries += 1)
      await new Promise((resolve) => setTimeout(resolve, 20));
    expect(
      (await member.post(`/v1/approvals/${second?.id}/decision`, { decision: 'approve' })).status,
    ).toBe(200);
    const finished = await waitForRun<{ status: string }>(member, ids);
    expect(finished.status).toBe('completed');
    // Each call once: two distinct idempotency keys, no repeat.
    expect(received).toHaveLength(2);
    expect(new Set(received).size).toBe(2);
    // Each decision is announced once in the run's events, with no gap in their numbers.
    const events = await member.request<string>(
      'GET',
      `/v1/threads/${ids.threadId}/runs/${ids.runId}/events`,
    );
    const text = String(events.body);
    const decided = [...text.matchAll(/^event: approval-decided\ndata: (.*)$/gm)].map(
      (match) => JSON.parse(match[1] ?? '{}') as { approvalId: string; status: string },
    );
    expect(decided.map((event) => [event.approvalId, event.status]).sort()).toEqual(
      [
        [first?.id, 'approved'],
        [second?.id, 'approved'],
      ].sort(),
    );
    const seqs = [...text.matchAll(/^id: (\d+)$/gm)].map((match) => Number(match[1]));
    expect(seqs).toEqual(seqs.map((_, index) => index + 1));
  }, 30_000);

  it('take both decisions sent at once, and a repeated one, without a 503 or a failed run', async () => {
    received.length = 0;
    const thread = await member.post<Created>('/v1/threads', {});
    const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId,
      input: 'do both at once',
    });
    const ids = { threadId: thread.body.id, runId: run.body.id };
    await waitForRun(member, ids, ['requires_action']);
    const pending = await bothPending(run.body.id);
    expect(pending).toHaveLength(2);
    // "Approve all", with a double click on the first: the resumed execution reaches the
    // second call's gate while its decision is being made. The decision and the gate must
    // lock the approval and the run in the same order (a deadlock failed one or the other).
    const decide = (id: string | undefined) =>
      member.post(`/v1/approvals/${id}/decision`, { decision: 'approve' });
    const answers = await Promise.all([
      decide(pending[0]?.id),
      decide(pending[1]?.id),
      decide(pending[0]?.id),
    ]);
    const statuses = answers.map((answer) => answer.status);
    expect(statuses.filter((status) => status === 200)).toHaveLength(2);
    expect(statuses.filter((status) => status !== 200)).toEqual([409]);
    const finished = await waitForRun<{ status: string; errorCode: string | null }>(member, ids);
    expect([finished.status, finished.errorCode]).toEqual(['completed', null]);
    expect(received).toHaveLength(2);
  }, 30_000);

  it('does not park a run whose agent was deleted while it ran: it fails agent_not_found', async () => {
    received.length = 0;
    const doomed = await admin.post<Created>('/v1/agents', {
      name: 'doomed-parallel',
      model: 'mock:mock-model',
      tools: ['effect'],
      approvalRequiredTools: ['effect'],
    });
    const thread = await member.post<Created>('/v1/threads', {});
    const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId: doomed.body.id,
      input: 'think slowly',
    });
    const ids = { threadId: thread.body.id, runId: run.body.id };
    await waitForRun(member, ids, ['running']);
    // The model is still answering: the agent goes, then its calls reach the approval gate.
    expect((await admin.request('DELETE', `/v1/agents/${doomed.body.id}`)).status).toBe(204);
    const finished = await waitForRun<{ status: string; errorCode: string | null }>(member, ids);
    expect([finished.status, finished.errorCode]).toEqual(['failed', 'agent_not_found']);
    // Nothing is left for the user to approve, and nothing ran.
    expect(await pendingOf(run.body.id)).toEqual([]);
    expect(received).toEqual([]);
  }, 30_000);

  it('leaves no decidable approval behind a run that ended, and a decision does not revive it', async () => {
    const thread = await member.post<Created>('/v1/threads', {});
    const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId,
      input: 'do both, then stop',
    });
    const ids = { threadId: thread.body.id, runId: run.body.id };
    await waitForRun(member, ids, ['requires_action']);
    const pending = await bothPending(run.body.id);
    const [first, second] = [...pending].sort((a, b) => a.arguments.n - b.arguments.n);
    const calls = received.length;
    expect(
      (await member.post(`/v1/approvals/${first?.id}/decision`, { decision: 'approve' })).status,
    ).toBe(200);
    // The first call runs (1.5 s); the run is cancelled while the second still waits.
    for (let tries = 0; received.length === calls && tries < 200; tries += 1)
      await new Promise((resolve) => setTimeout(resolve, 25));
    expect(received).toHaveLength(calls + 1);
    expect(
      (await member.post(`/v1/threads/${ids.threadId}/runs/${ids.runId}/cancel`, {})).status,
    ).toBe(202);
    expect((await waitForRun<{ status: string }>(member, ids)).status).toBe('cancelled');
    expect(await pendingOf(run.body.id)).toEqual([]);
    // Before, the decision answered 200 and set the cancelled run back to queued, for ever.
    const late = await member.post(`/v1/approvals/${second?.id}/decision`, {
      decision: 'approve',
    });
    expect([late.status, late.body['code']]).toEqual([409, 'approval_not_pending']);
    const after = await member.get<{ status: string }>(
      `/v1/threads/${ids.threadId}/runs/${ids.runId}`,
    );
    expect(after.body.status).toBe('cancelled');
  }, 30_000);
});
