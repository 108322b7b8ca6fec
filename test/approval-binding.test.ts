import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
  waitForRun,
} from './support/api-client.ts';
import { startMcpAuthServer } from './support/mcp-auth-server.ts';
import { testOperatorKey } from './support/test-brigade.ts';
import {
  type LoggedServer,
  startLoggedServer,
  startUpstream,
  type UpstreamRequest,
} from './support/tool-fixtures.ts';

/**
 * A user approves a call as it was shown: its tool, its arguments, and the tool's definition
 * at that moment. An admin who edits the tool while the approval waits (another URL, say) must
 * not have the user's approval carry out the edited call: the run resumes with the call
 * refused (`approval_outdated`, nothing sent), and the model may ask again.
 */
let upstream: { url: string; requests: UpstreamRequest[]; close(): Promise<void> };
let server: LoggedServer;
let admin: ApiClient;
let member: ApiClient;

interface ApprovalBody {
  id: string;
  runId: string;
  argumentsHash: string;
}

interface StepBody {
  type: string;
  tool?: { name: string | null; status: string; error?: { code: string | null } };
}

beforeAll(async () => {
  upstream = await startUpstream(() => ({ ok: true }));
  server = await startLoggedServer();
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'approval-binding');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  member = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await upstream?.close();
});

async function pendingCall(agentId: string, input = 'call transfer {"v":"x"}') {
  const thread = await member.post<Created>('/v1/threads', {});
  const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
    agentId,
    input,
  });
  const ids = { threadId: thread.body.id, runId: run.body.id };
  await waitForRun(member, ids, ['requires_action']);
  const pending = await member.get<{ data: ApprovalBody[] }>('/v1/approvals');
  const approval = pending.body.data.find((item) => item.runId === run.body.id);
  if (approval === undefined) throw new Error('no pending approval');
  return { ids, approval };
}

describe('an approval and the tool it was given for', () => {
  it('refuses the approved call when the tool was edited meanwhile, and runs it otherwise', async () => {
    const tool = await admin.post<Created>('/v1/tools', {
      name: 'transfer',
      description: 'Moves money.',
      risk: 'write',
      urlTemplate: `${upstream.url}/approved?v={v}`,
      inputSchema: { type: 'object', properties: { v: { type: 'string' } } },
    });
    expect(tool.status, JSON.stringify(tool.body)).toBe(201);
    const agent = await admin.post<Created>('/v1/agents', {
      name: 'banker',
      tools: ['transfer'],
      approvalRequiredTools: ['transfer'],
    });
    expect(agent.status, JSON.stringify(agent.body)).toBe(201);

    const before = upstream.requests.length;
    const edited = await pendingCall(agent.body.id);
    const patched = await admin.request('PATCH', `/v1/tools/${tool.body.id}`, {
      urlTemplate: `${upstream.url}/changed?v={v}`,
    });
    expect(patched.status).toBe(200);
    const decided = await member.post(`/v1/approvals/${edited.approval.id}/decision`, {
      decision: 'approve',
      argumentsHash: edited.approval.argumentsHash,
    });
    expect(decided.status).toBe(200);
    const finished = await waitForRun(member, edited.ids, ['completed', 'failed']);
    expect(finished.status).toBe('completed');
    expect(upstream.requests.length).toBe(before);
    const steps = await member.get<{ data: StepBody[] }>(
      `/v1/threads/${edited.ids.threadId}/runs/${edited.ids.runId}/steps`,
    );
    const step = steps.body.data.find((candidate) => candidate.type === 'tool');
    expect(step?.tool).toMatchObject({
      name: 'transfer',
      status: 'error',
      error: { code: 'approval_outdated' },
    });

    // Unchanged since the request: the approval carries the call out.
    const unchanged = await pendingCall(agent.body.id);
    await member.post(`/v1/approvals/${unchanged.approval.id}/decision`, {
      decision: 'approve',
      argumentsHash: unchanged.approval.argumentsHash,
    });
    expect((await waitForRun(member, unchanged.ids, ['completed', 'failed'])).status).toBe(
      'completed',
    );
    expect(upstream.requests.slice(before).map((request) => request.url)).toEqual(['/changed?v=x']);
  });

  it('refuses the approved call of an MCP server registered again elsewhere under its name', async () => {
    const first = await startMcpAuthServer();
    const second = await startMcpAuthServer();
    try {
      const registered = await admin.post<Created>('/v1/mcp-servers', {
        name: 'pinger',
        url: first.url,
      });
      expect(registered.status, JSON.stringify(registered.body)).toBe(201);
      const agent = await admin.post<Created>('/v1/agents', {
        name: 'pinging',
        tools: ['mcp:pinger:ping'],
        approvalRequiredTools: ['mcp:pinger:ping'],
      });
      expect(agent.status, JSON.stringify(agent.body)).toBe(201);
      const input = 'call mcp:pinger:ping {"text":"hi"}';
      const moved = await pendingCall(agent.body.id, input);
      expect((await admin.request('DELETE', `/v1/mcp-servers/${registered.body.id}`)).status).toBe(
        204,
      );
      const again = await admin.post('/v1/mcp-servers', { name: 'pinger', url: second.url });
      expect(again.status, JSON.stringify(again.body)).toBe(201);
      await member.post(`/v1/approvals/${moved.approval.id}/decision`, {
        decision: 'approve',
        argumentsHash: moved.approval.argumentsHash,
      });
      expect((await waitForRun(member, moved.ids, ['completed', 'failed'])).status).toBe(
        'completed',
      );
      const steps = await member.get<{ data: StepBody[] }>(
        `/v1/threads/${moved.ids.threadId}/runs/${moved.ids.runId}/steps`,
      );
      expect(steps.body.data.find((step) => step.type === 'tool')?.tool).toMatchObject({
        status: 'error',
        error: { code: 'approval_outdated' },
      });
    } finally {
      await first.close();
      await second.close();
    }
  });

  it('binds a call asked for before the agent stopped requiring approval: outdated when approved, refused when rejected', async () => {
    const tool = await admin.post<Created>('/v1/tools', {
      name: 'pay',
      description: 'Pays.',
      risk: 'write',
      urlTemplate: `${upstream.url}/pay?v={v}`,
      inputSchema: { type: 'object', properties: { v: { type: 'string' } } },
    });
    expect(tool.status, JSON.stringify(tool.body)).toBe(201);
    const agent = await admin.post<Created>('/v1/agents', {
      name: 'payer',
      tools: ['pay'],
      approvalRequiredTools: ['pay'],
    });
    expect(agent.status, JSON.stringify(agent.body)).toBe(201);
    const before = upstream.requests.length;
    const input = 'call pay {"v":"y"}';
    const approved = await pendingCall(agent.body.id, input);
    const rejected = await pendingCall(agent.body.id, input);
    const relaxed = await admin.request('PATCH', `/v1/agents/${agent.body.id}`, {
      approvalRequiredTools: [],
    });
    expect(relaxed.status).toBe(200);
    await member.post(`/v1/approvals/${approved.approval.id}/decision`, {
      decision: 'approve',
      argumentsHash: approved.approval.argumentsHash,
    });
    await member.post(`/v1/approvals/${rejected.approval.id}/decision`, {
      decision: 'reject',
      reason: 'no',
    });
    const toolStep = async (ids: { threadId: string; runId: string }) => {
      expect((await waitForRun(member, ids, ['completed', 'failed'])).status).toBe('completed');
      const steps = await member.get<{ data: StepBody[] }>(
        `/v1/threads/${ids.threadId}/runs/${ids.runId}/steps`,
      );
      return steps.body.data.find((step) => step.type === 'tool')?.tool;
    };
    // Approved under rules that changed: refused as outdated (the model may call again).
    expect(await toolStep(approved.ids)).toMatchObject({
      status: 'error',
      error: { code: 'approval_outdated' },
    });
    // Rejected: the user's no stands, whatever the rules say now.
    expect(await toolStep(rejected.ids)).toMatchObject({
      status: 'error',
      error: { code: 'rejected' },
    });
    expect(upstream.requests.length).toBe(before);
    // A new call under the relaxed rules runs without asking.
    const thread = await member.post<Created>('/v1/threads', {});
    const free = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId: agent.body.id,
      input,
    });
    expect(await toolStep({ threadId: thread.body.id, runId: free.body.id })).toMatchObject({
      status: 'ok',
    });
    expect(upstream.requests.slice(before).map((request) => request.url)).toEqual(['/pay?v=y']);
  });
});
