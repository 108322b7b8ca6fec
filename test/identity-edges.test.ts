import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiClient, apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * The identity API's edges: bad input of every kind, the published OpenAPI document, and
 * tenant status changes (authentication and roles are in identity-api.test.ts).
 */
let server: TestServer;
let operator: ApiClient;
let tenantId: string;

beforeAll(async () => {
  server = await startTestServer();
  operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'acme');
});

afterAll(async () => {
  await server?.stop();
});

describe('bad input', () => {
  it('answers malformed JSON with 400 invalid_json', async () => {
    const response = await fetch(`${server.url}/v1/tenants`, {
      method: 'POST',
      headers: { authorization: `Bearer ${testOperatorKey}`, 'content-type': 'application/json' },
      body: '{"slug":',
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ code: 'invalid_json' });
  });

  it('answers a method a path does not take with 405 and Allow, an unknown path with 404', async () => {
    const wrong = await operator.request('PUT', '/v1/tenants');
    expect(wrong.status).toBe(405);
    expect(wrong.body).toMatchObject({ code: 'method_not_allowed' });
    const headers = await fetch(`${server.url}/v1/tenants/${tenantId}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${testOperatorKey}` },
    });
    expect(headers.status).toBe(405);
    expect(headers.headers.get('allow')?.split(', ').sort()).toEqual(['GET', 'PATCH']);
    expect((await operator.get('/v1/no-such-thing')).status).toBe(404);
  });

  it('lists every invalid and unknown field with its path in one 422', async () => {
    const response = await operator.post<{ code: string; errors: { path: string }[] }>(
      '/v1/tenants',
      {
        slug: 'Not A Slug',
        name: '',
        timeZone: 'Mars/Olympus',
        colour: 'red',
      },
    );
    expect(response.status).toBe(422);
    expect(response.body.code).toBe('validation_failed');
    const paths = response.body.errors.map((error) => error.path).sort();
    expect(paths).toEqual(['body.colour', 'body.name', 'body.slug', 'body.timeZone']);
  });

  it('lists every problem of a new API key at once, each under its body path', async () => {
    const member = await seedUser(operator, { tenantId, role: 'member' });
    const keys = `/v1/tenants/${tenantId}/users/${member.userId}/api-keys`;
    const response = await apiClient(server.url, member.secret).post<{
      code: string;
      errors: { path: string }[];
    }>(keys, {
      name: 'x',
      scopes: ['thread:read', 'user:manage', 'audit:read'],
      expiresAt: '2000-01-01T00:00:00Z',
    });
    expect(response.status).toBe(422);
    expect(response.body.code).toBe('validation_failed');
    expect(response.body.errors.map((error) => error.path).sort()).toEqual([
      'body.expiresAt',
      'body.scopes.1',
      'body.scopes.2',
    ]);
    const listed = await operator.get<{ data: unknown[] }>(keys);
    expect(listed.body.data).toHaveLength(1);
  });

  it('answers a malformed path id as it answers a well-formed unknown one', async () => {
    const unknown = '00000000-0000-4000-8000-000000000000';
    const member = await seedUser(operator, { tenantId, role: 'member' });
    const users = `/v1/tenants/${tenantId}/users`;
    const keys = `${users}/${member.userId}/api-keys`;
    const cases: [string, (id: string) => string, unknown?][] = [
      ['GET', (id) => `/v1/tenants/${id}`],
      ['GET', (id) => `${users}/${id}`],
      ['PATCH', (id) => `${users}/${id}`, { displayName: 'x' }],
      ['DELETE', (id) => `${users}/${id}`],
      ['GET', (id) => `${users}/${id}/api-keys`],
      ['POST', (id) => `${users}/${id}/api-keys`, { name: 'x' }],
      ['DELETE', (id) => `${keys}/${id}`],
      ['POST', (id) => `${keys}/${id}/rotate`, {}],
      ['DELETE', (id) => `/v1/tenants/${tenantId}/oidc-providers/${id}`],
    ];
    for (const [method, path, body] of cases) {
      const expected = await operator.request(method, path(unknown), body);
      expect(expected.status, `${method} ${path(unknown)}`).toBe(404);
      expect(expected.body['code']).toMatch(/_not_found$/);
      for (const id of ['123', unknown.replaceAll('-', ''), '%00', `${unknown}x`]) {
        const response = await operator.request(method, path(id), body);
        expect(response.status, `${method} ${path(id)}`).toBe(404);
        expect(response.body['code'], `${method} ${path(id)}`).toBe(expected.body['code']);
      }
    }
  });

  it('rejects a body over the limit with 413 and writes nothing', async () => {
    const response = await operator.post('/v1/tenants', {
      slug: 'big',
      name: 'x',
      metadata: { blob: 'x'.repeat(2 * 1024 * 1024) },
    });
    expect(response.status).toBe(413);
    expect((await operator.get(`/v1/tenants?limit=100`)).body).not.toMatchObject({
      data: [{ slug: 'big' }],
    });
  });

  it('counts a chunked body (no Content-Length) against the same limit', async () => {
    // The limit is checked from Content-Length when there is one; a chunked body is counted
    // as it streams, so leaving the header out gets around nothing.
    async function chunked(body: string): Promise<{ status: number; text: string }> {
      const { request } = await import('node:http');
      return new Promise((resolve, reject) => {
        const outgoing = request(
          `${server.url}/v1/tenants`,
          {
            method: 'POST',
            headers: {
              authorization: `Bearer ${testOperatorKey}`,
              'content-type': 'application/json',
              'transfer-encoding': 'chunked',
            },
          },
          (response) => {
            let text = '';
            response.setEncoding('utf8');
            response.on('data', (chunk: string) => {
              text += chunk;
            });
            response.on('end', () => resolve({ status: response.statusCode ?? 0, text }));
          },
        );
        outgoing.on('error', reject);
        for (let offset = 0; offset < body.length; offset += 64 * 1024)
          outgoing.write(body.slice(offset, offset + 64 * 1024));
        outgoing.end();
      });
    }
    const big = await chunked(
      JSON.stringify({
        slug: 'big-chunked',
        name: 'x',
        metadata: { blob: 'x'.repeat(2 * 1024 * 1024) },
      }),
    );
    expect(big.status).toBe(413);
    expect(JSON.parse(big.text)).toMatchObject({ code: 'payload_too_large' });
    const small = await chunked(JSON.stringify({ slug: 'small-chunked', name: 'x' }));
    expect(small.status).toBe(201);
    expect((await operator.get(`/v1/tenants?limit=100`)).body).not.toMatchObject({
      data: expect.arrayContaining([expect.objectContaining({ slug: 'big-chunked' })]),
    });
  });

  it('rejects a non-JSON body with 415', async () => {
    const response = await fetch(`${server.url}/v1/tenants`, {
      method: 'POST',
      headers: { authorization: `Bearer ${testOperatorKey}`, 'content-type': 'text/plain' },
      body: 'slug=acme',
    });
    expect(response.status).toBe(415);
  });

  it('reads JSON as UTF-8 only: another declared charset is 415, utf-8 in any spelling is read', async () => {
    const post = (contentType: string, slug: string) =>
      fetch(`${server.url}/v1/tenants`, {
        method: 'POST',
        headers: { authorization: `Bearer ${testOperatorKey}`, 'content-type': contentType },
        body: JSON.stringify({ slug, name: 'Charset' }),
      });
    for (const charset of ['utf-16', 'UTF-16LE', '"iso-8859-1"', 'latin1']) {
      const response = await post(`application/json; charset=${charset}`, 'never-created');
      expect(response.status, charset).toBe(415);
      expect(await response.json()).toMatchObject({ code: 'unsupported_media_type' });
    }
    expect((await post('application/json; charset=UTF-8', 'charset-a')).status).toBe(201);
    expect((await post('application/json;charset="utf8"', 'charset-b')).status).toBe(201);
    expect((await post('application/json; charset=us-ascii', 'charset-c')).status).toBe(201);
    expect((await operator.get('/v1/tenants?limit=100')).body).not.toMatchObject({
      data: expect.arrayContaining([expect.objectContaining({ slug: 'never-created' })]),
    });
  });

  it('refuses a time zone the database does not know, though Node knows it, on create and change', async () => {
    for (const timeZone of ['US/Pacific-New', 'Canada/East-Saskatchewan', 'SystemV/EST5']) {
      const created = await operator.post<{ errors: { path: string }[] }>('/v1/tenants', {
        slug: 'odd-zone',
        name: 'Odd',
        timeZone,
      });
      expect({ timeZone, status: created.status }).toEqual({ timeZone, status: 422 });
      expect(created.body.errors[0]?.path).toBe('body.timeZone');
      const changed = await operator.request('PATCH', `/v1/tenants/${tenantId}`, { timeZone });
      expect(changed.status).toBe(422);
    }
    expect(
      (await operator.get<{ timeZone: string }>(`/v1/tenants/${tenantId}`)).body.timeZone,
    ).toBe('UTC');
    expect(
      (await operator.request('PATCH', `/v1/tenants/${tenantId}`, { timeZone: 'Europe/Paris' }))
        .status,
    ).toBe(200);
    await operator.request('PATCH', `/v1/tenants/${tenantId}`, { timeZone: 'UTC' });
  });

  it('answers a duplicate slug or e-mail with 409 conflict naming the field', async () => {
    const response = await operator.post('/v1/tenants', { slug: 'acme', name: 'Again' });
    expect(response.status).toBe(409);
    expect(response.body).toMatchObject({
      code: 'conflict',
      field: 'slug',
      detail: 'A tenant with this slug exists already.',
    });
    const users = `/v1/tenants/${tenantId}/users`;
    expect((await operator.post(users, { email: 'twice@acme.test', role: 'member' })).status).toBe(
      201,
    );
    // E-mails are unique whatever their case; the value is not echoed back.
    const again = await operator.post(users, { email: 'TWICE@acme.test', role: 'member' });
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({
      code: 'conflict',
      field: 'email',
      detail: 'The tenant has a user with this e-mail already.',
    });
  });

  it('answers unknown routes and malformed ids with 404 problem documents', async () => {
    expect((await operator.get('/v1/nothing-here')).body).toMatchObject({
      code: 'not_found',
      status: 404,
    });
    expect((await operator.get('/v1/tenants/not-a-uuid')).status).toBe(404);
  });
});

describe('OpenAPI', () => {
  it('publishes every stable operationId', async () => {
    const document = await apiClient(server.url).get<{
      paths: Record<string, Record<string, { operationId?: string }>>;
    }>('/openapi.json');
    expect(document.status).toBe(200);
    const operationIds = Object.values(document.body.paths).flatMap((methods) =>
      Object.values(methods).map((operation) => operation.operationId),
    );
    for (const id of [
      'createTenant',
      'listTenants',
      'getTenant',
      'createUser',
      'listUsers',
      'getUser',
      'updateUser',
      'createApiKey',
      'listApiKeys',
      'revokeApiKey',
      'getMe',
    ]) {
      expect(operationIds).toContain(id);
    }
  });

  it('declares no component nullable: only the fields that may be null (getMe’s tenant and user)', async () => {
    const document = (
      await apiClient(server.url).get<{
        components: { schemas: Record<string, { type?: unknown }> };
      }>('/openapi.json')
    ).body;
    const schemas = document.components.schemas;
    const nullable = Object.entries(schemas)
      .filter(([, schema]) => Array.isArray(schema.type) && schema.type.includes('null'))
      .map(([name]) => name);
    expect(nullable).toEqual([]);
    expect(schemas['Tenant']?.type).toBe('object');
    expect(schemas['User']?.type).toBe('object');
    expect(schemas['Me']).toMatchObject({
      properties: {
        tenant: { anyOf: [{ $ref: '#/components/schemas/Tenant' }, { type: 'null' }] },
        user: { anyOf: [{ $ref: '#/components/schemas/User' }, { type: 'null' }] },
      },
    });
  });

  it('serves health and readiness without credentials', async () => {
    expect((await apiClient(server.url).get('/healthz')).status).toBe(200);
    expect((await apiClient(server.url).get('/readyz')).status).toBe(200);
  });
});

describe('usage reports', () => {
  it('say when there were more groups than a report lists, and still total every record', async () => {
    const tenant = await seedTenant(operator, 'many-models');
    const user = await seedUser(operator, { tenantId: tenant, role: 'owner' });
    const database = new pg.Client({ connectionString: server.database.url });
    await database.connect();
    try {
      await database.query(
        `insert into brigade.usage_records
           (tenant_id, user_id, source, provider, model, input_tokens, output_tokens,
            cached_tokens, estimated, cost, status, created_at)
         select $1, $2, 'api', 'mock', 'model-' || n, 1, 1, 0, false, 1, 'ok', now()
           from generate_series(1, 10002) as n`,
        [tenant, user.userId],
      );
    } finally {
      await database.end();
    }
    const owner = apiClient(server.url, user.secret);
    const report = await owner.get<{
      data: unknown[];
      truncated: boolean;
      totals: { requests: number };
    }>('/v1/usage?groupBy=model');
    expect(report.status).toBe(200);
    expect(report.body).toMatchObject({ truncated: true, totals: { requests: 10_002 } });
    expect(report.body.data).toHaveLength(10_000);
    const csv = await owner.request('GET', '/v1/usage/export?groupBy=model');
    expect(csv.headers.get('x-brigade-truncated')).toBe('true');
    const small = await owner.get<{ truncated: boolean }>('/v1/usage?groupBy=provider');
    expect(small.body.truncated).toBe(false);
  });
});

describe('tenant changes', () => {
  it('lets the operator suspend a tenant, which refuses its keys until reactivated', async () => {
    const tenant = await seedTenant(operator, 'suspendable');
    const user = await seedUser(operator, { tenantId: tenant, role: 'owner' });
    const client = apiClient(server.url, user.secret);
    expect((await client.get('/v1/me')).status).toBe(200);
    const suspended = await operator.request('PATCH', `/v1/tenants/${tenant}`, {
      status: 'suspended',
    });
    expect(suspended.status).toBe(200);
    expect(suspended.body).toMatchObject({ status: 'suspended' });
    expect((await client.get('/v1/me')).status).toBe(401);
    await operator.request('PATCH', `/v1/tenants/${tenant}`, { status: 'active' });
    expect((await client.get('/v1/me')).status).toBe(200);
  });

  it('lets owners rename their tenant but not suspend it, and admins neither', async () => {
    const tenant = await seedTenant(operator, 'renamable');
    const tenantOwner = apiClient(
      server.url,
      (await seedUser(operator, { tenantId: tenant, role: 'owner' })).secret,
    );
    const tenantAdmin = apiClient(
      server.url,
      (await seedUser(operator, { tenantId: tenant, role: 'admin' })).secret,
    );
    const renamed = await tenantOwner.request('PATCH', `/v1/tenants/${tenant}`, {
      name: 'Renamed',
      timeZone: 'Europe/Paris',
    });
    expect(renamed.status).toBe(200);
    expect(renamed.body).toMatchObject({ name: 'Renamed', timeZone: 'Europe/Paris' });
    expect(
      (await tenantOwner.request('PATCH', `/v1/tenants/${tenant}`, { status: 'suspended' })).status,
    ).toBe(403);
    expect(
      (await tenantAdmin.request('PATCH', `/v1/tenants/${tenant}`, { name: 'Mine' })).status,
    ).toBe(403);
    expect(
      (await tenantOwner.request('PATCH', `/v1/tenants/${tenantId}`, { name: 'Theirs' })).status,
    ).toBe(404);
    expect((await operator.get<{ name: string }>(`/v1/tenants/${tenantId}`)).body.name).toBe(
      'acme',
    );
  });
});
