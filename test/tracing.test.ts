import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockModelServer } from '../src/testing/index.ts';
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
 * Traces through the public API: the built-in span store behind getRunTrace, and OTLP export
 * to a collector (a small HTTP server standing in for one).
 */
let server: TestServer;
let collector: Server;
const exported: string[] = [];
let owner: { userId: string; secret: string };
let member: ApiClient;
let other: ApiClient;
let admin: ApiClient;
let tenantId: string;
let agentId: string;
let remoteAgentId: string;
let carefulAgentId: string;
let mock: Awaited<ReturnType<typeof createMockModelServer>>;
/** A provider key that must never show up in a span. */
const canary = `sk-canary-${'7'.repeat(24)}`;

type Span = {
  traceId: string;
  name: string;
  spanId: string;
  parentSpanId: string | null;
  status: string;
  attributes: Record<string, unknown>;
};

beforeAll(async () => {
  collector = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => {
      body += chunk.toString();
    });
    request.on('end', () => {
      exported.push(body);
      response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
  const port = (collector.address() as AddressInfo).port;
  mock = await createMockModelServer({ apiKey: canary });
  server = await startTestServer(
    {
      tracing: { otlpEndpoint: `http://127.0.0.1:${port}/v1/traces`, userAttribute: 'pseudonym' },
      providers: {
        mock: { type: 'openai-compatible', baseUrl: mock.url, apiKeyEnv: 'CANARY_KEY' },
      },
      runs: { pollIntervalMs: 50 },
    },
    { env: { CANARY_KEY: canary } },
  );
  const operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'traced');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  owner = await seedUser(operator, { tenantId, role: 'member' });
  member = apiClient(server.url, owner.secret);
  other = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  const agent = await admin.post<Created>('/v1/agents', { name: 'traced', tools: ['calculator'] });
  agentId = agent.body.id;
  remoteAgentId = (
    await admin.post<Created>('/v1/agents', { name: 'remote', model: 'mock:mock-model' })
  ).body.id;
  carefulAgentId = (
    await admin.post<Created>('/v1/agents', {
      name: 'careful',
      tools: ['calculator'],
      approvalRequiredTools: ['calculator'],
    })
  ).body.id;
});

/** A run's trace through getRunTrace, read until `ready` holds (spans are written in batches). */
async function traceOf(
  ids: { readonly threadId: string; readonly runId: string },
  ready: (spans: readonly Span[]) => boolean,
): Promise<Span[]> {
  const path = `/v1/threads/${ids.threadId}/runs/${ids.runId}/trace`;
  let spans: Span[] = [];
  for (let attempt = 0; attempt < 100; attempt += 1) {
    spans = (await member.get<{ spans: Span[] }>(path)).body.spans;
    if (ready(spans)) return spans;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return spans;
}

afterAll(async () => {
  await server?.stop();
  await mock?.close();
  await new Promise((resolve) => collector?.close(resolve));
});

describe('run traces', () => {
  it('joins the creating request, the run, its model calls and its tool call in one trace', async () => {
    const thread = await member.post<Created>('/v1/threads', {});
    const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId,
      input: 'call calculator {"expression":"6*7"}',
    });
    const traceId = run.headers.get('x-trace-id');
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    const done = await waitForRun(member, { threadId: thread.body.id, runId: run.body.id });
    expect(done.status).toBe('completed');
    const spans = await traceOf({ threadId: thread.body.id, runId: run.body.id }, (found) =>
      found.some((span) => span.name === 'invoke_agent traced'),
    );
    const names = spans.map((span) => span.name);
    expect(names.sort()).toEqual([
      'POST /v1/threads/:threadId/runs',
      'chat local',
      'chat local',
      'execute_tool calculator',
      'invoke_agent traced',
    ]);
    const request = spans.find((span) => span.name.startsWith('POST'));
    const root = spans.find((span) => span.name === 'invoke_agent traced');
    expect(request?.parentSpanId).toBeNull();
    expect(root?.parentSpanId).toBe(request?.spanId);
    for (const span of spans) {
      expect(span.traceId).toBe(traceId);
      expect(span.attributes['brigade.tenant.id']).toBe(tenantId);
      expect(span.attributes['brigade.thread.id']).toBe(thread.body.id);
      expect(span.attributes['brigade.run.id']).toBe(run.body.id);
      // Pseudonymous mode: no user id on spans, never the internal one either.
      expect(JSON.stringify(span.attributes)).not.toContain(owner.userId);
      expect(span.attributes['brigade.user.pseudonym']).toMatch(/^[0-9a-f]{32}$/);
      if (span !== root && span !== request) expect(span.parentSpanId).toBe(root?.spanId);
    }
    const chats = spans.filter((span) => span.name === 'chat local');
    expect(chats[0]?.attributes).toMatchObject({
      'gen_ai.operation.name': 'chat',
      'gen_ai.provider.name': 'local',
      'gen_ai.request.model': 'local',
      'brigade.attempts': 1,
    });
    expect(chats.map((chat) => chat.attributes['brigade.step.key']).sort()).toEqual([
      'model:0',
      'model:1',
    ]);
    expect(chats[0]?.attributes['gen_ai.usage.output_tokens']).toBeGreaterThan(0);
    const tool = spans.find((span) => span.name === 'execute_tool calculator');
    expect(tool?.attributes['brigade.tool.outcome']).toBe('ok');
    expect(tool?.attributes['brigade.step.key']).toBe(
      `tool:${String(tool?.attributes['gen_ai.tool.call.id'])}`,
    );
    // A later request on the run (waitForRun's reads) names its thread and run too.
    let read: { attributes: Record<string, unknown> } | undefined;
    for (let attempt = 0; attempt < 100 && read === undefined; attempt += 1) {
      const exported = await member.get<{
        spans: { name: string; attributes: Record<string, unknown> }[];
      }>('/v1/me/export');
      read = exported.body.spans.find(
        (span) =>
          span.name === 'GET /v1/threads/:threadId/runs/:runId' &&
          span.attributes['brigade.run.id'] === run.body.id,
      );
      if (read === undefined) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(read?.attributes['brigade.thread.id']).toBe(thread.body.id);
  });

  it('keeps a run resumed after an approval in the trace of the request that created it', async () => {
    const thread = await member.post<Created>('/v1/threads', {});
    const ids = { threadId: thread.body.id, runId: '' };
    const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId: carefulAgentId,
      input: 'call calculator {"expression":"6*7"}',
    });
    ids.runId = run.body.id;
    await waitForRun(member, ids, ['requires_action']);
    const pending = await member.get<{
      data: { id: string; runId: string; argumentsHash: string }[];
    }>('/v1/approvals');
    const approval = pending.body.data.find((item) => item.runId === ids.runId);
    const waiting = await traceOf(ids, (found) =>
      found.some((span) => span.name === 'invoke_agent careful'),
    );
    const asked = waiting.find((span) => span.name === 'execute_tool calculator');
    // It waits for the user: no error, and says so.
    expect(asked?.attributes['brigade.tool.outcome']).toBe('approval_required');
    expect(asked?.attributes['brigade.approval.id']).toBe(approval?.id);
    expect(asked?.status).not.toBe('error');
    const decided = await member.post(`/v1/approvals/${approval?.id}/decision`, {
      decision: 'approve',
      argumentsHash: approval?.argumentsHash,
    });
    expect(decided.status).toBe(200);
    expect((await waitForRun(member, ids)).status).toBe('completed');
    const spans = await traceOf(
      ids,
      (found) => found.filter((span) => span.name === 'invoke_agent careful').length === 2,
    );
    const request = spans.find((span) => span.name === 'POST /v1/threads/:threadId/runs');
    const executions = spans.filter((span) => span.name === 'invoke_agent careful');
    expect(executions).toHaveLength(2);
    for (const execution of executions) {
      expect(execution.traceId).toBe(run.headers.get('x-trace-id'));
      expect(execution.parentSpanId).toBe(request?.spanId);
    }
    const outcomes = spans
      .filter((span) => span.name === 'execute_tool calculator')
      .map((span) => span.attributes['brigade.tool.outcome']);
    expect(outcomes.sort()).toEqual(['approval_required', 'ok']);
  });

  it('shows a run’s trace to its user and its tenant’s owners and admins, no one else', async () => {
    const thread = await member.post<Created>('/v1/threads', {});
    const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId,
      input: 'hello',
    });
    const ids = { threadId: thread.body.id, runId: run.body.id };
    await waitForRun(member, ids);
    const path = `/v1/threads/${thread.body.id}/runs/${run.body.id}/trace`;
    const own = await traceOf(ids, (found) =>
      found.some((span) => span.name === 'invoke_agent traced'),
    );
    expect((await other.get(path)).status).toBe(404);
    const operator = apiClient(server.url, testOperatorKey);
    const owner = apiClient(
      server.url,
      (await seedUser(operator, { tenantId, role: 'owner' })).secret,
    );
    for (const reader of [admin, owner]) {
      const read = await reader.get<{ runId: string; spans: Span[] }>(path);
      expect(read.status).toBe(200);
      expect(read.body.runId).toBe(run.body.id);
      expect(read.body.spans.map((span) => span.spanId)).toEqual(own.map((span) => span.spanId));
    }
    // Not through another thread, nor from another tenant.
    const otherThread = await member.post<Created>('/v1/threads', {});
    const wrongThread = await admin.get(
      `/v1/threads/${otherThread.body.id}/runs/${run.body.id}/trace`,
    );
    expect(wrongThread.status).toBe(404);
    expect((wrongThread.body as { code?: string }).code).toBe('run_not_found');
    const elsewhere = await seedTenant(operator, 'traced-elsewhere');
    const foreignAdmin = apiClient(
      server.url,
      (await seedUser(operator, { tenantId: elsewhere, role: 'admin' })).secret,
    );
    expect((await foreignAdmin.get(path)).status).toBe(404);
    const viewer = apiClient(
      server.url,
      (await seedUser(operator, { tenantId, role: 'viewer' })).secret,
    );
    expect((await viewer.get(path)).status).toBe(404);
  });

  it('exports spans over OTLP/HTTP without any user id or secret', async () => {
    const thread = await member.post<Created>('/v1/threads', {});
    const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId: remoteAgentId,
      input: 'hello provider',
    });
    expect(
      (await waitForRun(member, { threadId: thread.body.id, runId: run.body.id })).status,
    ).toBe('completed');
    // The batch processor exports every 5 s.
    for (
      let attempt = 0;
      attempt < 150 && !exported.join('').includes('chat mock:mock-model');
      attempt += 1
    )
      await new Promise((resolve) => setTimeout(resolve, 100));
    const all = exported.join('\n');
    expect(all.length).toBeGreaterThan(0);
    expect(all).toContain('invoke_agent');
    expect(all).not.toContain(owner.userId);
    expect(all).not.toContain('brigade.user.internal_id');
    expect(all).toContain('chat mock:mock-model');
    expect(all).not.toContain(canary);
    const stored = await member.get(`/v1/threads/${thread.body.id}/runs/${run.body.id}/trace`);
    expect(JSON.stringify(stored.body)).not.toContain(canary);
  });

  it('puts redacted content on spans only when the tenant enabled it and the user consented', async () => {
    const operator = apiClient(server.url, testOperatorKey);
    const ownerClient = apiClient(
      server.url,
      (await seedUser(operator, { tenantId, role: 'owner' })).secret,
    );
    const writer = apiClient(
      server.url,
      (await seedUser(operator, { tenantId, role: 'member' })).secret,
    );
    const secretText = 'mail ada@example.org with key sk-proj-abcdefghijklmnopqrstuvwxyz123456';
    async function chatSpan(client: ApiClient): Promise<Span | undefined> {
      const thread = await client.post<Created>('/v1/threads', {});
      const run = await client.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
        agentId,
        input: secretText,
      });
      await waitForRun(client, { threadId: thread.body.id, runId: run.body.id });
      const path = `/v1/threads/${thread.body.id}/runs/${run.body.id}/trace`;
      for (let attempt = 0; attempt < 100; attempt += 1) {
        const chat = (await client.get<{ spans: Span[] }>(path)).body.spans.find((span) =>
          span.name.startsWith('chat'),
        );
        if (chat !== undefined) return chat;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      return undefined;
    }
    // Off by default.
    expect((await chatSpan(member))?.attributes['gen_ai.input.messages']).toBeUndefined();
    const enabled = await ownerClient.request('PATCH', `/v1/tenants/${tenantId}`, {
      captureContent: true,
    });
    expect(enabled.status).toBe(200);
    // The tenant turned it on, but this user has not consented (and nothing is cached for them).
    const consenting = apiClient(
      server.url,
      (await seedUser(operator, { tenantId, role: 'member' })).secret,
    );
    const granted = await consenting.post('/v1/me/consents', {
      purpose: 'content_capture',
      version: '1',
    });
    expect(granted.status).toBe(201);
    expect((await chatSpan(writer))?.attributes['gen_ai.input.messages']).toBeUndefined();
    const captured = await chatSpan(consenting);
    const input = String(captured?.attributes['gen_ai.input.messages']);
    expect(input).toContain('mail [email] with key');
    expect(input).not.toContain('ada@example.org');
    expect(input).not.toContain('sk-proj-abcdefghijklmnopqrstuvwxyz123456');
    expect(String(captured?.attributes['gen_ai.output.messages'])).not.toContain('ada@example.org');
  });
});

describe('captured content', () => {
  it('goes with the thread that held it and with the consent that allowed it', async () => {
    const operator = apiClient(server.url, testOperatorKey);
    const ownerClient = apiClient(
      server.url,
      (await seedUser(operator, { tenantId, role: 'owner' })).secret,
    );
    expect(
      (await ownerClient.request('PATCH', `/v1/tenants/${tenantId}`, { captureContent: true }))
        .status,
    ).toBe(200);
    const user = apiClient(
      server.url,
      (await seedUser(operator, { tenantId, role: 'member' })).secret,
    );
    const consent = await user.post<Created>('/v1/me/consents', {
      purpose: 'content_capture',
      version: '1',
    });
    expect(consent.status).toBe(201);
    const exported = async () => JSON.stringify((await user.get('/v1/me/export')).body);
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    async function converse(text: string) {
      const thread = await user.post<Created>('/v1/threads', {});
      const run = await user.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
        agentId,
        input: text,
      });
      const ids = { threadId: thread.body.id, runId: run.body.id };
      expect((await waitForRun(user, ids)).status).toBe('completed');
      return ids;
    }
    async function capturedInTrace(ids: { threadId: string; runId: string }, text: string) {
      const path = `/v1/threads/${ids.threadId}/runs/${ids.runId}/trace`;
      for (let attempt = 0; attempt < 100; attempt += 1) {
        const trace = await user.get<{ spans: Span[] }>(path);
        const chat = trace.body.spans.find((span) => span.name.startsWith('chat'));
        if (chat !== undefined && trace.body.spans.some((span) => span.name.startsWith('invoke')))
          return String(chat.attributes['gen_ai.input.messages'] ?? '').includes(text);
        await sleep(100);
      }
      throw new Error('the trace was never written');
    }

    // Stored, then the thread deleted: its runs' spans go with it.
    const stored = await converse('my diagnosis is THREADCANARYONE please keep it');
    expect(await capturedInTrace(stored, 'THREADCANARYONE')).toBe(true);
    expect(await exported()).toContain('THREADCANARYONE');
    expect((await user.request('DELETE', `/v1/threads/${stored.threadId}`)).status).toBe(204);
    expect(await exported()).not.toContain('THREADCANARYONE');
    // Deleted at once, while the run's spans are still on their way: they are not written.
    const fresh = await converse('my diagnosis is THREADCANARYTWO please keep it');
    expect((await user.request('DELETE', `/v1/threads/${fresh.threadId}`)).status).toBe(204);
    await sleep(2_500);
    const afterDeletion = await exported();
    expect(afterDeletion).not.toContain('THREADCANARYTWO');
    // (Usage records keep the run's id: they are the tenant's bill.)
    expect(JSON.stringify(JSON.parse(afterDeletion).spans)).not.toContain(fresh.runId);

    // Revoking the consent strips what it allowed from every stored span of the user.
    const kept = await converse('my diagnosis is CONSENTCANARYONE please keep it');
    expect(await capturedInTrace(kept, 'CONSENTCANARYONE')).toBe(true);
    const revoked = await user.post(`/v1/me/consents/${consent.body.id}/revoke`, {});
    expect(revoked.status).toBe(200);
    expect(await capturedInTrace(kept, 'CONSENTCANARYONE')).toBe(false);
    // A call right after the revocation (its process may still think capture is allowed for
    // a few seconds) stores no content either.
    const late = await converse('my diagnosis is CONSENTCANARYTWO please keep it');
    expect(await capturedInTrace(late, 'CONSENTCANARYTWO')).toBe(false);
    // (The messages themselves stay: they are the user's conversation, not a span.)
    const spans = JSON.stringify(JSON.parse(await exported()).spans);
    expect(spans).not.toContain('CONSENTCANARY');
    expect(spans).not.toContain('gen_ai.input.messages');
  });
});
