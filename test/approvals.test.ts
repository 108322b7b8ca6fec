import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { plainArgumentsHash } from '../src/domain/tools/arguments-hash.ts';
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
let tenantId: string;
let admin: ApiClient;
let member: ApiClient;
let other: ApiClient;
let agentId: string;
let freeAgentId: string;

interface ApprovalBody {
  id: string;
  runId: string;
  toolCallId: string;
  toolName: string;
  arguments: Record<string, unknown>;
  argumentsHash: string;
  status: string;
}

async function startCalculation(expression: string) {
  const thread = await member.post<Created>('/v1/threads', {});
  const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
    agentId,
    input: `call calculator {"expression":"${expression}"}`,
  });
  const ids = { threadId: thread.body.id, runId: run.body.id };
  await waitForRun(member, ids, ['requires_action']);
  const pending = await member.get<{ data: ApprovalBody[] }>('/v1/approvals');
  const approval = pending.body.data.find((item) => item.runId === run.body.id);
  if (approval === undefined) throw new Error('no pending approval');
  return { ids, approval };
}

interface AuditEvent {
  action: string;
  actorKind: string;
  actorUserId: string | null;
  targetId: string;
  outcome: string;
  reason: string | null;
  data: Record<string, unknown>;
}

/** The audit events with `action` (default `approval.decided`) and target, via the audit API. */
async function decisionsAudited(
  targetId: string,
  action = 'approval.decided',
): Promise<AuditEvent[]> {
  const log = await admin.get<{ data: AuditEvent[] }>(
    `/v1/tenants/${tenantId}/audit-events?limit=500`,
  );
  expect(log.status).toBe(200);
  return log.body.data.filter((event) => event.action === action && event.targetId === targetId);
}

async function answer(ids: { threadId: string }) {
  const messages = await member.get<{ data: { content: { text?: string }[] }[] }>(
    `/v1/threads/${ids.threadId}/messages`,
  );
  return messages.body.data.at(-1)?.content[0]?.text;
}

beforeAll(async () => {
  server = await startTestServer({ runs: { pollIntervalMs: 50, concurrency: 1 } });
  const operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'approvals');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  member = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  other = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  agentId = (
    await admin.post<Created>('/v1/agents', {
      name: 'careful',
      tools: ['calculator'],
      approvalRequiredTools: ['calculator'],
    })
  ).body.id;
  freeAgentId = (await admin.post<Created>('/v1/agents', { name: 'free', tools: ['calculator'] }))
    .body.id;
});

afterAll(async () => {
  await server?.stop();
});

describe('approvals', () => {
  it('pauses the run showing the exact call, and runs it once approved', async () => {
    const { ids, approval } = await startCalculation('6*7');
    expect(approval).toMatchObject({
      toolName: 'calculator',
      arguments: { expression: '6*7' },
      status: 'pending',
    });
    expect(approval.argumentsHash).toMatch(/^[0-9a-f]{64}$/);
    const decided = await member.post(`/v1/approvals/${approval.id}/decision`, {
      decision: 'approve',
      argumentsHash: approval.argumentsHash,
    });
    expect(decided.status).toBe(200);
    await waitForRun(member, ids, ['completed']);
    expect(await answer(ids)).toBe('calculator returned: {"result":42}');
    const audited = await decisionsAudited(approval.id);
    expect(audited).toHaveLength(1);
    expect(audited[0]).toMatchObject({
      actorKind: 'user',
      outcome: 'success',
      data: {
        runId: ids.runId,
        toolName: 'calculator',
        status: 'approved',
        argumentsHash: approval.argumentsHash,
        edited: false,
      },
    });
    expect(audited[0]?.data).not.toHaveProperty('editedArgumentsHash');
    // The request was audited too, with the policy version the call then ran under.
    const requested = await decisionsAudited(approval.id, 'approval.requested');
    expect(requested).toHaveLength(1);
    expect(requested[0]).toMatchObject({
      actorKind: 'user',
      outcome: 'success',
      data: {
        runId: ids.runId,
        toolName: 'calculator',
        argumentsHash: approval.argumentsHash,
        trigger: 'agent_requires_approval',
      },
    });
    const policyVersion = requested[0]?.data['policyVersion'];
    expect(policyVersion).toMatch(/^sha256:[0-9a-f]{64}$/);
    const called = await decisionsAudited('calculator', 'tool.called');
    const call = called.find((event) => event.data['approvalId'] === approval.id);
    expect(call?.data).toMatchObject({ policyVersion, argumentsHash: approval.argumentsHash });
    // Another agent that needs no approval gates the same tool under another policy.
    const thread = await member.post<Created>('/v1/threads', {});
    const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId: freeAgentId,
      input: 'call calculator {"expression":"6*7"}',
    });
    await waitForRun(member, { threadId: thread.body.id, runId: run.body.id }, ['completed']);
    const free = (await decisionsAudited('calculator', 'tool.called')).find(
      (event) => event.data['runId'] === run.body.id,
    );
    expect(free?.data['policyVersion']).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(free?.data['policyVersion']).not.toBe(policyVersion);
  });

  it('tells the model when the user rejects, and runs nothing', async () => {
    const { ids, approval } = await startCalculation('1+1');
    await member.post(`/v1/approvals/${approval.id}/decision`, {
      decision: 'reject',
      reason: 'not now',
    });
    await waitForRun(member, ids, ['completed']);
    expect(await answer(ids)).toContain('The user rejected this call: not now');
    const audited = await decisionsAudited(approval.id);
    expect(audited).toHaveLength(1);
    expect(audited[0]).toMatchObject({
      reason: 'not now',
      data: { status: 'rejected', edited: false },
    });
    const steps = await member.get<{ data: { type: string; tool?: Record<string, unknown> }[] }>(
      `/v1/threads/${ids.threadId}/runs/${ids.runId}/steps`,
    );
    const tool = steps.body.data.find((step) => step.type === 'tool')?.tool;
    expect(tool).toMatchObject({
      status: 'error',
      error: { code: 'rejected' },
      approval: { id: approval.id, status: 'rejected' },
    });
    expect(tool?.['approval']).not.toHaveProperty('editedInput');
  });

  it('runs the edited arguments, re-validated against the tool schema', async () => {
    const { ids, approval } = await startCalculation('2+2');
    const invalid = await member.post(`/v1/approvals/${approval.id}/decision`, {
      decision: 'edit',
      arguments: { nope: 1 },
    });
    expect(invalid.status).toBe(422);
    const edited = await member.post(`/v1/approvals/${approval.id}/decision`, {
      decision: 'edit',
      arguments: { expression: '10*10' },
    });
    expect(edited.status).toBe(200);
    await waitForRun(member, ids, ['completed']);
    expect(await answer(ids)).toBe('calculator returned: {"result":100}');
    // One decision audited (the refused edit changed nothing), with the hash of what ran
    // instead of the arguments themselves.
    const audited = await decisionsAudited(approval.id);
    expect(audited).toHaveLength(1);
    expect(audited[0]?.data).toMatchObject({
      status: 'approved',
      edited: true,
      argumentsHash: approval.argumentsHash,
      editedArgumentsHash: plainArgumentsHash({ expression: '10*10' }),
    });
    expect(JSON.stringify(audited[0])).not.toContain('10*10');
    // The run's steps show what the model asked for and what ran after the edit.
    const steps = await member.get<{ data: { type: string; tool?: Record<string, unknown> }[] }>(
      `/v1/threads/${ids.threadId}/runs/${ids.runId}/steps`,
    );
    const tool = steps.body.data.find((step) => step.type === 'tool')?.tool;
    expect(tool).toMatchObject({
      input: { expression: '2+2' },
      status: 'ok',
      approval: { id: approval.id, status: 'approved', editedInput: { expression: '10*10' } },
    });
    expect(JSON.stringify(tool?.['output'])).toContain('100');
  });

  it('refuses a decision bound to other arguments, a second decision, and other users', async () => {
    const { ids, approval } = await startCalculation('3+3');
    const stale = await member.post(`/v1/approvals/${approval.id}/decision`, {
      decision: 'approve',
      argumentsHash: '0'.repeat(64),
    });
    expect(stale.status).toBe(409);
    // The refusal is audited (with the pending call's hash, not the one presented).
    const refusals = await decisionsAudited(approval.id, 'approval.decision_refused');
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toMatchObject({
      actorKind: 'user',
      outcome: 'denied',
      reason: 'arguments_mismatch',
      data: { decision: 'approve', status: 'pending', argumentsHash: approval.argumentsHash },
    });
    expect(JSON.stringify(refusals[0])).not.toContain('0'.repeat(64));
    expect(
      (await other.post(`/v1/approvals/${approval.id}/decision`, { decision: 'approve' })).status,
    ).toBe(404);
    expect((await other.get<{ data: unknown[] }>('/v1/approvals')).body.data).toHaveLength(0);
    expect(
      (await member.post(`/v1/approvals/${approval.id}/decision`, { decision: 'approve' })).status,
    ).toBe(200);
    expect(
      (await member.post(`/v1/approvals/${approval.id}/decision`, { decision: 'approve' })).status,
    ).toBe(409);
    expect(
      (await decisionsAudited(approval.id, 'approval.decision_refused')).map(
        (event) => event.reason,
      ),
    ).toEqual(['arguments_mismatch', 'not_pending']);
    await waitForRun(member, ids, ['completed']);
  });

  it('holds no concurrency slot while waiting', async () => {
    // concurrency is 1: a run parked for approval must not block another thread's run.
    const { ids, approval } = await startCalculation('5+5');
    const thread = await member.post<Created>('/v1/threads', {});
    const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId: freeAgentId,
      input: 'hi',
    });
    await waitForRun(member, { threadId: thread.body.id, runId: run.body.id }, ['completed']);
    await member.post(`/v1/approvals/${approval.id}/decision`, { decision: 'approve' });
    await waitForRun(member, ids, ['completed']);
  });

  it('cancels a run that waits for approval', async () => {
    const { ids, approval } = await startCalculation('9-1');
    const cancelled = await member.post(`/v1/threads/${ids.threadId}/runs/${ids.runId}/cancel`);
    expect(cancelled.status).toBe(202);
    await waitForRun(member, ids, ['cancelled']);
    expect(
      (await member.post(`/v1/approvals/${approval.id}/decision`, { decision: 'approve' })).status,
    ).toBe(409);
  });

  it("ends a waiting run when its agent is deleted, as the agent's queued runs end", async () => {
    const doomed = (
      await admin.post<Created>('/v1/agents', {
        name: 'doomed',
        tools: ['calculator'],
        approvalRequiredTools: ['calculator'],
      })
    ).body.id;
    const thread = await member.post<Created>('/v1/threads', {});
    const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId: doomed,
      input: 'call calculator {"expression":"1+1"}',
    });
    const ids = { threadId: thread.body.id, runId: run.body.id };
    await waitForRun(member, ids, ['requires_action']);
    const pending = await member.get<{ data: ApprovalBody[] }>('/v1/approvals');
    const approval = pending.body.data.find((item) => item.runId === run.body.id);
    if (approval === undefined) throw new Error('no pending approval');
    expect((await admin.request('DELETE', `/v1/agents/${doomed}`)).status).toBe(204);
    // Before, the run stayed parked (its approval pending) until someone approved a call that
    // could never run, or the approval expired a day later.
    expect(await waitForRun(member, ids)).toMatchObject({
      status: 'failed',
      errorCode: 'agent_not_found',
    });
    const after = await member.get<{ data: ApprovalBody[] }>('/v1/approvals');
    expect(after.body.data.map((item) => item.id)).not.toContain(approval.id);
    expect(
      (await member.post(`/v1/approvals/${approval.id}/decision`, { decision: 'approve' })).body,
    ).toMatchObject({ code: 'approval_not_pending' });
    // Expired on the record, audited, and announced in the run's events.
    const expired = await decisionsAudited(approval.id, 'approval.expired');
    expect(expired.map((event) => event.reason)).toEqual(['agent_deleted']);
    const stream = await member.request<string>(
      'GET',
      `/v1/threads/${ids.threadId}/runs/${ids.runId}/events`,
    );
    expect(String(stream.body)).toContain('"reason":"agent_deleted"');
  });

  it('announces each step and call once across the pause and the resumed execution', async () => {
    const { ids, approval } = await startCalculation('2+3');
    expect(
      (await member.post(`/v1/approvals/${approval.id}/decision`, { decision: 'approve' })).status,
    ).toBe(200);
    await waitForRun(member, ids, ['completed']);
    const stream = await member.request<string>(
      'GET',
      `/v1/threads/${ids.threadId}/runs/${ids.runId}/events`,
    );
    const events = [...String(stream.body).matchAll(/^event: (.*)\ndata: (.*)$/gm)].map(
      (match) => ({
        type: match[1],
        data: JSON.parse(match[2] ?? '{}') as Record<string, unknown>,
      }),
    );
    const keyed = (type: string, field: string) =>
      events.filter((event) => event.type === type).map((event) => String(event.data[field]));
    // Before, the resumed execution replayed step 0 from its checkpoint and announced it (and the
    // approved call) a second time.
    expect(keyed('step-started', 'step')).toEqual(['0', '1']);
    expect(keyed('step-finished', 'step')).toEqual(['0', '1']);
    expect(keyed('tool-call-started', 'toolCallId')).toEqual([approval.toolCallId]);
    expect(keyed('tool-call-finished', 'toolCallId')).toEqual([approval.toolCallId]);
    expect(events.map((event) => event.type)).toContain('run-resumed');
  });
});
