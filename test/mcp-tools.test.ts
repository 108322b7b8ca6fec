import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createMockModelServer } from '../src/testing/index.ts';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { testOperatorKey } from './support/test-brigade.ts';
import { type LoggedServer, runOnce, startLoggedServer } from './support/tool-fixtures.ts';

const canaryA = `mcp-canary-A-${'1'.repeat(20)}`;
const canaryB = `mcp-canary-B-${'2'.repeat(20)}`;

/** A tool call the MCP server received, with the Authorization header it came with. */
interface ReceivedCall {
  readonly args: unknown;
  readonly authorization: string | undefined;
}

/** A real MCP server (the SDK's, stateless Streamable HTTP) with an `echo` tool. */
async function startMcpServer() {
  const calls: ReceivedCall[] = [];
  const http: Server = createServer((request, response) => {
    const server = new McpServer({ name: 'echo-server', version: '1.0.0' });
    server.registerTool(
      'echo',
      {
        description: 'Echoes its text and the Authorization header it received.',
        inputSchema: { text: z.string().max(20) },
      },
      async (args, extra) => {
        const header = extra.requestInfo?.headers['authorization'];
        const authorization = Array.isArray(header) ? header[0] : header;
        calls.push({ args, authorization });
        return {
          content: [{ type: 'text', text: JSON.stringify({ echoed: args.text, authorization }) }],
        };
      },
    );
    const transport = new StreamableHTTPServerTransport({
      enableJsonResponse: true,
    });
    response.on('close', () => {
      void transport.close();
      void server.close();
    });
    server
      .connect(transport)
      .then(() => transport.handleRequest(request, response))
      .catch(() => {
        if (!response.headersSent) response.writeHead(500).end();
      });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const { port } = http.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    calls,
    close: () =>
      new Promise<void>((resolve) => {
        http.closeAllConnections();
        http.close(() => resolve());
      }),
  };
}

let server: LoggedServer;
let mcp: Awaited<ReturnType<typeof startMcpServer>>;
let model: Awaited<ReturnType<typeof createMockModelServer>>;
let admin: ApiClient;
let alice: ApiClient;
let bob: ApiClient;
let otherAdmin: ApiClient;
let serverId: string;
let agentId: string;

beforeAll(async () => {
  mcp = await startMcpServer();
  model = await createMockModelServer({ apiKey: 'mock-model-key' });
  server = await startLoggedServer(
    {
      providers: {
        mock: { type: 'openai-compatible', baseUrl: model.url, apiKeyEnv: 'MOCK_API_KEY' },
      },
    },
    { MOCK_API_KEY: 'mock-model-key' },
  );
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'mcp');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  alice = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  bob = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  const otherTenant = await seedTenant(operator, 'mcp-other');
  otherAdmin = apiClient(
    server.url,
    (await seedUser(operator, { tenantId: otherTenant, role: 'admin' })).secret,
  );
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await mcp?.close();
  await model?.close();
});

describe('MCP servers', () => {
  it('refuses a registration by a member', async () => {
    const refused = await alice.post('/v1/mcp-servers', { name: 'srv', url: mcp.url });
    expect(refused.status).toBe(403);
  });

  it('refuses an unreachable server at registration, not at run time', async () => {
    const refused = await admin.post('/v1/mcp-servers', {
      name: 'dead',
      url: 'http://127.0.0.1:1/mcp',
    });
    expect(refused.status).toBe(422);
    expect(JSON.stringify(refused.body)).toContain('did not answer');
  });

  it('registers a server that every member of the tenant lists', async () => {
    const created = await admin.post<Created>('/v1/mcp-servers', {
      name: 'srv',
      url: mcp.url,
      auth: { credential: 'mcp' },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toMatchObject({ name: 'srv', risk: 'egress' });
    serverId = created.body.id;
    const listed = await alice.get<{ data: { name: string }[] }>('/v1/mcp-servers');
    expect(listed.body.data.map((item) => item.name)).toEqual(['srv']);
    const agent = await admin.post<Created>('/v1/agents', {
      name: 'mcp-agent',
      tools: ['mcp:srv:echo'],
    });
    expect(agent.status, JSON.stringify(agent.body)).toBe(201);
    agentId = agent.body.id;
    const unknown = await admin.post('/v1/agents', { name: 'bad', tools: ['mcp:nosuch:echo'] });
    expect(unknown.status).toBe(422);
  });

  it("calls the tool with each user's own credential and returns its output", async () => {
    for (const [client, secret] of [
      [alice, canaryA],
      [bob, canaryB],
    ] as const)
      expect((await client.post('/v1/me/credentials', { name: 'mcp', secret })).status).toBe(201);
    const forAlice = await runOnce(alice, { agentId, input: 'call mcp:srv:echo {"text":"hi"}' });
    expect(forAlice.run.status).toBe('completed');
    expect(forAlice.answer).toContain('mcp:srv:echo returned');
    expect(forAlice.answer).toContain('hi');
    const forBob = await runOnce(bob, { agentId, input: 'call mcp:srv:echo {"text":"yo"}' });
    expect(forBob.answer).toContain('yo');
    expect(mcp.calls.map((call) => call.authorization)).toEqual([
      `Bearer ${canaryA}`,
      `Bearer ${canaryB}`,
    ]);
    expect(mcp.calls.map((call) => call.args)).toEqual([{ text: 'hi' }, { text: 'yo' }]);
    // The server reflected the header: the secret is redacted before the model or user sees it.
    expect(forAlice.transcript).not.toContain(canaryA);
    expect(forBob.transcript).not.toContain(canaryB);
    expect(server.logs.join('')).not.toContain(canaryA);
  });

  it('offers MCP tools to a provider under names it accepts, and maps its calls back', async () => {
    const agent = await admin.post<Created>('/v1/agents', {
      name: 'mcp-remote',
      model: 'mock:mock-model',
      tools: ['mcp:srv:echo'],
    });
    expect(agent.status, JSON.stringify(agent.body)).toBe(201);
    model.reset();
    const before = mcp.calls.length;
    const result = await runOnce(alice, {
      agentId: agent.body.id,
      input: 'call mcp__srv__echo {"text":"remote"}',
    });
    expect(result.run.status).toBe('completed');
    expect(mcp.calls.slice(before)).toEqual([
      { args: { text: 'remote' }, authorization: `Bearer ${canaryA}` },
    ]);
    const first = model.calls[0]?.body as { tools: { function: { name: string } }[] };
    expect(first.tools.map((tool) => tool.function.name)).toEqual(['mcp__srv__echo']);
  });

  it('sends schema-invalid arguments back to the model without calling the server', async () => {
    const before = mcp.calls.length;
    const result = await runOnce(alice, {
      agentId,
      input: 'call mcp:srv:echo {"text":"far too long for the schema of echo"}',
    });
    expect(result.answer).toContain('Invalid arguments');
    expect(mcp.calls.length).toBe(before);
  });

  it('refuses an MCP tool behind a kill switch at run time, and offers it to no model', async () => {
    expect(
      (await alice.post('/v1/tool-blocks', { toolName: 'mcp:srv:echo', agentId })).status,
    ).toBe(403);
    const unknownServer = await admin.post('/v1/tool-blocks', { toolName: 'mcp:nosuch:echo' });
    expect(unknownServer.status).toBe(422);
    expect(unknownServer.body).toMatchObject({ code: 'unknown_tool' });
    expect((await admin.post('/v1/tool-blocks', { toolName: 'mcp:srv:bad name' })).status).toBe(
      422,
    );
    const block = await admin.post<Created>('/v1/tool-blocks', {
      toolName: 'mcp:srv:echo',
      reason: 'incident 42',
    });
    expect(block.status, JSON.stringify(block.body)).toBe(201);
    expect(block.body).toMatchObject({ toolName: 'mcp:srv:echo', agentId: null });
    const listed = await admin.get<{ data: { toolName: string }[] }>('/v1/tool-blocks');
    expect(listed.body.data.map((item) => item.toolName)).toEqual(['mcp:srv:echo']);
    const before = mcp.calls.length;
    // The built-in model only calls offered tools: it is not offered, so nothing is called.
    const local = await runOnce(alice, { agentId, input: 'call mcp:srv:echo {"text":"hi"}' });
    expect(local.answer).toBe('You said: call mcp:srv:echo {"text":"hi"}');
    // A provider model is not offered it either, and one that calls it anyway (by its exact
    // name) is refused by the gate at run time: the server is never called.
    const remote = await admin.post<Created>('/v1/agents', {
      name: 'mcp-remote-blocked',
      model: 'mock:mock-model',
      tools: ['mcp:srv:echo'],
    });
    model.reset();
    model.setScript([
      { toolCalls: [{ name: 'mcp:srv:echo', arguments: { text: 'x' } }] },
      { text: 'Gave up.' },
    ]);
    const forced = await runOnce(alice, { agentId: remote.body.id, input: 'echo x' });
    expect(forced.run.status).toBe('completed');
    const first = model.calls[0]?.body as { tools?: { function: { name: string } }[] } | undefined;
    const offered = first?.tools;
    expect((offered ?? []).map((tool) => tool.function.name)).not.toContain('mcp__srv__echo');
    // The refusal is the tool's result the model saw (spotlighted: whitespace datamarked).
    expect(JSON.stringify(model.calls[1]?.body)).toContain('isˆdisabledˆbyˆanˆadministrator');
    expect(mcp.calls.length).toBe(before);
    expect((await admin.request('DELETE', `/v1/tool-blocks/${block.body.id}`)).status).toBe(204);
    const again = await runOnce(alice, { agentId, input: 'call mcp:srv:echo {"text":"back"}' });
    expect(again.answer).toContain('back');
    expect(mcp.calls.length).toBe(before + 1);
  });

  it('keeps the server from other tenants', async () => {
    const listed = await otherAdmin.get<{ data: unknown[] }>('/v1/mcp-servers');
    expect(listed.body.data).toEqual([]);
    expect((await otherAdmin.request('DELETE', `/v1/mcp-servers/${serverId}`)).status).toBe(404);
    const agent = await otherAdmin.post('/v1/agents', { name: 'thief', tools: ['mcp:srv:echo'] });
    expect(agent.status).toBe(422);
    expect((await alice.request('DELETE', `/v1/mcp-servers/${serverId}`)).status).toBe(403);
  });

  it('removes a server: its tools are no longer available', async () => {
    expect((await admin.request('DELETE', `/v1/mcp-servers/${serverId}`)).status).toBe(204);
    const before = mcp.calls.length;
    const result = await runOnce(alice, { agentId, input: 'call mcp:srv:echo {"text":"hi"}' });
    expect(result.answer).toContain('You said');
    expect(mcp.calls.length).toBe(before);
  });
});
