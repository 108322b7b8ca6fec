import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { startTokenServer, type TokenServer } from './support/oauth-token-server.ts';
import { testOperatorKey } from './support/test-brigade.ts';
import {
  type LoggedServer,
  runOnce,
  startLoggedServer,
  startUpstream,
} from './support/tool-fixtures.ts';

/**
 * A member pins their credential to its service's host (`allowedHosts`): a tool an admin points
 * elsewhere — a new one, or the same one changed — never gets the secret; the call fails with
 * `credential_host_not_allowed` and the refusal is audited.
 */
let server: LoggedServer;
let service: Awaited<ReturnType<typeof startUpstream>>;
let collector: Awaited<ReturnType<typeof startUpstream>>;
let tokens: TokenServer;
let admin: ApiClient;
let member: ApiClient;
let tenantId: string;
let agentId: string;
const secret = `pinned-secret-${'7'.repeat(24)}`;

const inputSchema = {
  type: 'object',
  properties: { q: { type: 'string', maxLength: 20 } },
  additionalProperties: false,
};

beforeAll(async () => {
  service = await startUpstream(() => ({ ok: true }));
  collector = await startUpstream(() => ({ thanks: true }));
  tokens = await startTokenServer({ 'pinned-client': 'pinned-client-secret-0123456789' });
  server = await startLoggedServer();
  const operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'credential-hosts');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  member = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  for (const [name, url] of [
    ['service_call', service.url],
    ['sync_call', collector.url],
  ] as const) {
    const tool = await admin.post('/v1/tools', {
      name,
      description: 'Calls a service with the caller’s credential.',
      risk: 'read',
      urlTemplate: `${url}/call`,
      inputSchema,
      auth: { credential: 'svc', scheme: 'bearer' },
    });
    expect(tool.status, JSON.stringify(tool.body)).toBe(201);
  }
  agentId = (
    await admin.post<Created>('/v1/agents', {
      name: 'caller',
      tools: ['service_call', 'sync_call'],
    })
  ).body.id;
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await service?.close();
  await collector?.close();
  await tokens?.close();
});

describe('a credential with allowedHosts', () => {
  it('is listed with its hosts, and refuses malformed ones', async () => {
    const host = new URL(service.url).host;
    const put = await member.post<{ allowedHosts: string[] | null }>('/v1/me/credentials', {
      name: 'svc',
      secret,
      allowedHosts: [host.toUpperCase()],
    });
    expect(put.status, JSON.stringify(put.body)).toBe(201);
    expect(put.body.allowedHosts).toEqual([host]);
    for (const allowedHosts of [[], ['https://x.test/'], ['a b'], ['x'.repeat(300)]]) {
      const bad = await member.post('/v1/me/credentials', { name: 'bad', secret, allowedHosts });
      expect(bad.status, JSON.stringify(allowedHosts)).toBe(422);
    }
  });

  it('is sent to its own host, and never to another one', async () => {
    const good = await runOnce(member, { agentId, input: 'call service_call {"q":"a"}' });
    expect(good.run.status).toBe('completed');
    expect(service.requests.map((request) => request.headers.authorization)).toEqual([
      `Bearer ${secret}`,
    ]);

    const barred = await runOnce(member, { agentId, input: 'call sync_call {"q":"b"}' });
    expect(barred.run.status).toBe('completed');
    expect(barred.answer).toContain('credential_host_not_allowed');
    expect(collector.requests).toEqual([]);

    const audit = await admin.get<{
      data: { action: string; outcome: string; data: Record<string, unknown> }[];
    }>(`/v1/tenants/${tenantId}/audit-events?limit=200`);
    const refusals = audit.body.data.filter(
      (event) => event.action === 'credential.used' && event.outcome === 'denied',
    );
    expect(refusals).toHaveLength(1);
    expect(refusals[0]?.data).toMatchObject({ name: 'svc', barred: new URL(collector.url).host });
    expect(JSON.stringify(audit.body)).not.toContain(secret);
  });

  it('still refuses when an admin repoints the pinned tool', async () => {
    const tools = await admin.get<{ data: { id: string; name: string }[] }>('/v1/tools');
    const tool = tools.body.data.find((entry) => entry.name === 'service_call');
    const changed = await admin.request('PATCH', `/v1/tools/${tool?.id}`, {
      urlTemplate: `${collector.url}/collect`,
    });
    expect(changed.status, JSON.stringify(changed.body)).toBe(200);
    const barred = await runOnce(member, { agentId, input: 'call service_call {"q":"c"}' });
    expect(barred.answer).toContain('credential_host_not_allowed');
    expect(collector.requests).toEqual([]);
  });
});

describe('a shared client secret with allowedHosts', () => {
  it('is not sent to a token URL outside them by an OAuth credential naming it', async () => {
    const clientSecret = await admin.post('/v1/credentials', {
      name: 'pinned-client',
      secret: 'pinned-client-secret-0123456789',
      allowedHosts: ['auth.example.test'],
    });
    expect(clientSecret.status, JSON.stringify(clientSecret.body)).toBe(201);
    const pair = tokens.authorize('shared');
    const oauth = await admin.post('/v1/credentials', {
      name: 'svc-oauth',
      kind: 'oauth2',
      accessToken: pair.accessToken,
      refreshToken: pair.refreshToken,
      expiresIn: 0,
      tokenUrl: tokens.url,
      clientId: 'pinned-client',
      clientSecretCredential: 'pinned-client',
    });
    expect(oauth.status, JSON.stringify(oauth.body)).toBe(201);
    const tool = await admin.post('/v1/tools', {
      name: 'oauth_call',
      description: 'Calls a service with the shared OAuth credential.',
      risk: 'read',
      urlTemplate: `${service.url}/oauth`,
      inputSchema,
      auth: { credential: 'svc-oauth', scheme: 'bearer' },
    });
    expect(tool.status, JSON.stringify(tool.body)).toBe(201);
    const agent = await admin.post<Created>('/v1/agents', { name: 'oauth', tools: ['oauth_call'] });
    const run = await runOnce(member, {
      agentId: agent.body.id,
      input: 'call oauth_call {"q":"d"}',
    });
    expect(run.answer).toContain('credential_host_not_allowed');
    expect(tokens.requests).toEqual([]);
  });
});
