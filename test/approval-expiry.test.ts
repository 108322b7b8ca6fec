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

/**
 * Approval expiry through the public API: a short `runs.approvalTtlSeconds`, and two Brigade
 * processes on one database both sweeping, so every expiry must happen exactly once.
 */
const ttlSeconds = 2;
const file = {
  runs: { pollIntervalMs: 50, approvalTtlSeconds: ttlSeconds, approvalSweepMs: 100 },
};

let first: TestServer;
let second: TestServer;
let tenantId: string;
let admin: ApiClient;
let member: ApiClient;
let memberOnSecond: ApiClient;
let agentId: string;

interface AuditEvent {
  seq: number;
  action: string;
  actorKind: string;
  targetId: string;
  outcome: string;
  reason: string | null;
  data: Record<string, unknown>;
}

async function auditLog(): Promise<AuditEvent[]> {
  const events: AuditEvent[] = [];
  for (let after = 0; ; ) {
    const page = await admin.get<{ data: AuditEvent[] }>(
      `/v1/tenants/${tenantId}/audit-events?after=${after}&limit=500`,
    );
    expect(page.status).toBe(200);
    events.push(...page.body.data);
    const last = page.body.data.at(-1);
    if (last === undefined || page.body.data.length < 500) return events;
    after = last.seq;
  }
}

async function startParkedRun(client: ApiClient, expression: string) {
  const thread = await client.post<Created>('/v1/threads', {});
  const run = await client.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
    agentId,
    input: `call calculator {"expression":"${expression}"}`,
  });
  expect(run.status).toBe(201);
  return { threadId: thread.body.id, runId: run.body.id };
}

async function answer(client: ApiClient, threadId: string) {
  const messages = await client.get<{ data: { content: { text?: string }[] }[] }>(
    `/v1/threads/${threadId}/messages`,
  );
  return messages.body.data.at(-1)?.content[0]?.text ?? '';
}

beforeAll(async () => {
  first = await startTestServer(file);
  second = await startTestServer(file, { database: first.database });
  const operator = apiClient(first.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'expiry');
  admin = apiClient(first.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  const user = await seedUser(operator, { tenantId, role: 'member' });
  member = apiClient(first.url, user.secret);
  memberOnSecond = apiClient(second.url, user.secret);
  agentId = (
    await admin.post<Created>('/v1/agents', {
      name: 'careful',
      tools: ['calculator'],
      approvalRequiredTools: ['calculator'],
    })
  ).body.id;
}, 120_000);

afterAll(async () => {
  await second?.stop();
  await first?.stop();
});

describe('approval expiry', () => {
  it('expires an undecided approval: no longer listed, audited, and the model is told', async () => {
    const ids = await startParkedRun(member, '6*7');
    await waitForRun(member, ids, ['requires_action']);
    const pending = await member.get<{ data: { id: string; runId: string; expiresAt: string }[] }>(
      '/v1/approvals',
    );
    const approval = pending.body.data.find((item) => item.runId === ids.runId);
    expect(approval).toBeDefined();
    const lifetime = Date.parse(approval?.expiresAt ?? '') - Date.now();
    expect(lifetime).toBeLessThanOrEqual(ttlSeconds * 1_000);
    // Nobody decides: the sweep (not a decision) ends the wait and the run goes on.
    const done = await waitForRun(member, ids, ['completed', 'failed']);
    expect(done.status).toBe('completed');
    expect(await answer(member, ids.threadId)).toContain('approval_expired');
    const after = await member.get<{ data: { id: string }[] }>('/v1/approvals');
    expect(after.body.data.map((item) => item.id)).not.toContain(approval?.id);
    // Too late to decide now.
    const late = await member.post(`/v1/approvals/${approval?.id}/decision`, {
      decision: 'approve',
    });
    expect(late.status).toBe(409);
    const events = await member.get<string>(`/v1/threads/${ids.threadId}/runs/${ids.runId}/events`);
    const text = String(events.body);
    expect(text).toContain('"status":"expired"');
    expect(text).toContain('run-completed');
    const audit = await auditLog();
    const expired = audit.filter(
      (event) => event.action === 'approval.expired' && event.targetId === approval?.id,
    );
    expect(expired).toHaveLength(1);
    expect(expired[0]).toMatchObject({
      actorKind: 'system',
      outcome: 'failure',
      reason: 'approval_expired',
      data: { runId: ids.runId, toolName: 'calculator' },
    });
    const called = audit.find(
      (event) => event.action === 'tool.called' && event.data['runId'] === ids.runId,
    );
    expect(called).toMatchObject({
      outcome: 'denied',
      reason: 'approval_expired',
      data: { approvalId: approval?.id, outcome: 'approval_expired' },
    });
  });

  it('expires each approval exactly once with two processes sweeping', async () => {
    const runs = await Promise.all(
      Array.from({ length: 8 }, (_, index) =>
        startParkedRun(index % 2 === 0 ? member : memberOnSecond, `${index}+1`),
      ),
    );
    for (const ids of runs) {
      const done = await waitForRun(member, ids, ['completed', 'failed']);
      expect(done.status).toBe('completed');
      expect(await answer(member, ids.threadId)).toContain('approval_expired');
    }
    const audit = await auditLog();
    for (const ids of runs) {
      const expired = audit.filter(
        (event) => event.action === 'approval.expired' && event.data['runId'] === ids.runId,
      );
      expect(expired).toHaveLength(1);
      const events = String(
        (await member.get<string>(`/v1/threads/${ids.threadId}/runs/${ids.runId}/events`)).body,
      );
      expect(events.match(/"status":"expired"/g)).toHaveLength(1);
      expect(events.match(/approval-requested/g)).toHaveLength(1);
    }
    expect((await member.get<{ data: unknown[] }>('/v1/approvals')).body.data).toEqual([]);
  });

  it('lets a decision in time win over the expiry', async () => {
    const ids = await startParkedRun(member, '2*3');
    await waitForRun(member, ids, ['requires_action']);
    const pending = await member.get<{ data: { id: string; runId: string }[] }>('/v1/approvals');
    const approval = pending.body.data.find((item) => item.runId === ids.runId);
    const decided = await member.post(`/v1/approvals/${approval?.id}/decision`, {
      decision: 'approve',
    });
    expect(decided.status).toBe(200);
    await waitForRun(member, ids, ['completed']);
    expect(await answer(member, ids.threadId)).toBe('calculator returned: {"result":6}');
    // Well past the expiry, nothing expired it afterwards.
    await new Promise((resolve) => setTimeout(resolve, ttlSeconds * 1_000 + 500));
    const audit = await auditLog();
    expect(
      audit.filter(
        (event) => event.action === 'approval.expired' && event.targetId === approval?.id,
      ),
    ).toEqual([]);
  });
});
