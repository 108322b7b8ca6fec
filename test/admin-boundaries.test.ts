import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * What an admin may not do to another admin (or to themselves), attacked through the API the
 * way a hostile admin would: an admin who could change another admin's role or hold their keys
 * could demote themselves through that admin, lift the limit an owner set on them and promote
 * themselves back, or demote and then erase another admin. Also: a key's scopes bind even a
 * user's own profile, and an expired key is not rotated into a key that never expires.
 */
let server: TestServer;
let operator: ApiClient;
let tenantId: string;

interface Seeded {
  readonly userId: string;
  readonly keyId: string;
  readonly client: ApiClient;
}

async function seed(role: string): Promise<Seeded> {
  const user = await seedUser(operator, { tenantId, role });
  return { ...user, client: apiClient(server.url, user.secret) };
}

const userPath = (userId: string) => `/v1/tenants/${tenantId}/users/${userId}`;

beforeAll(async () => {
  server = await startTestServer();
  operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'admin-bounds');
});

afterAll(async () => {
  await server?.stop();
});

describe('an admin facing another admin', () => {
  it('cannot lift an owner’s limit on themselves through a second admin it made', async () => {
    const owner = await seed('owner');
    const admin = await seed('admin');
    const policy = await owner.client.post<Created>('/v1/policies', {
      level: 'user',
      subjectId: admin.userId,
      limits: { budget: { amountUsd: 0.01, period: 'day' } },
    });
    expect(policy.status).toBe(201);
    // The admin may not make a second admin, nor promote a member whose key it minted.
    const refused = await admin.client.post(`/v1/tenants/${tenantId}/users`, {
      email: 'sock@bounds.test',
      role: 'admin',
    });
    expect(refused.status).toBe(403);
    const member = await admin.client.post<Created>(`/v1/tenants/${tenantId}/users`, {
      email: 'member-sock@bounds.test',
      role: 'member',
    });
    expect(member.status).toBe(201);
    const memberKey = await admin.client.post(`${userPath(member.body.id)}/api-keys`, {
      name: 'held',
    });
    expect(memberKey.status).toBe(201);
    expect(
      (await admin.client.request('PATCH', userPath(member.body.id), { role: 'admin' })).status,
    ).toBe(403);
    // An admin made by an owner: the first admin can neither mint nor list its keys.
    const sock = await owner.client.post<Created>(`/v1/tenants/${tenantId}/users`, {
      email: 'sock@bounds.test',
      role: 'admin',
    });
    expect(sock.status).toBe(201);
    const minted = await admin.client.post(`${userPath(sock.body.id)}/api-keys`, { name: 'x' });
    expect(minted.status).toBe(403);
    expect((await admin.client.get(`${userPath(sock.body.id)}/api-keys`)).status).toBe(403);
    // Had it got one another way (an owner minted it), it still cannot demote the admin.
    const sockKey = await owner.client.post<Created>(`${userPath(sock.body.id)}/api-keys`, {
      name: 'sock',
    });
    const asSock = apiClient(server.url, String(sockKey.body.secret));
    for (const patch of [{ role: 'member' }, { status: 'disabled' }, { displayName: 'x' }]) {
      const refused = await asSock.request<{ code: string }>(
        'PATCH',
        userPath(admin.userId),
        patch,
      );
      expect({ patch, status: refused.status }).toEqual({ patch, status: 403 });
    }
    // Nor step down themselves.
    expect(
      (await admin.client.request('PATCH', userPath(admin.userId), { role: 'member' })).status,
    ).toBe(403);
    expect((await admin.client.request('DELETE', `/v1/policies/${policy.body.id}`)).status).toBe(
      403,
    );
    const limits = await admin.client.get<{ budgets: unknown[] }>('/v1/me/limits');
    expect(limits.body.budgets.length).toBe(1);
    const me = await admin.client.get<{ user: { role: string; status: string } }>('/v1/me');
    expect(me.body.user).toMatchObject({ role: 'admin', status: 'active' });
  });

  it('cannot demote another admin to erase them, nor revoke or rotate their keys', async () => {
    const admin = await seed('admin');
    const other = await seed('admin');
    expect(
      (await admin.client.request('PATCH', userPath(other.userId), { role: 'member' })).status,
    ).toBe(403);
    expect((await admin.client.request('DELETE', userPath(other.userId))).status).toBe(403);
    const keys = `${userPath(other.userId)}/api-keys/${other.keyId}`;
    expect((await admin.client.post(`${keys}/rotate`, {})).status).toBe(403);
    expect((await admin.client.request('DELETE', keys)).status).toBe(403);
    expect((await other.client.get('/v1/me')).status).toBe(200);
  });

  it('still manages members and viewers, but makes no admin', async () => {
    const admin = await seed('admin');
    const member = await seed('member');
    expect(
      (await admin.client.request('PATCH', userPath(member.userId), { displayName: 'Mem' })).status,
    ).toBe(200);
    const key = await admin.client.post(`${userPath(member.userId)}/api-keys`, { name: 'ci' });
    expect(key.status).toBe(201);
    expect(
      (await admin.client.request('PATCH', userPath(member.userId), { role: 'viewer' })).status,
    ).toBe(200);
    expect(
      (await admin.client.request('PATCH', userPath(member.userId), { role: 'admin' })).status,
    ).toBe(403);
  });

  it('leaves owners able to do all of it', async () => {
    const owner = await seed('owner');
    const admin = await seed('admin');
    expect(
      (await owner.client.request('PATCH', userPath(admin.userId), { role: 'member' })).status,
    ).toBe(200);
    expect(
      (await owner.client.request('PATCH', userPath(admin.userId), { role: 'admin' })).status,
    ).toBe(200);
    const keys = `${userPath(admin.userId)}/api-keys/${admin.keyId}`;
    expect((await owner.client.post(`${keys}/rotate`, {})).status).toBe(201);
  });
});

describe('a key’s scopes and a user’s own profile', () => {
  it('refuses a profile change to a key without profile:update-own', async () => {
    const member = await seed('member');
    const narrow = await member.client.post<Created>(`${userPath(member.userId)}/api-keys`, {
      name: 'read-only',
      scopes: ['tenant:read'],
    });
    const readOnly = apiClient(server.url, String(narrow.body.secret));
    const refused = await readOnly.request<{ code: string }>('PATCH', userPath(member.userId), {
      displayName: 'changed',
      metadata: { a: 1 },
    });
    expect(refused.status).toBe(403);
    expect(refused.body.code).toBe('forbidden');
    const me = await member.client.get<{ user: { displayName: string | null } }>('/v1/me');
    expect(me.body.user.displayName).not.toBe('changed');
    const allowed = await member.client.request('PATCH', userPath(member.userId), {
      displayName: 'changed',
    });
    expect(allowed.status, JSON.stringify(allowed.body)).toBe(200);
  });
});

describe('refused sign-ins in the audit log', () => {
  it('audits a revoked key once a minute, not once a request', async () => {
    const owner = await seed('owner');
    const member = await seed('member');
    const keyPath = `${userPath(member.userId)}/api-keys/${member.keyId}`;
    expect((await owner.client.request('DELETE', keyPath)).status).toBe(200);
    for (let attempt = 0; attempt < 25; attempt += 1)
      expect((await member.client.get('/v1/me')).status).toBe(401);
    const log = await owner.client.get<{
      data: { action: string; targetId: string; reason: string }[];
    }>(`/v1/tenants/${tenantId}/audit-events?limit=500`);
    const failures = log.body.data.filter(
      (event) => event.action === 'auth.failed' && event.targetId === member.keyId,
    );
    expect(failures).toEqual([expect.objectContaining({ reason: 'key revoked' })]);
  });
});

describe('rotating a key', () => {
  it('refuses an expired key with 409 and keeps a live key’s expiry on its successor', async () => {
    const member = await seed('member');
    const keys = `${userPath(member.userId)}/api-keys`;
    const soon = await member.client.post<Created>(keys, {
      name: 'short',
      expiresAt: new Date(Date.now() + 1_500).toISOString(),
    });
    expect(soon.status).toBe(201);
    const later = new Date(Date.now() + 86_400_000).toISOString();
    const live = await member.client.post<Created>(keys, { name: 'live', expiresAt: later });
    const rotated = await member.client.post<{ expiresAt: string }>(
      `${keys}/${live.body.id}/rotate`,
      {},
    );
    expect(rotated.status).toBe(201);
    expect(new Date(rotated.body.expiresAt).toISOString()).toBe(later);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const refused = await member.client.post<{ code: string }>(
      `${keys}/${soon.body.id}/rotate`,
      {},
    );
    expect(refused.status).toBe(409);
    expect(refused.body.code).toBe('conflict');
  });
});
