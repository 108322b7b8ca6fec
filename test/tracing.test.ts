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
let tenantId: string;
let agentId: string;
let remoteAgentId: string;
let mock: Awaited<ReturnType<typeof createMockModelServer>>;
/** A provider key that must never show up in a span. */
const canary = `sk-canary-${'7'.repeat(24)}`;

type Span = {
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
  const admin = apiClient(
    server.url,
    (await seedUser(operator, { tenantId, role: 'admin' })).secret,
  );
  owner = await seedUser(operator, { tenantId, role: 'member' });
  member = apiClient(server.url, owner.secret);
  other = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  const agent = await admin.post<Created>('/v1/agents', { name: 'traced', tools: ['calculator'] });
  agentId = agent.body.id;
  remoteAgentId = (
    await admin.post<Created>('/v1/agents', { name: 'remote', model: 'mock:mock-model' })
  ).body.id;
});

afterAll(async () => {
  await server?.stop();
  await mock?.close();
  await new Promise((resolve) => collector?.close(resolve));
});

describe('run traces', () => {
  it('shows the run, its model calls and its tool call, each carrying tenant and run', async () => {
    const thread = await member.post<Created>('/v1/threads', {});
    const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId,
      input: 'call calculator {"expression":"6*7"}',
    });
    expect(run.headers.get('x-trace-id')).toMatch(/^[0-9a-f]{32}$/);
    const done = await waitForRun(member, { threadId: thread.body.id, runId: run.body.id });
    expect(done.status).toBe('completed');
    const path = `/v1/threads/${thread.body.id}/runs/${run.body.id}/trace`;
    let spans: Span[] = [];
    for (let attempt = 0; attempt < 100 && spans.length < 4; attempt += 1) {
      spans = (await member.get<{ spans: Span[] }>(path)).body.spans;
      if (spans.length < 4) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const names = spans.map((span) => span.name);
    expect(names).toEqual(
      expect.arrayContaining(['invoke_agent traced', 'chat local', 'execute_tool calculator']),
    );
    expect(names.filter((name) => name === 'chat local')).toHaveLength(2);
    const root = spans.find((span) => span.name === 'invoke_agent traced');
    for (const span of spans) {
      expect(span.attributes['brigade.tenant.id']).toBe(tenantId);
      expect(span.attributes['brigade.run.id']).toBe(run.body.id);
      // Pseudonymous mode: no user id on spans, never the internal one either.
      expect(JSON.stringify(span.attributes)).not.toContain(owner.userId);
      expect(span.attributes['brigade.user.pseudonym']).toMatch(/^[0-9a-f]{32}$/);
      if (span !== root) expect(span.parentSpanId).toBe(root?.spanId);
    }
    const chat = spans.find((span) => span.name === 'chat local');
    expect(chat?.attributes).toMatchObject({
      'gen_ai.operation.name': 'chat',
      'gen_ai.provider.name': 'local',
      'gen_ai.request.model': 'local',
    });
    expect(chat?.attributes['gen_ai.usage.output_tokens']).toBeGreaterThan(0);
  });

  it('shows a run’s trace to no one but its user', async () => {
    const thread = await member.post<Created>('/v1/threads', {});
    const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId,
      input: 'hello',
    });
    await waitForRun(member, { threadId: thread.body.id, runId: run.body.id });
    const response = await other.get(`/v1/threads/${thread.body.id}/runs/${run.body.id}/trace`);
    expect(response.status).toBe(404);
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
