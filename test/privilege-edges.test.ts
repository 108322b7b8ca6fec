import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiClient, apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * What an admin may not do to an owner or for themselves, attacked through the API: trust
 * anchors (an OIDC provider decides who every signed-in user is), policies that bind an owner
 * or the admin, an owner's profile, and keys that were rotated already.
 */
let server: TestServer;
let operator: ApiClient;
let tenantId: string;
let owner: { userId: string; keyId: string; client: ApiClient };
let admin: { userId: string; keyId: string; client: ApiClient };
let member: { userId: string; keyId: string; client: ApiClient };

type Created = { id: string };

async function seeded(role: string) {
  const user = await seedUser(operator, { tenantId, role });
  return { userId: user.userId, keyId: user.keyId, client: apiClient(server.url, user.secret) };
}

const budget = { budget: { amountUsd: 0.000001, period: 'day' } };

beforeAll(async () => {
  server = await startTestServer();
  operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'privileges');
  owner = await seeded('owner');
  admin = await seeded('admin');
  member = await seeded('member');
});

afterAll(async () => {
  await server?.stop();
});

describe('OIDC providers', () => {
  const provider = (audience: string) => ({
    name: 'idp',
    issuer: 'https://idp.privileges.test',
    audience,
    publicKeysPem: [
      generateKeyPairSync('ec', { namedCurve: 'P-256' })
        .publicKey.export({ type: 'spki', format: 'pem' })
        .toString(),
    ],
    algorithms: ['ES256'],
  });

  it('are managed by owners only: an admin who could add a key could sign in as anyone', async () => {
    const byAdmin = await admin.client.post(
      `/v1/tenants/${tenantId}/oidc-providers`,
      provider('admin-app'),
    );
    expect(byAdmin.status).toBe(403);
    expect(byAdmin.body).toMatchObject({ code: 'forbidden' });
    const byOwner = await owner.client.post<Created>(
      `/v1/tenants/${tenantId}/oidc-providers`,
      provider('owner-app'),
    );
    expect(byOwner.status).toBe(201);
    const listed = await admin.client.get<{ data: { audience: string }[] }>(
      `/v1/tenants/${tenantId}/oidc-providers`,
    );
    expect(listed.body.data.map((entry) => entry.audience)).toEqual(['owner-app']);
    const removed = await admin.client.request(
      'DELETE',
      `/v1/tenants/${tenantId}/oidc-providers/${byOwner.body.id}`,
    );
    expect(removed.status).toBe(403);
  });
});

describe('OIDC JWKS URLs', () => {
  it('may not point into the deployment’s private network, loopback included', async () => {
    const base = { name: 'jwks', issuer: 'https://jwks.privileges.test' };
    const refused = await owner.client.post<{ errors: { path: string }[] }>(
      `/v1/tenants/${tenantId}/oidc-providers`,
      { ...base, audience: 'a', jwksUrl: 'https://10.20.30.40/.well-known/jwks.json' },
    );
    expect(refused.status).toBe(422);
    expect(refused.body.errors[0]?.path).toBe('body.jwksUrl');
    for (const jwksUrl of ['http://127.0.0.1:9/jwks', 'http://[::1]:9/jwks']) {
      const local = await owner.client.post<{ errors: { path: string }[] }>(
        `/v1/tenants/${tenantId}/oidc-providers`,
        { ...base, audience: 'b', jwksUrl },
      );
      expect(local.status, jwksUrl).toBe(422);
      expect(local.body.errors[0]?.path).toBe('body.jwksUrl');
    }
  });
});

describe('policies', () => {
  it('an admin cannot limit owners, by role or by user or key', async () => {
    for (const body of [
      { level: 'role', role: 'owner', limits: budget },
      { level: 'user', subjectId: owner.userId, limits: budget },
      { level: 'api_key', subjectId: owner.keyId, limits: budget },
    ]) {
      const response = await admin.client.post('/v1/policies', body);
      expect(response.status, JSON.stringify(body)).toBe(403);
    }
    const policies = await owner.client.get<{ data: unknown[] }>('/v1/policies');
    expect(policies.body.data).toEqual([]);
  });

  it('an admin cannot lift, loosen or set a limit on themselves or another admin; an owner can', async () => {
    const onAdmin = await owner.client.post<Created>('/v1/policies', {
      level: 'user',
      subjectId: admin.userId,
      limits: budget,
    });
    expect(onAdmin.status).toBe(201);
    const path = `/v1/policies/${onAdmin.body.id}`;
    const loosened = await admin.client.request('PATCH', path, {
      limits: { budget: { amountUsd: 1000, period: 'day' } },
    });
    expect(loosened.status).toBe(403);
    expect((await admin.client.request('DELETE', path)).status).toBe(403);
    const onOwnRole = await admin.client.post('/v1/policies', {
      level: 'role',
      role: 'admin',
      limits: budget,
    });
    expect(onOwnRole.status).toBe(403);
    // Nor can a fellow admin lift it.
    const otherAdmin = await seeded('admin');
    expect((await otherAdmin.client.request('DELETE', path)).status).toBe(403);
    expect((await owner.client.request('DELETE', path)).status).toBe(204);
  });

  it('an admin still manages members’ limits and the tenant’s', async () => {
    for (const body of [
      { level: 'user', subjectId: member.userId, limits: budget },
      { level: 'api_key', subjectId: member.keyId, limits: budget },
      { level: 'role', role: 'member', limits: budget },
      { level: 'tenant', limits: { requestsPerMinute: 10_000 } },
    ]) {
      const created = await admin.client.post<Created>('/v1/policies', body);
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      expect((await admin.client.request('DELETE', `/v1/policies/${created.body.id}`)).status).toBe(
        204,
      );
    }
  });
});

describe('users and keys', () => {
  it('an admin cannot rewrite an owner’s profile; the owner can', async () => {
    const path = `/v1/tenants/${tenantId}/users/${owner.userId}`;
    const byAdmin = await admin.client.request('PATCH', path, { email: 'evil@example.test' });
    expect(byAdmin.status).toBe(403);
    const byAdminName = await admin.client.request('PATCH', path, { displayName: 'Evil' });
    expect(byAdminName.status).toBe(403);
    const after = await owner.client.get<{ email: string | null; displayName: string | null }>(
      path,
    );
    expect(after.body.email).not.toBe('evil@example.test');
    expect(after.body.displayName).not.toBe('Evil');
    expect((await owner.client.request('PATCH', path, { displayName: 'Olivia' })).status).toBe(200);
    const memberPath = `/v1/tenants/${tenantId}/users/${member.userId}`;
    expect((await admin.client.request('PATCH', memberPath, { displayName: 'Max' })).status).toBe(
      200,
    );
  });

  it('a key in its rotation grace period cannot be rotated again', async () => {
    const user = await seeded('member');
    const keys = `/v1/tenants/${tenantId}/users/${user.userId}/api-keys`;
    const first = await user.client.post<Created & { secret: string }>(
      `${keys}/${user.keyId}/rotate`,
      { gracePeriodSeconds: 300 },
    );
    expect(first.status, JSON.stringify(first.body)).toBe(201);
    const again = await user.client.post(`${keys}/${user.keyId}/rotate`, {
      gracePeriodSeconds: 300,
    });
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({ code: 'conflict' });
    const successor = apiClient(server.url, first.body.secret);
    const next = await successor.post(`${keys}/${first.body.id}/rotate`, {
      gracePeriodSeconds: 0,
    });
    expect(next.status).toBe(201);
  });

  it('a disabled user’s key cannot be rotated, as no key can be created for them', async () => {
    const user = await seeded('member');
    const disabled = await admin.client.request(
      'PATCH',
      `/v1/tenants/${tenantId}/users/${user.userId}`,
      { status: 'disabled' },
    );
    expect(disabled.status).toBe(200);
    const keys = `/v1/tenants/${tenantId}/users/${user.userId}/api-keys`;
    expect((await admin.client.post(keys, { name: 'again' })).status).toBe(409);
    expect((await admin.client.post(`${keys}/${user.keyId}/rotate`, {})).status).toBe(409);
  });
});
