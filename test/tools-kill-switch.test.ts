import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toolBlockCacheMs } from '../src/runtime/tool-block-cache.ts';
import { createMockModelServer, type MockModelServer } from '../src/testing/index.ts';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
  waitForRun,
} from './support/api-client.ts';
import { type SpawnedServer, spawnServer } from './support/spawn-server.ts';
import { testOperatorKey } from './support/test-brigade.ts';
import { type LoggedServer, startLoggedServer } from './support/tool-fixtures.ts';

/**
 * Kill switches stop a run that is already executing: its first tool call is held by a real
 * slow upstream while an admin switches off the tool the model calls next; that call is
 * refused ("disabled by an administrator") and never reaches the upstream. Set through the
 * process executing the run, the switch applies at once; set through a second Brigade process
 * (a child process on the same database, which executes no runs), within the documented bound
 * (`toolBlockCacheMs`).
 */
let upstream: Server;
let upstreamUrl: string;
const received: string[] = [];
/** Releases the held `/hold` requests. */
const held: (() => void)[] = [];
let model: MockModelServer;
let server: LoggedServer;
let other: SpawnedServer;
let admin: ApiClient;
let otherAdmin: ApiClient;
let member: ApiClient;
let tenantId: string;

beforeAll(async () => {
  upstream = createServer((request, response) => {
    received.push(`${request.method} ${request.url}`);
    response.setHeader('content-type', 'application/json');
    if (request.url?.startsWith('/hold')) held.push(() => response.end('{"held":true}'));
    else response.end('{"ok":true}');
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  model = await createMockModelServer({ apiKey: 'switch-key' });
  server = await startLoggedServer(
    {
      providers: {
        mock: { type: 'openai-compatible', baseUrl: model.url, apiKeyEnv: 'SWITCH_KEY' },
      },
      tools: { tenantHttp: { allowedHosts: ['127.0.0.1'] } },
    },
    { SWITCH_KEY: 'switch-key' },
  );
  // The second process serves the API only: every run executes on `server`.
  other = await spawnServer({
    databaseUrl: server.database.url,
    config: { runs: { concurrency: 0 } },
  });
  const operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'switch');
  const adminUser = await seedUser(operator, { tenantId, role: 'admin' });
  admin = apiClient(server.url, adminUser.secret);
  otherAdmin = apiClient(other.url, adminUser.secret);
  member = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  for (const [name, path] of [
    ['hold', '/hold'],
    ['target', '/target'],
  ] as const) {
    const created = await admin.post('/v1/tools', {
      name,
      description: `Calls ${path}.`,
      risk: 'read',
      urlTemplate: `${upstreamUrl}${path}`,
      inputSchema: { type: 'object', properties: {}, additionalProperties: false },
      timeoutMs: 30_000,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
  }
}, 120_000);

afterAll(async () => {
  for (const release of held.splice(0)) release();
  other?.child.kill('SIGKILL');
  await server?.stop();
  await model?.close();
  upstream?.closeAllConnections();
  await new Promise((resolve) => upstream?.close(resolve));
});

/** Starts a run whose model calls `hold`, then `target`, then answers; resolves once held. */
async function startHeldRun(agentName: string) {
  const agent = await admin.post<Created>('/v1/agents', {
    name: agentName,
    model: 'mock:mock-model',
    tools: ['hold', 'target'],
  });
  model.reset();
  model.setScript([
    { toolCalls: [{ name: 'hold', arguments: {} }] },
    { toolCalls: [{ name: 'target', arguments: {} }] },
    { text: 'Done.' },
  ]);
  const thread = await member.post<Created>('/v1/threads', {});
  const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
    agentId: agent.body.id,
    input: 'go',
  });
  expect(run.status, JSON.stringify(run.body)).toBe(201);
  const ids = { threadId: thread.body.id, runId: run.body.id };
  const deadline = Date.now() + 10_000;
  while (held.length === 0) {
    if (Date.now() > deadline) throw new Error('the first tool call never reached the upstream');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return { agentId: agent.body.id, ids };
}

/** Releases the held call, waits for the run, and checks `target` was refused and not called. */
async function expectTargetRefused(ids: { threadId: string; runId: string }) {
  for (const release of held.splice(0)) release();
  const run = await waitForRun(member, ids);
  expect(run.status).toBe('completed');
  expect(received.filter((line) => line.startsWith('GET /target'))).toEqual([]);
  // The model read the refusal as the tool's result (spotlighted: spaces datamarked).
  const seen = JSON.stringify(model.calls[2]?.body).replaceAll('ˆ', ' ');
  expect(seen).toContain("Tool 'target' is disabled by an administrator.");
  const log = await admin.get<{
    data: {
      action: string;
      targetId: string;
      reason: string | null;
      data: Record<string, unknown>;
    }[];
  }>(`/v1/tenants/${tenantId}/audit-events?limit=500`);
  const calls = log.body.data
    .filter((event) => event.action === 'tool.called' && event.data['runId'] === ids.runId)
    .map((event) => [event.targetId, event.reason]);
  expect(calls).toContainEqual(['hold', null]);
  expect(calls).toContainEqual(['target', 'disabled']);
}

describe('a kill switch set while a run executes', () => {
  it('refuses the run’s next call at once when set through the process executing it', async () => {
    const { ids } = await startHeldRun('incident-local');
    // The run's first call went through the gate, so this process has the switches cached.
    const block = await admin.post<Created>('/v1/tool-blocks', {
      toolName: 'target',
      reason: 'incident',
    });
    expect(block.status, JSON.stringify(block.body)).toBe(201);
    await expectTargetRefused(ids);
    // Lifted again for the next test.
    expect((await admin.request('DELETE', `/v1/tool-blocks/${block.body.id}`)).status).toBe(204);
  });

  it('refuses it within the documented bound when set through another process', async () => {
    const { agentId, ids } = await startHeldRun('incident-remote');
    const block = await otherAdmin.post<Created>('/v1/tool-blocks', {
      toolName: 'target',
      agentId,
    });
    expect(block.status, JSON.stringify(block.body)).toBe(201);
    const setAt = Date.now();
    // The executing process learns of it within toolBlockCacheMs (its cache's lifetime).
    await new Promise((resolve) =>
      setTimeout(resolve, Math.max(0, setAt + toolBlockCacheMs + 200 - Date.now())),
    );
    await expectTargetRefused(ids);
  });
});
