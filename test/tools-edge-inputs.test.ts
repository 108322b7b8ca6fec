import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { testOperatorKey } from './support/test-brigade.ts';
import {
  type LoggedServer,
  runOnce,
  startLoggedServer,
  startUpstream,
  type UpstreamRequest,
} from './support/tool-fixtures.ts';

/**
 * Tool definitions and credentials at their edges, through the public API: arguments named
 * like Object's own properties, placeholders where a URL never sends them, MCP servers that
 * answer 401 bare or are not MCP at all, and credential secrets that cannot be sent.
 */
let upstream: { url: string; requests: UpstreamRequest[]; close(): Promise<void> };
let bare: Server;
let bareUrl: string;
let server: LoggedServer;
let admin: ApiClient;
let member: ApiClient;

beforeAll(async () => {
  upstream = await startUpstream(() => ({ ok: true }));
  // Answers every request with a bare 401 (no WWW-Authenticate), or JSON that is not MCP.
  bare = createServer((request, response) => {
    if (request.url?.startsWith('/not-mcp')) {
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify({ hello: 'world', items: [1, 2, 3] }));
      return;
    }
    response.statusCode = 401;
    response.end('need auth');
  });
  await new Promise<void>((resolve) => bare.listen(0, '127.0.0.1', resolve));
  bareUrl = `http://127.0.0.1:${(bare.address() as AddressInfo).port}`;
  server = await startLoggedServer();
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'edge-inputs');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  member = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await upstream?.close();
  bare?.closeAllConnections();
  await new Promise((resolve) => bare?.close(resolve));
});

const optional = (names: readonly string[]) => ({
  type: 'object',
  properties: Object.fromEntries(names.map((name) => [name, { type: 'string' }])),
  additionalProperties: false,
});

describe('tool arguments named like built-in object properties', () => {
  it('leaves out absent optional arguments named toString, valueOf or constructor', async () => {
    const names = ['toString', 'valueOf', 'constructor', 'hasOwnProperty'];
    const created = await admin.post('/v1/tools', {
      name: 'objproto',
      description: 'Query with awkward parameter names.',
      risk: 'read',
      urlTemplate: `${upstream.url}/op?${names.map((name) => `${name}={${name}}`).join('&')}`,
      inputSchema: optional(names),
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const agent = await admin.post<Created>('/v1/agents', { name: 'awkward', tools: ['objproto'] });
    const before = upstream.requests.length;
    const empty = await runOnce(member, { agentId: agent.body.id, input: 'call objproto {}' });
    expect(empty.run.status).toBe('completed');
    expect(upstream.requests.slice(before).map((request) => request.url)).toEqual(['/op']);
    const given = await runOnce(member, {
      agentId: agent.body.id,
      input: 'call objproto {"constructor":"a b","toString":"x"}',
    });
    expect(given.run.status).toBe('completed');
    expect(upstream.requests.at(-1)?.url).toBe('/op?toString=x&constructor=a%20b');
  });

  it('refuses a schema that declares __proto__', async () => {
    const refused = await admin.post<{ code: string; errors: { message: string }[] }>('/v1/tools', {
      name: 'protoarg',
      description: 'x',
      risk: 'read',
      urlTemplate: `${upstream.url}/q?p={__proto__}`,
      inputSchema: JSON.parse('{"type":"object","properties":{"__proto__":{"type":"string"}}}'),
    });
    expect(refused.status).toBe(422);
    expect(JSON.stringify(refused.body)).toContain('__proto__');
  });
});

describe('the header a credential is sent in', () => {
  it('refuses headers HTTP or Brigade set, where the credential would be dropped or break calls', async () => {
    for (const [index, headerName] of [
      'Host',
      'Content-Type',
      'Idempotency-Key',
      'Expect',
      'Upgrade',
      'Keep-Alive',
      'Transfer-Encoding',
    ].entries()) {
      const refused = await admin.post<{ errors: { path: string }[] }>('/v1/tools', {
        name: `hdr_${index}`,
        description: 'x',
        risk: 'read',
        urlTemplate: `${upstream.url}/h`,
        inputSchema: optional([]),
        auth: { credential: 'svc', scheme: 'header', headerName },
      });
      expect(refused.status, headerName).toBe(422);
      expect(refused.body.errors.map((error) => error.path)).toContain('body.auth.headerName');
    }
    const accepted = await admin.post('/v1/tools', {
      name: 'hdr_ok',
      description: 'x',
      risk: 'read',
      urlTemplate: `${upstream.url}/h`,
      inputSchema: optional([]),
      auth: { credential: 'svc', scheme: 'header', headerName: 'X-Api-Key' },
    });
    expect(accepted.status, JSON.stringify(accepted.body)).toBe(201);
  });
});

describe('URLs with a fragment', () => {
  it('refuses a placeholder in the fragment of a URL template', async () => {
    const refused = await admin.post('/v1/tools', {
      name: 'frag',
      description: 'x',
      risk: 'read',
      urlTemplate: `${upstream.url}/frag#{q}`,
      inputSchema: optional(['q']),
    });
    expect(refused.status).toBe(422);
    expect(JSON.stringify(refused.body)).toContain('fragment');
    const literal = await admin.post('/v1/tools', {
      name: 'frag_literal',
      description: 'x',
      risk: 'read',
      urlTemplate: `${upstream.url}/frag?q={q}#top`,
      inputSchema: optional(['q']),
    });
    expect(literal.status, JSON.stringify(literal.body)).toBe(201);
  });

  it('refuses an MCP server URL with a fragment', async () => {
    const refused = await admin.post('/v1/mcp-servers', {
      name: 'fragged',
      url: `${bareUrl}/mcp#x`,
    });
    expect(refused.status).toBe(422);
    expect(JSON.stringify(refused.body)).toContain('fragment');
  });
});

describe('registering MCP servers', () => {
  it('accepts a server that answers a bare 401: it wants each user’s credential', async () => {
    const created = await admin.post('/v1/mcp-servers', {
      name: 'bare401',
      url: `${bareUrl}/mcp`,
      auth: { credential: 'svc' },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
  });

  it('says plainly that an endpoint is not MCP, without a validator dump', async () => {
    const refused = await admin.post<{ errors: { message: string }[] }>('/v1/mcp-servers', {
      name: 'notmcp',
      url: `${bareUrl}/not-mcp`,
    });
    expect(refused.status).toBe(422);
    const message = refused.body.errors[0]?.message ?? '';
    expect(message).toContain('not as an MCP server');
    expect(message).not.toMatch(/invalid_union|\n/);
  });
});

describe('credential secrets', () => {
  it('refuses allowedHosts with an impossible port or a host twice', async () => {
    for (const allowedHosts of [['127.0.0.1:99999'], ['api.example.com:0'], ['a.test', 'a.test']]) {
      const refused = await member.post('/v1/me/credentials', {
        name: 'pinned',
        secret: 'pinned-secret-1',
        allowedHosts,
      });
      expect(refused.status, JSON.stringify(allowedHosts)).toBe(422);
    }
    const stored = await member.post('/v1/me/credentials', {
      name: 'pinned',
      secret: 'pinned-secret-1',
      allowedHosts: ['api.example.com:65535', '[::1]:8080', 'b.test'],
    });
    expect(stored.status, JSON.stringify(stored.body)).toBe(201);
  });

  it('refuses a basic secret without the colon of user:password', async () => {
    const refused = await member.post('/v1/me/credentials', {
      name: 'basicbad',
      kind: 'basic',
      secret: 'nocolon',
    });
    expect(refused.status).toBe(422);
    expect(JSON.stringify(refused.body)).toContain('user:password');
    const stored = await member.post('/v1/me/credentials', {
      name: 'basicok',
      kind: 'basic',
      secret: 'ada:pa:ss',
    });
    expect(stored.status).toBe(201);
  });

  it.each(['abc\r\nX-Injected: 1', 'tab\there', 'nul\u0000'])(
    'refuses a secret with a control character when it is stored (%j)',
    async (secret) => {
      const refused = await member.post('/v1/me/credentials', { name: 'ctl', secret });
      expect(refused.status).toBe(422);
      expect(JSON.stringify(refused.body)).toContain('body.secret');
      const listed = await member.get<{ data: { name: string }[] }>('/v1/me/credentials');
      expect(listed.body.data.map((credential) => credential.name)).not.toContain('ctl');
    },
  );
});
