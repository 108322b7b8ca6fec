import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockModelServer, type MockModelServer } from '../src/testing/index.ts';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';
import { type LoggedServer, runOnce, startLoggedServer } from './support/tool-fixtures.ts';

/**
 * The tool gate's limits and refusals through the public API: a per-call timeout and an output
 * cap against a real slow and a real oversized upstream, tools the agent does not have, the
 * egress rules at definition time, `http_request`'s allow-list, and tool CRUD.
 */
const hugeChars = 300_000;
const slowMs = 3_000;

let upstream: Server;
let upstreamUrl: string;
const received: string[] = [];
let model: MockModelServer;
let server: LoggedServer;
let strict: TestServer;
let tenantId: string;
let admin: ApiClient;
let member: ApiClient;
let strictAdmin: ApiClient;

const schema = {
  type: 'object',
  properties: { q: { type: 'string', maxLength: 20 } },
  additionalProperties: false,
};

function toolBody(name: string, path: string, extra: Record<string, unknown> = {}) {
  return {
    name,
    description: `Calls ${path}.`,
    risk: 'read',
    urlTemplate: `${upstreamUrl}${path}`,
    inputSchema: schema,
    ...extra,
  };
}

interface AuditEvent {
  action: string;
  targetId: string;
  outcome: string;
  reason: string | null;
  data: Record<string, unknown>;
}

async function audit(): Promise<AuditEvent[]> {
  const log = await admin.get<{ data: AuditEvent[] }>(
    `/v1/tenants/${tenantId}/audit-events?limit=500`,
  );
  return log.body.data;
}

beforeAll(async () => {
  upstream = createServer((request, response) => {
    received.push(`${request.method} ${request.url}`);
    if (request.url?.startsWith('/slow')) {
      const timer = setTimeout(() => response.end('{"late":true}'), slowMs);
      response.on('close', () => clearTimeout(timer));
      return;
    }
    response.setHeader('content-type', 'application/json');
    if (request.url?.startsWith('/huge'))
      response.end(JSON.stringify({ data: 'x'.repeat(hugeChars) }));
    else response.end('{"ok":true}');
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  model = await createMockModelServer({ apiKey: 'gate-key' });
  server = await startLoggedServer(
    {
      providers: { mock: { type: 'openai-compatible', baseUrl: model.url, apiKeyEnv: 'GATE_KEY' } },
      tools: {
        tenantHttp: { allowedHosts: ['127.0.0.1', 'api.example.com'] },
        httpRequest: { allowedHosts: [new URL(upstreamUrl).host], allowedMethods: ['GET'] },
      },
    },
    { GATE_KEY: 'gate-key' },
  );
  // Private networks off and no allow-list: only the private-address rule applies.
  strict = await startTestServer({ tools: { tenantHttp: { allowPrivateNetworks: false } } });
  const operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'gate');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  member = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  const strictOperator = apiClient(strict.url, testOperatorKey);
  const strictTenant = await seedTenant(strictOperator, 'gate-strict');
  strictAdmin = apiClient(
    strict.url,
    (await seedUser(strictOperator, { tenantId: strictTenant, role: 'admin' })).secret,
  );
  for (const body of [
    toolBody('slow', '/slow', { timeoutMs: 300 }),
    toolBody('huge', '/huge', { maxResponseChars: 1_000 }),
    toolBody('fine', '/fine'),
  ]) {
    const created = await admin.post('/v1/tools', body);
    expect(created.status, JSON.stringify(created.body)).toBe(201);
  }
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await strict?.stop();
  await model?.close();
  upstream?.closeAllConnections();
  await new Promise((resolve) => upstream?.close(resolve));
});

describe('per-call limits', () => {
  it('gives the model a timeout error when a tool outlives its timeoutMs, and the run goes on', async () => {
    const agent = await admin.post<Created>('/v1/agents', { name: 'slowpoke', tools: ['slow'] });
    const started = Date.now();
    const result = await runOnce(member, { agentId: agent.body.id, input: 'call slow {"q":"a"}' });
    expect(result.run.status).toBe('completed');
    expect(Date.now() - started).toBeLessThan(slowMs);
    expect(result.answer).toBe('slow failed: {"error":"Tool timed out after 300 ms."}');
    expect(received).toContain('GET /slow');
    const called = (await audit()).find(
      (event) => event.action === 'tool.called' && event.data['runId'] === result.ids.runId,
    );
    expect(called).toMatchObject({ outcome: 'failure', data: { outcome: 'failed' } });
  });

  it('cuts an oversized response to maxResponseChars, marked as truncated', async () => {
    const agent = await admin.post<Created>('/v1/agents', { name: 'hoarder', tools: ['huge'] });
    const result = await runOnce(member, { agentId: agent.body.id, input: 'call huge {"q":"a"}' });
    expect(result.run.status).toBe('completed');
    const output = JSON.parse(result.answer.replace(/^huge returned: /, '')) as {
      truncated: boolean;
      preview: string;
    };
    expect(output.truncated).toBe(true);
    expect(output.preview.length).toBe(1_000);
    // The preview is the start of the tool's result: the status and the body's text.
    expect(output.preview).toMatch(/^\{"status":200,"body":"\{\\"data\\":\\"x{100}/);
    expect(result.transcript.length).toBeLessThan(hugeChars / 10);
  });
});

describe('what the gate refuses at run time', () => {
  it("answers not_available for a tool outside the agent's list, and runs nothing", async () => {
    const agent = await admin.post<Created>('/v1/agents', {
      name: 'scripted',
      model: 'mock:mock-model',
      tools: ['fine'],
    });
    const before = received.length;
    model.reset();
    model.setScript([
      {
        toolCalls: [
          { name: 'huge', arguments: { q: 'a' } },
          { name: 'no_such_tool', arguments: {} },
        ],
      },
      { text: 'Done.' },
    ]);
    const result = await runOnce(member, { agentId: agent.body.id, input: 'use huge' });
    expect(result.run.status).toBe('completed');
    expect(received.length).toBe(before);
    const seen = JSON.stringify(model.calls[1]?.body);
    expect(seen).toContain("Toolˆ'huge'ˆisˆnotˆavailableˆtoˆthisˆagent.");
    expect(seen).toContain("Toolˆ'no_such_tool'ˆisˆnotˆavailable");
    const refused = (await audit()).filter(
      (event) => event.action === 'tool.called' && event.data['runId'] === result.ids.runId,
    );
    // The two calls may run concurrently: their audit events come in either order.
    const rows = refused.map((event) => [event.targetId, event.outcome, event.reason]);
    expect(rows.sort()).toEqual([
      ['huge', 'denied', 'not_available'],
      ['no_such_tool', 'denied', 'not_available'],
    ]);
  });

  it('lets parallel calls of one step run after its model step committed, one per quota unit', async () => {
    const agent = await admin.post<Created>('/v1/agents', {
      name: 'twice',
      model: 'mock:mock-model',
      tools: ['fine'],
    });
    const policy = await admin.post<Created>('/v1/policies', {
      level: 'agent',
      subjectId: agent.body.id,
      limits: { toolCallsPerDay: 2 },
    });
    expect(policy.status).toBe(201);
    const before = received.length;
    model.reset();
    model.setScript([
      {
        toolCalls: [
          { name: 'fine', arguments: { q: 'a' } },
          { name: 'fine', arguments: { q: 'b' } },
          { name: 'fine', arguments: { q: 'c' } },
        ],
      },
      { text: 'Done.' },
    ]);
    const result = await runOnce(member, { agentId: agent.body.id, input: 'three calls' });
    expect(result.run.status).toBe('completed');
    // Exactly two of the three concurrent calls counted and ran; the third was refused.
    expect(received.length - before).toBe(2);
    const steps = await member.get<{ data: { type: string; tool?: { status: string } }[] }>(
      `/v1/threads/${result.ids.threadId}/runs/${result.ids.runId}/steps`,
    );
    expect(steps.body.data.map((step) => step.type)).toEqual([
      'model',
      'tool',
      'tool',
      'tool',
      'model',
    ]);
    const statuses = steps.body.data.flatMap((step) => (step.tool ? [step.tool.status] : []));
    expect(statuses.sort()).toEqual(['error', 'ok', 'ok']);
    const calls = (await audit()).filter(
      (event) => event.action === 'tool.called' && event.data['runId'] === result.ids.runId,
    );
    expect(calls.map((event) => event.reason ?? event.outcome).sort()).toEqual([
      'quota_exceeded',
      'success',
      'success',
    ]);
    await admin.request('DELETE', `/v1/policies/${policy.body.id}`);
  });

  it('keeps http_request to its allowed hosts and methods', async () => {
    const agent = await admin.post<Created>('/v1/agents', {
      name: 'fetcher',
      tools: ['http_request'],
    });
    const call = (input: Record<string, unknown>) =>
      runOnce(member, {
        agentId: agent.body.id,
        input: `call http_request ${JSON.stringify(input)}`,
      });
    const before = received.length;
    const otherHost = await call({ url: 'http://evil.example:9/steal' });
    expect(otherHost.answer).toContain('host evil.example:9 is not on the allow-list');
    const otherPort = await call({ url: 'http://127.0.0.1:9/x' });
    expect(otherPort.answer).toContain('is not on the allow-list');
    const post = await call({ url: `${upstreamUrl}/fine`, method: 'POST', body: '{}' });
    expect(post.answer).toContain('method POST is not allowed');
    expect(received.length).toBe(before);
    const allowed = await call({ url: `${upstreamUrl}/fine` });
    expect(allowed.answer).toContain('http_request returned');
    expect(received.slice(before)).toEqual(['GET /fine']);
  });
});

describe('tool definitions', () => {
  it('refuses a host outside tools.tenantHttp.allowedHosts with 422', async () => {
    const refused = await admin.post('/v1/tools', {
      ...toolBody('elsewhere', '/x'),
      urlTemplate: 'https://other.example.org/v1/{q}',
    });
    expect(refused.status).toBe(422);
    expect(JSON.stringify(refused.body)).toContain(
      'host other.example.org is not on the allow-list',
    );
    expect(
      (
        await admin.post('/v1/tools', {
          ...toolBody('listed', '/x'),
          urlTemplate: 'https://api.example.com/v1/{q}',
        })
      ).status,
    ).toBe(201);
  });

  it('refuses private and loopback addresses when private networks are off', async () => {
    const octet = fc.integer({ min: 0, max: 255 });
    const privateHost = fc.oneof(
      fc.tuple(octet, octet, octet).map(([b, c, d]) => `10.${b}.${c}.${d}`),
      fc.tuple(octet, octet, octet).map(([b, c, d]) => `127.${b}.${c}.${d}`),
      fc.tuple(octet, octet).map(([c, d]) => `192.168.${c}.${d}`),
      fc.tuple(octet, octet).map(([c, d]) => `169.254.${c}.${d}`),
      fc
        .tuple(fc.integer({ min: 16, max: 31 }), octet, octet)
        .map(([b, c, d]) => `172.${b}.${c}.${d}`),
      fc.constantFrom(
        '[::1]',
        '[fd00::1]',
        '[fe80::1]',
        '[::ffff:7f00:1]',
        '[::ffff:0:7f00:1]',
        'localhost',
      ),
    );
    await fc.assert(
      fc.asyncProperty(privateHost, async (host) => {
        const refused = await strictAdmin.post('/v1/tools', {
          ...toolBody('private_one', '/x'),
          urlTemplate: `http://${host}:8080/{q}`,
        });
        expect(refused.status).toBe(422);
        expect(JSON.stringify(refused.body)).toContain('is a private or loopback address');
      }),
      { numRuns: 25 },
    );
    const publicHost = await strictAdmin.post('/v1/tools', {
      ...toolBody('public_one', '/x'),
      urlTemplate: 'https://93.184.215.14/{q}',
    });
    expect(publicHost.status, JSON.stringify(publicHost.body)).toBe(201);
  });

  it('reads, changes and deletes a tool', async () => {
    const created = await admin.post<Created & { version: number }>(
      '/v1/tools',
      toolBody('crud', '/fine', { timeoutMs: 5_000 }),
    );
    expect(created.status).toBe(201);
    const id = created.body.id;
    const read = await member.get<Record<string, unknown>>(`/v1/tools/${id}`);
    expect(read.status).toBe(200);
    expect(read.body).toMatchObject({
      id,
      kind: 'http',
      name: 'crud',
      method: 'GET',
      urlTemplate: `${upstreamUrl}/fine`,
      timeoutMs: 5_000,
      version: 1,
    });
    // A member reads, but does not change or delete.
    expect((await member.request('PATCH', `/v1/tools/${id}`, { description: 'x' })).status).toBe(
      403,
    );
    expect((await member.request('DELETE', `/v1/tools/${id}`)).status).toBe(403);
    const updated = await admin.request('PATCH', `/v1/tools/${id}`, {
      description: 'Calls /fine, changed.',
      risk: 'write',
    });
    expect(updated.status).toBe(200);
    expect(updated.body).toMatchObject({
      description: 'Calls /fine, changed.',
      risk: 'write',
      timeoutMs: 5_000,
      version: 2,
    });
    const badSchema = await admin.request('PATCH', `/v1/tools/${id}`, {
      inputSchema: { type: 'object', properties: { q: { type: 'no-such-type' } } },
    });
    expect(badSchema.status).toBe(422);
    const badHost = await admin.request('PATCH', `/v1/tools/${id}`, {
      urlTemplate: 'https://other.example.org/{q}',
    });
    expect(badHost.status).toBe(422);
    expect((await member.get(`/v1/tools/${id}`)).body).toMatchObject({ version: 2 });
    const listed = await member.get<{ data: { name: string }[] }>('/v1/tools');
    expect(listed.body.data.map((tool) => tool.name)).toContain('crud');
    const agent = await admin.post<Created>('/v1/agents', { name: 'cruddy', tools: ['crud'] });
    expect((await admin.request('DELETE', `/v1/tools/${id}`)).status).toBe(204);
    expect((await member.get(`/v1/tools/${id}`)).status).toBe(404);
    expect((await admin.request('DELETE', `/v1/tools/${id}`)).status).toBe(404);
    const after = await member.get<{ data: { name: string }[] }>('/v1/tools');
    expect(after.body.data.map((tool) => tool.name)).not.toContain('crud');
    // An agent that still names it: the model is not offered it, and nothing is called.
    const before = received.length;
    const result = await runOnce(member, { agentId: agent.body.id, input: 'call crud {"q":"a"}' });
    expect(result.answer).toBe('You said: call crud {"q":"a"}');
    expect(received.length).toBe(before);
    const actions = (await audit())
      .filter((event) => event.targetId === id)
      .map((event) => event.action);
    expect(actions).toEqual(['tool.created', 'tool.updated', 'tool.deleted']);
  });
});
