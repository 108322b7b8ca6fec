import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

let server: TestServer;
let operator: ApiClient;
let tenantId: string;
let owner: { userId: string; keyId: string; secret: string };

beforeAll(async () => {
  server = await startTestServer();
  operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'acme');
  owner = await seedUser(operator, { tenantId, role: 'owner', email: 'owner@acme.test' });
});

afterAll(async () => {
  await server?.stop();
});

describe('authentication', () => {
  it('rejects a request without credentials with 401, problem+json and WWW-Authenticate', async () => {
    const response = await apiClient(server.url).get('/v1/me');
    expect(response.status).toBe(401);
    expect(response.headers.get('content-type')).toContain('application/problem+json');
    expect(response.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(response.body).toMatchObject({ code: 'unauthenticated', status: 401 });
  });

  it('rejects unknown keys, malformed headers and random JWT-shaped tokens', async () => {
    for (const credential of [
      `brg_${'A'.repeat(43)}`,
      'nonsense',
      'a.b.c',
      `${testOperatorKey}x`,
    ]) {
      const response = await apiClient(server.url, credential).get('/v1/me');
      expect(response.status, credential).toBe(401);
    }
  });

  it('identifies a user key holder by its credential only', async () => {
    const me = await apiClient(server.url, owner.secret).get<{
      user: Created;
      tenant: Created;
      keyId: string;
    }>('/v1/me');
    expect(me.status).toBe(200);
    expect(me.body.user.id).toBe(owner.userId);
    expect(me.body.tenant.id).toBe(tenantId);
    expect(me.body.keyId).toBe(owner.keyId);
  });

  it('stops accepting a key the moment it is revoked', async () => {
    const member = await seedUser(operator, { tenantId, role: 'member' });
    const client = apiClient(server.url, member.secret);
    expect((await client.get('/v1/me')).status).toBe(200);
    const revoked = await client.request(
      'DELETE',
      `/v1/tenants/${tenantId}/users/${member.userId}/api-keys/${member.keyId}`,
    );
    expect(revoked.status).toBe(200);
    expect(revoked.body).toMatchObject({ status: 'revoked' });
    expect((await client.get('/v1/me')).status).toBe(401);
  });

  it('tells concurrent callers of several tenants apart when their key lookups share a batch', async () => {
    // Under load the lookups waiting for one in flight go out as one database call (migration
    // 0020); each must still answer for its own key only, and an unknown or revoked key
    // in the batch must not take another caller's identity.
    const otherTenant = await seedTenant(operator, 'acme-batch');
    const callers = [
      { ...(await seedUser(operator, { tenantId, role: 'member' })), tenantId },
      {
        ...(await seedUser(operator, { tenantId: otherTenant, role: 'admin' })),
        tenantId: otherTenant,
      },
      {
        ...(await seedUser(operator, { tenantId: otherTenant, role: 'viewer' })),
        tenantId: otherTenant,
      },
    ];
    const revoked = await seedUser(operator, { tenantId: otherTenant, role: 'member' });
    await operator.request(
      'DELETE',
      `/v1/tenants/${otherTenant}/users/${revoked.userId}/api-keys/${revoked.keyId}`,
    );
    const requests = Array.from({ length: 60 }, (_, index) => {
      const kind = index % 5;
      if (kind === 3) return { expected: undefined, secret: `brg_${'B'.repeat(43)}` };
      if (kind === 4) return { expected: undefined, secret: revoked.secret };
      const caller = callers[kind] as (typeof callers)[number];
      return { expected: caller, secret: caller.secret };
    });
    const answers = await Promise.all(
      requests.map((request) =>
        apiClient(server.url, request.secret).get<{
          user: Created;
          tenant: Created;
          keyId: string;
        }>('/v1/me'),
      ),
    );
    answers.forEach((answer, index) => {
      const expected = requests[index]?.expected;
      if (expected === undefined) {
        expect(answer.status).toBe(401);
        return;
      }
      expect(answer.status).toBe(200);
      expect(answer.body).toMatchObject({
        user: { id: expected.userId },
        tenant: { id: expected.tenantId },
        keyId: expected.keyId,
      });
    });
  });

  it('rejects an expired key', async () => {
    const member = await seedUser(operator, { tenantId, role: 'member' });
    const key = await operator.post<Created>(
      `/v1/tenants/${tenantId}/users/${member.userId}/api-keys`,
      {
        name: 'short',
        expiresAt: new Date(Date.now() + 1500).toISOString(),
      },
    );
    expect(key.status).toBe(201);
    const client = apiClient(server.url, key.body.secret);
    expect((await client.get('/v1/me')).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 1600));
    expect((await client.get('/v1/me')).status).toBe(401);
  });

  it('rotates a key: the new secret works, the old one stops after the grace period', async () => {
    const member = await seedUser(operator, { tenantId, role: 'member' });
    const rotated = await apiClient(server.url, member.secret).post<Created>(
      `/v1/tenants/${tenantId}/users/${member.userId}/api-keys/${member.keyId}/rotate`,
      { gracePeriodSeconds: 0 },
    );
    expect(rotated.status).toBe(201);
    expect(rotated.body['rotatedFromId']).toBe(member.keyId);
    expect((await apiClient(server.url, rotated.body.secret).get('/v1/me')).status).toBe(200);
    expect((await apiClient(server.url, member.secret).get('/v1/me')).status).toBe(401);
  });

  it('rejects keys of a disabled user', async () => {
    const member = await seedUser(operator, { tenantId, role: 'member' });
    const disabled = await apiClient(server.url, owner.secret).request(
      'PATCH',
      `/v1/tenants/${tenantId}/users/${member.userId}`,
      {
        status: 'disabled',
      },
    );
    expect(disabled.status).toBe(200);
    expect((await apiClient(server.url, member.secret).get('/v1/me')).status).toBe(401);
  });

  it('never returns a secret or hash when listing keys', async () => {
    const list = await apiClient(server.url, owner.secret).get<{ data: Record<string, unknown>[] }>(
      `/v1/tenants/${tenantId}/users/${owner.userId}/api-keys`,
    );
    expect(list.status).toBe(200);
    expect(list.body.data.length).toBeGreaterThan(0);
    expect(JSON.stringify(list.body)).not.toContain(owner.secret);
    for (const key of list.body.data) {
      expect(key).not.toHaveProperty('secret');
      expect(key).not.toHaveProperty('keyHash');
    }
  });
});

describe('roles and permissions', () => {
  it('lets members read themselves but not list users', async () => {
    const member = await seedUser(operator, { tenantId, role: 'member' });
    const client = apiClient(server.url, member.secret);
    expect((await client.get(`/v1/tenants/${tenantId}/users/${member.userId}`)).status).toBe(200);
    expect((await client.get(`/v1/tenants/${tenantId}/users`)).status).toBe(403);
    expect((await client.get(`/v1/tenants/${tenantId}/users/${owner.userId}`)).status).toBe(404);
  });

  it('does not let an admin create an owner or grant a role above its own', async () => {
    const admin = await seedUser(operator, { tenantId, role: 'admin' });
    const client = apiClient(server.url, admin.secret);
    expect((await client.post(`/v1/tenants/${tenantId}/users`, { role: 'owner' })).status).toBe(
      403,
    );
    const member = await client.post<Created>(`/v1/tenants/${tenantId}/users`, { role: 'member' });
    expect(member.status).toBe(201);
    const promote = await client.request(
      'PATCH',
      `/v1/tenants/${tenantId}/users/${member.body.id}`,
      { role: 'owner' },
    );
    expect(promote.status).toBe(403);
  });

  it('does not let an admin mint keys for an owner', async () => {
    const admin = await seedUser(operator, { tenantId, role: 'admin' });
    const response = await apiClient(server.url, admin.secret).post(
      `/v1/tenants/${tenantId}/users/${owner.userId}/api-keys`,
      { name: 'escalate' },
    );
    expect(response.status).toBe(403);
  });

  it('lets a viewer list and revoke its own keys (one an admin minted for it included), not create them', async () => {
    const viewer = await seedUser(operator, { tenantId, role: 'viewer' });
    const admin = await seedUser(operator, { tenantId, role: 'admin' });
    const keys = `/v1/tenants/${tenantId}/users/${viewer.userId}/api-keys`;
    const minted = await apiClient(server.url, admin.secret).post<Created>(keys, { name: 'mine' });
    expect(minted.status).toBe(201);
    const client = apiClient(server.url, viewer.secret);
    const listed = await client.get<{ data: Created[] }>(keys);
    expect(listed.status).toBe(200);
    expect(listed.body.data.map((key) => key.id).sort()).toEqual(
      [viewer.keyId, minted.body.id].sort(),
    );
    expect((await client.request('DELETE', `${keys}/${minted.body.id}`)).status).toBe(200);
    expect((await apiClient(server.url, minted.body.secret).get('/v1/me')).status).toBe(401);
    expect((await client.post(keys, { name: 'new' })).status).toBe(403);
    expect((await client.post(`${keys}/${viewer.keyId}/rotate`, {})).status).toBe(403);
    // Still only their own: another user's keys are not even visible.
    const other = `/v1/tenants/${tenantId}/users/${admin.userId}/api-keys`;
    expect((await client.get(other)).status).toBe(404);
    expect((await client.request('DELETE', `${other}/${admin.keyId}`)).status).toBe(404);
    expect((await client.request('DELETE', `${keys}/${viewer.keyId}`)).status).toBe(200);
  });

  it('names the permission that would grant it when a key may not list or revoke its own keys', async () => {
    const member = await seedUser(operator, { tenantId, role: 'member' });
    const keys = `/v1/tenants/${tenantId}/users/${member.userId}/api-keys`;
    const scoped = async (scopes: string[]) =>
      apiClient(
        server.url,
        (await operator.post<Created>(keys, { name: scopes.join(' '), scopes })).body.secret,
      );
    const reader = await scoped(['thread:read']);
    for (const [method, path] of [
      ['GET', keys],
      ['DELETE', `${keys}/${member.keyId}`],
    ] as const) {
      const refused = await reader.request(method, path);
      expect(refused.status, method).toBe(403);
      expect(refused.body['detail'], method).toContain("'key:review-own'");
    }
    const created = await reader.post(keys, { name: 'more' });
    expect(created.status).toBe(403);
    expect(created.body['detail']).toContain("'key:manage-own'");
    expect((await (await scoped(['key:review-own'])).get(keys)).status).toBe(200);
    expect((await (await scoped(['key:manage-own'])).get(keys)).status).toBe(200);
  });

  it('refuses to demote the last owner', async () => {
    const solo = await seedTenant(operator, 'solo');
    const soloOwner = await seedUser(operator, { tenantId: solo, role: 'owner' });
    const response = await apiClient(server.url, soloOwner.secret).request(
      'PATCH',
      `/v1/tenants/${solo}/users/${soloOwner.userId}`,
      { role: 'member' },
    );
    expect(response.status).toBe(409);
    expect(response.body).toMatchObject({ code: 'conflict' });
  });

  it('limits a scoped key to its scopes, and a scoped key cannot mint a broader one', async () => {
    const key = await apiClient(server.url, owner.secret).post<Created>(
      `/v1/tenants/${tenantId}/users/${owner.userId}/api-keys`,
      { name: 'read-only', scopes: ['tenant:read', 'key:manage-own'] },
    );
    expect(key.status).toBe(201);
    const scoped = apiClient(server.url, key.body.secret);
    expect((await scoped.get(`/v1/tenants/${tenantId}`)).status).toBe(200);
    expect((await scoped.get(`/v1/tenants/${tenantId}/users`)).status).toBe(403);
    const broader = await scoped.post<Created>(
      `/v1/tenants/${tenantId}/users/${owner.userId}/api-keys`,
      { name: 'wider' },
    );
    expect(broader.status).toBe(201);
    expect(broader.body['scopes']).toEqual(['tenant:read', 'key:manage-own']);
    const escalate = await scoped.post(`/v1/tenants/${tenantId}/users/${owner.userId}/api-keys`, {
      name: 'wider',
      scopes: ['user:manage'],
    });
    expect(escalate.status).toBe(422);
  });

  it('refuses a key without scopes that would carry no permission, as it refuses scopes it cannot grant', async () => {
    const member = await seedUser(operator, { tenantId, role: 'member' });
    const narrow = await operator.post<Created>(
      `/v1/tenants/${tenantId}/users/${owner.userId}/api-keys`,
      { name: 'keys only', scopes: ['key:manage-any'] },
    );
    expect(narrow.status).toBe(201);
    const keys = `/v1/tenants/${tenantId}/users/${member.userId}/api-keys`;
    const before = await operator.get<{ data: unknown[] }>(keys);
    const empty = await apiClient(server.url, narrow.body.secret).post<{
      code: string;
      errors: { path: string; message: string }[];
    }>(keys, { name: 'nothing' });
    expect(empty.status, JSON.stringify(empty.body)).toBe(422);
    expect(empty.body.code).toBe('validation_failed');
    expect(empty.body.errors).toEqual([
      { path: 'body.scopes', message: expect.stringContaining('no permission') },
    ]);
    expect((await operator.get<{ data: unknown[] }>(keys)).body.data).toEqual(before.body.data);
  });

  it('lets only the operator create tenants', async () => {
    const response = await apiClient(server.url, owner.secret).post('/v1/tenants', {
      slug: 'evil',
      name: 'Evil',
    });
    expect(response.status).toBe(403);
  });
});
