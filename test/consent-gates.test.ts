import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
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
 * Features that need consent check it, through the public API: tools an agent lists in
 * `consentRequiredTools` and HTTP tools defined with `requiresConsent` are refused with
 * `consent_required` until the calling user granted `tool:<name>` for every agent or the
 * calling one; content capture honours a consent scoped to the agent; and long-term memory's
 * refusal carries its code to the run's step.
 */
let server: TestServer;
let upstream: Server;
const received: string[] = [];
let operator: ApiClient;
let tenantId: string;
let owner: ApiClient;
let admin: ApiClient;
let agentId: string;
/** Another agent of the tenant: a consent scoped to it covers no other. */
let otherAgentId: string;

interface Step {
  type: string;
  tool?: { status: string; error?: { message: string; code: string | null } };
}

interface AuditEvent {
  action: string;
  targetId: string;
  outcome: string;
  reason: string | null;
}

beforeAll(async () => {
  upstream = createServer((request, response) => {
    received.push(`${request.method} ${request.url}`);
    response.setHeader('content-type', 'application/json');
    response.end('{"weather":"sunny"}');
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  server = await startTestServer({
    runs: { pollIntervalMs: 50 },
    tools: { tenantHttp: { allowedHosts: ['127.0.0.1'] } },
  });
  operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'consent-gates');
  owner = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'owner' })).secret);
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  const port = (upstream.address() as AddressInfo).port;
  const tool = await admin.post('/v1/tools', {
    name: 'weather',
    description: 'The weather.',
    risk: 'read',
    urlTemplate: `http://127.0.0.1:${port}/weather`,
    inputSchema: { type: 'object', properties: {}, additionalProperties: false },
    requiresConsent: true,
  });
  expect(tool.status, JSON.stringify(tool.body)).toBe(201);
  expect(tool.body).toMatchObject({ requiresConsent: true });
  const agent = await admin.post<Created & { consentRequiredTools: string[] }>('/v1/agents', {
    name: 'consenting',
    model: 'local',
    tools: ['calculator', 'current_time', 'weather', 'memory_save'],
    consentRequiredTools: ['calculator'],
  });
  expect(agent.status, JSON.stringify(agent.body)).toBe(201);
  expect(agent.body.consentRequiredTools).toEqual(['calculator']);
  agentId = agent.body.id;
  otherAgentId = (await admin.post<Created>('/v1/agents', { name: 'other-agent' })).body.id;
});

afterAll(async () => {
  await server?.stop();
  await new Promise((resolve) => upstream?.close(resolve));
});

async function member(): Promise<ApiClient> {
  return apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
}

/** Runs `input` on a new thread of `client`; the run's tool step and the answer. */
async function run(client: ApiClient, input: string, agent = agentId) {
  const threadId = (await client.post<Created>('/v1/threads', {})).body.id;
  const created = await client.post<Created>(`/v1/threads/${threadId}/runs`, {
    agentId: agent,
    input,
  });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  const done = await waitForRun(client, { threadId, runId: created.body.id });
  expect(done.status).toBe('completed');
  const steps = await client.get<{ data: Step[] }>(
    `/v1/threads/${threadId}/runs/${created.body.id}/steps`,
  );
  const messages = await client.get<{ data: { content: { text?: string }[] }[] }>(
    `/v1/threads/${threadId}/messages`,
  );
  return {
    threadId,
    runId: created.body.id,
    tool: steps.body.data.find((step) => step.type === 'tool')?.tool,
    answer: messages.body.data.at(-1)?.content[0]?.text ?? '',
  };
}

async function grant(client: ApiClient, purpose: string, scope = '*') {
  const granted = await client.post<Created>('/v1/me/consents', { purpose, scope, version: '1' });
  expect(granted.status, JSON.stringify(granted.body)).toBe(201);
  return granted.body.id;
}

describe('tools that need consent', () => {
  it('refuses a tool the agent lists until the user consents for this agent, and again after revocation', async () => {
    const user = await member();
    const calculate = 'call calculator {"expression":"2+3"}';
    const refused = await run(user, calculate);
    expect(refused.tool).toMatchObject({
      status: 'error',
      error: { code: 'consent_required' },
    });
    expect(refused.tool?.error?.message).toContain("'tool:calculator'");
    expect(refused.answer).toMatch(/calculator failed: .*consent_required/);
    // Tools the agent does not list need no consent.
    expect((await run(user, 'call current_time {}')).tool?.status).toBe('ok');

    // A consent for another agent does not cover this one.
    await grant(user, 'tool:calculator', otherAgentId);
    expect((await run(user, calculate)).tool?.error?.code).toBe('consent_required');
    // A consent scoped to this agent does.
    const scoped = await grant(user, 'tool:calculator', agentId);
    const allowed = await run(user, calculate);
    expect(allowed.tool?.status).toBe('ok');
    expect(allowed.answer).toContain('5');

    const revoked = await user.post(`/v1/me/consents/${scoped}/revoke`);
    expect(revoked.status).toBe(200);
    expect((await run(user, calculate)).tool?.error?.code).toBe('consent_required');

    // Every refusal is audited as the call's outcome.
    const log = await admin.get<{ data: AuditEvent[] }>(
      `/v1/tenants/${tenantId}/audit-events?limit=500`,
    );
    const calls = log.body.data.filter(
      (event) => event.action === 'tool.called' && event.targetId === 'calculator',
    );
    expect(calls.map((event) => [event.outcome, event.reason])).toEqual([
      ['denied', 'consent_required'],
      ['denied', 'consent_required'],
      ['success', null],
      ['denied', 'consent_required'],
    ]);
  });

  it('refuses an HTTP tool defined with requiresConsent, sending nothing, until the user consents', async () => {
    const user = await member();
    const before = received.length;
    const refused = await run(user, 'call weather {}');
    expect(refused.tool?.error?.code).toBe('consent_required');
    expect(received.length).toBe(before);
    await grant(user, 'tool:weather');
    const allowed = await run(user, 'call weather {}');
    expect(allowed.tool?.status).toBe('ok');
    expect(allowed.answer).toContain('sunny');
    expect(received.length).toBe(before + 1);
  });

  it('refuses an agent naming an unknown tool in consentRequiredTools', async () => {
    const response = await admin.post<{ code: string }>('/v1/agents', {
      name: 'unknown-consent',
      tools: ['calculator'],
      consentRequiredTools: ['no_such_tool'],
    });
    expect(response.status).toBe(422);
    expect(response.body.code).toBe('unknown_tool');
  });
});

describe('long-term memory without consent', () => {
  it('gives the tool step the code consent_required', async () => {
    const user = await member();
    const refused = await run(user, 'call memory_save {"key":"k","note":"n","scope":"user"}');
    expect(refused.tool).toMatchObject({
      status: 'error',
      error: { code: 'consent_required' },
    });
  });
});

describe('content capture', () => {
  type Span = { name: string; attributes: Record<string, unknown> };

  async function chatSpan(client: ApiClient, input: string): Promise<Span | undefined> {
    const { threadId, runId } = await run(client, input);
    for (let attempt = 0; attempt < 100; attempt += 1) {
      const trace = await client.get<{ spans: Span[] }>(
        `/v1/threads/${threadId}/runs/${runId}/trace`,
      );
      const chat = trace.body.spans.find((span) => span.name.startsWith('chat'));
      if (chat !== undefined) return chat;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return undefined;
  }

  it('captures for a consent scoped to the agent, and not for one scoped to another agent', async () => {
    const enabled = await owner.request('PATCH', `/v1/tenants/${tenantId}`, {
      captureContent: true,
    });
    expect(enabled.status).toBe(200);
    const elsewhere = await member();
    await grant(elsewhere, 'content_capture', otherAgentId);
    const notCaptured = await chatSpan(elsewhere, 'SCOPECANARY one');
    expect(notCaptured).toBeDefined();
    expect(notCaptured?.attributes['gen_ai.input.messages']).toBeUndefined();

    const here = await member();
    await grant(here, 'content_capture', agentId);
    const captured = await chatSpan(here, 'SCOPECANARY two');
    expect(String(captured?.attributes['gen_ai.input.messages'])).toContain('SCOPECANARY two');
  });
});
