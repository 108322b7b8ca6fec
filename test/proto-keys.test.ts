import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiClient, apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * A key named `__proto__` in the free-form JSON a client sends (metadata, a tool's schema, an
 * OIDC role mapping) is refused with a 422 naming it, at any depth, and nothing is written: it
 * used to be dropped without a word (`{"__proto__":…,"a":1}` stored as `{"a":1}`).
 */
let server: TestServer;
let operator: ApiClient;
let tenantId: string;
let owner: ApiClient;
let ownerSecret: string;

type Created = { id: string; metadata: Record<string, unknown> };
type Problem = { code: string; errors?: { path: string; message: string }[] };

beforeAll(async () => {
  server = await startTestServer();
  operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'proto-keys');
  ownerSecret = (await seedUser(operator, { tenantId, role: 'owner' })).secret;
  owner = apiClient(server.url, ownerSecret);
});

afterAll(async () => {
  await server?.stop();
});

/** Sends `body` as written: a client's JSON text, `__proto__` keys and all. */
async function send(
  request: { readonly method: string; readonly path: string; readonly body: string },
  secret = ownerSecret,
) {
  const response = await fetch(`${server.url}${request.path}`, {
    method: request.method,
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: request.body,
  });
  return { status: response.status, body: (await response.json()) as Problem };
}

/** Expects the 422 refusal of a `__proto__` key at `path`. */
function expectRefused(response: { status: number; body: Problem }, path: string) {
  expect(response.status).toBe(422);
  expect(response.body.code).toBe('validation_failed');
  expect(response.body.errors).toEqual([{ path, message: "'__proto__' may not be used as a key" }]);
}

const metadataBodies = [
  { json: '{"__proto__":{"x":1},"a":1}', path: 'body.metadata.__proto__' },
  { json: '{"a":{"b":[1,{"__proto__":1}]}}', path: 'body.metadata.a.b.1.__proto__' },
];

describe('a key named __proto__ in metadata', () => {
  it('refuses it when a thread is created, and writes nothing', async () => {
    const before = await owner.get<{ data: unknown[] }>('/v1/threads?limit=100');
    for (const { json, path } of metadataBodies)
      expectRefused(
        await send({ method: 'POST', path: '/v1/threads', body: `{"metadata":${json}}` }),
        path,
      );
    const after = await owner.get<{ data: unknown[] }>('/v1/threads?limit=100');
    expect(after.body.data.length).toBe(before.body.data.length);
  });

  it('refuses it when an agent is created or updated, and writes nothing', async () => {
    for (const { json, path } of metadataBodies)
      expectRefused(
        await send({
          method: 'POST',
          path: '/v1/agents',
          body: `{"name":"proto","model":"local","metadata":${json}}`,
        }),
        path,
      );
    const agents = await owner.get<{ data: { name: string }[] }>('/v1/agents?limit=100');
    expect(agents.body.data.map((agent) => agent.name)).not.toContain('proto');
    const agent = await owner.post<Created>('/v1/agents', {
      name: 'kept',
      model: 'local',
      metadata: { kept: true },
    });
    for (const { json, path } of metadataBodies)
      expectRefused(
        await send({
          method: 'PATCH',
          path: `/v1/agents/${agent.body.id}`,
          body: `{"metadata":${json}}`,
        }),
        path,
      );
    const unchanged = await owner.get<Created>(`/v1/agents/${agent.body.id}`);
    expect(unchanged.body.metadata).toEqual({ kept: true });
  });

  it('refuses it in a user’s and a tenant’s metadata', async () => {
    const users = `/v1/tenants/${tenantId}/users`;
    const before = await operator.get<{ data: unknown[] }>(`${users}?limit=100`);
    for (const request of [
      { method: 'POST', path: users, body: '{"role":"member","metadata":{"__proto__":{}}}' },
      { method: 'PATCH', path: `/v1/tenants/${tenantId}`, body: '{"metadata":{"__proto__":{}}}' },
    ])
      expectRefused(await send(request, testOperatorKey), 'body.metadata.__proto__');
    const after = await operator.get<{ data: unknown[] }>(`${users}?limit=100`);
    expect(after.body.data.length).toBe(before.body.data.length);
    const tenant = await operator.get<Created>(`/v1/tenants/${tenantId}`);
    expect(JSON.stringify(tenant.body.metadata)).not.toContain('__proto__');
  });

  it('keeps other keys that name Object members', async () => {
    const thread = await send({
      method: 'POST',
      path: '/v1/threads',
      body: '{"metadata":{"constructor":1,"toString":{"a":2}}}',
    });
    expect(thread.status).toBe(201);
    expect((thread.body as unknown as Created).metadata).toEqual({
      constructor: 1,
      toString: { a: 2 },
    });
  });
});

describe('a key named __proto__ elsewhere', () => {
  it('refuses it at the top of a tool’s schema, which was dropped', async () => {
    const body = JSON.stringify({
      name: 'protoschema',
      description: 'x',
      risk: 'read',
      urlTemplate: 'https://api.example.com/q',
      inputSchema: { type: 'object', properties: {} },
    }).replace('"inputSchema":{', '"inputSchema":{"__proto__":{"type":"string"},');
    expectRefused(
      await send({ method: 'POST', path: '/v1/tools', body }),
      'body.inputSchema.__proto__',
    );
    const tools = await owner.get<{ data: { name: string }[] }>('/v1/tools');
    expect(tools.body.data.map((tool) => tool.name)).not.toContain('protoschema');
  });

  it('refuses it in an OIDC role mapping', async () => {
    const path = `/v1/tenants/${tenantId}/oidc-providers`;
    const body = JSON.stringify({
      name: 'idp',
      issuer: 'https://idp.example.test',
      audience: 'brigade',
      jwksUrl: 'https://idp.example.test/jwks',
      roleClaim: 'groups',
      roleMapping: { admins: 'admin' },
    }).replace('"roleMapping":{', '"roleMapping":{"__proto__":"admin",');
    expectRefused(
      await send({ method: 'POST', path, body }, testOperatorKey),
      'body.roleMapping.__proto__',
    );
    const providers = await operator.get<{ data: unknown[] }>(path);
    expect(providers.body.data).toEqual([]);
  });
});
