import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createConsentService } from '../src/domain/consent/consent-service.ts';
import { AppError } from '../src/domain/errors.ts';
import { createConsentStore } from '../src/storage/consent/consent-store.ts';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { startMcpAuthServer } from './support/mcp-auth-server.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * Consent: users grant and revoke their own consents, every change is audited in the same
 * transaction, admins read (never change) their users' consents, and `requireConsent` fails
 * with `consent_required` until the user has granted the purpose.
 */
let server: TestServer;
let operator: ApiClient;
let tenantId: string;
let member: { userId: string; client: ApiClient };
let admin: { userId: string; client: ApiClient };
let mcp: Awaited<ReturnType<typeof startMcpAuthServer>>;

interface ConsentBody {
  id: string;
  userId: string;
  purpose: string;
  scope: string;
  version: string;
  status: string;
  grantedBy: { kind: string; userId: string | null };
  revokedAt: string | null;
  revokedBy: { kind: string; userId: string | null } | null;
}

beforeAll(async () => {
  server = await startTestServer({ tools: { tenantHttp: { allowPrivateNetworks: true } } });
  mcp = await startMcpAuthServer();
  operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'consent');
  const seededMember = await seedUser(operator, { tenantId, role: 'member' });
  const seededAdmin = await seedUser(operator, { tenantId, role: 'admin' });
  member = { userId: seededMember.userId, client: apiClient(server.url, seededMember.secret) };
  admin = { userId: seededAdmin.userId, client: apiClient(server.url, seededAdmin.secret) };
});

afterAll(async () => {
  await server?.stop();
  await mcp?.close();
});

describe('consent', () => {
  it('grants, supersedes and revokes a user’s own consent, auditing every change', async () => {
    const granted = await member.client.post<ConsentBody>('/v1/me/consents', {
      purpose: 'long_term_memory',
      version: '2025-01',
    });
    expect(granted.status).toBe(201);
    expect(granted.body).toMatchObject({
      userId: member.userId,
      purpose: 'long_term_memory',
      scope: '*',
      status: 'granted',
      grantedBy: { kind: 'user', userId: member.userId },
    });
    const regranted = await member.client.post<ConsentBody>('/v1/me/consents', {
      purpose: 'long_term_memory',
      version: '2025-02',
    });
    expect(regranted.status).toBe(201);
    const list = await member.client.get<{ data: ConsentBody[] }>('/v1/me/consents');
    expect(list.body.data.map((consent) => [consent.version, consent.status])).toEqual([
      ['2025-02', 'granted'],
      ['2025-01', 'revoked'],
    ]);
    const revoked = await member.client.post<ConsentBody>(
      `/v1/me/consents/${regranted.body.id}/revoke`,
    );
    expect(revoked.status).toBe(200);
    expect(revoked.body).toMatchObject({
      status: 'revoked',
      revokedBy: { kind: 'user', userId: member.userId },
    });
    expect((await member.client.post(`/v1/me/consents/${regranted.body.id}/revoke`)).status).toBe(
      404,
    );
    const events = await admin.client.get<{
      data: { action: string; targetId: string; actorUserId: string; reason: string | null }[];
    }>(`/v1/tenants/${tenantId}/audit-events?limit=500`);
    const consentEvents = events.body.data.filter((event) => event.action.startsWith('consent.'));
    expect(consentEvents.map((event) => [event.action, event.targetId])).toEqual([
      ['consent.granted', granted.body.id],
      ['consent.revoked', granted.body.id],
      ['consent.granted', regranted.body.id],
      ['consent.revoked', regranted.body.id],
    ]);
    expect(consentEvents[1]?.reason).toBe('superseded by a new grant');
  });

  it('refuses purposes outside the closed list', async () => {
    for (const purpose of ['marketing', 'tool:', 'tool:Evil Name', 'content_capture ']) {
      const response = await member.client.post('/v1/me/consents', { purpose, version: '1' });
      expect(response.status, purpose).toBe(422);
    }
  });

  it('refuses a scope that is neither * nor an agent id, and any but * for long-term memory', async () => {
    for (const [purpose, scope] of [
      ['content_capture', 'agent-a'],
      ['tool:calculator', 'calculator'],
      ['long_term_memory', randomUUID()],
    ]) {
      const response = await member.client.post('/v1/me/consents', {
        purpose,
        scope,
        version: '1',
      });
      expect(response.status, `${purpose} ${scope}`).toBe(422);
    }
  });

  it('refuses a scope naming no agent of the tenant, and a tool purpose naming no tool', async () => {
    const elsewhere = await seedTenant(operator, 'consent-elsewhere');
    const foreignAdmin = apiClient(
      server.url,
      (await seedUser(operator, { tenantId: elsewhere, role: 'admin' })).secret,
    );
    const foreignAgent = await foreignAdmin.post<Created>('/v1/agents', { name: 'theirs' });
    expect(foreignAgent.status).toBe(201);
    const refusals = [];
    for (const scope of [randomUUID(), foreignAgent.body.id, foreignAgent.body.id.toUpperCase()]) {
      const response = await member.client.post('/v1/me/consents', {
        purpose: 'content_capture',
        scope,
        version: '1',
      });
      expect(response.status, scope).toBe(422);
      const { code, errors } = response.body as { code: string; errors: unknown };
      refusals.push(JSON.stringify({ code, errors }));
    }
    // Another tenant's agent is answered as one that exists nowhere.
    expect(new Set(refusals).size).toBe(1);
    for (const purpose of ['tool:nonexistent_tool', 'tool:mcp:nosrv:x']) {
      const response = await member.client.post('/v1/me/consents', { purpose, version: '1' });
      expect(response.status, purpose).toBe(422);
      expect(response.body).toMatchObject({
        code: 'validation_failed',
        errors: [{ path: 'body.purpose' }],
      });
    }
    const listed = await member.client.get<{ data: ConsentBody[] }>('/v1/me/consents');
    expect(listed.body.data.map((consent) => consent.purpose)).not.toContain(
      'tool:nonexistent_tool',
    );
  });

  it('lists and revokes consents recorded before their targets were checked', async () => {
    const store = createConsentStore(server.brigade.storage.database);
    const principal = {
      kind: 'user' as const,
      tenantId,
      userId: member.userId,
      role: 'member' as const,
      keyId: undefined,
      scopes: undefined,
      authMethod: 'api_key' as const,
    };
    const legacy = await store.grant(
      principal,
      { tenantId, userId: member.userId },
      { purpose: 'tool:long_gone_tool', scope: randomUUID(), version: 'old' },
    );
    const listed = await member.client.get<{ data: ConsentBody[] }>('/v1/me/consents');
    expect(listed.body.data.map((consent) => consent.id)).toContain(legacy.id);
    const revoked = await member.client.post<ConsentBody>(`/v1/me/consents/${legacy.id}/revoke`);
    expect(revoked.status).toBe(200);
    expect(revoked.body.status).toBe('revoked');
  });

  it('accepts the purpose of an MCP tool of one of the tenant’s servers', async () => {
    const registered = await admin.client.post('/v1/mcp-servers', { name: 'files', url: mcp.url });
    expect(registered.status, JSON.stringify(registered.body)).toBe(201);
    const granted = await member.client.post<ConsentBody>('/v1/me/consents', {
      purpose: 'tool:mcp:files:read_file.v2',
      version: '1',
    });
    expect(granted.status, JSON.stringify(granted.body)).toBe(201);
    expect(granted.body.purpose).toBe('tool:mcp:files:read_file.v2');
  });

  it('lets admins read, but nobody else revoke, a user’s consents', async () => {
    const granted = await member.client.post<ConsentBody>('/v1/me/consents', {
      purpose: 'tool:http_request',
      version: '1',
    });
    const read = await admin.client.get<{ data: ConsentBody[] }>(
      `/v1/tenants/${tenantId}/users/${member.userId}/consents`,
    );
    expect(read.status).toBe(200);
    expect(read.body.data.map((consent) => consent.id)).toContain(granted.body.id);
    const attempt = await admin.client.post(`/v1/me/consents/${granted.body.id}/revoke`);
    expect(attempt.status).toBe(404);
    expect(
      (await member.client.get(`/v1/tenants/${tenantId}/users/${admin.userId}/consents`)).status,
    ).toBe(403);
    const still = await member.client.get<{ data: ConsentBody[] }>(
      '/v1/me/consents?status=granted',
    );
    expect(still.body.data.map((consent) => consent.id)).toContain(granted.body.id);
  });

  it('makes requireConsent fail with consent_required until the purpose is granted', async () => {
    const consents = createConsentService({
      store: createConsentStore(server.brigade.storage.database),
    });
    const subject = { tenantId, userId: admin.userId };
    const refusal = await consents
      .requireConsent(subject, 'content_capture')
      .catch((error) => error);
    expect(refusal).toBeInstanceOf(AppError);
    expect((refusal as AppError).code).toBe('consent_required');
    const agentA = (await admin.client.post<Created>('/v1/agents', { name: 'agent-a' })).body.id;
    const agentB = randomUUID();
    // An agent id in capitals is the same id: stored as ids are, in lower case.
    const scoped = await admin.client.post<ConsentBody>('/v1/me/consents', {
      purpose: 'content_capture',
      scope: agentA.toUpperCase(),
      version: '1',
    });
    expect(scoped.status).toBe(201);
    expect(scoped.body.scope).toBe(agentA);
    expect((await consents.requireConsent(subject, 'content_capture', agentA)).id).toBe(
      scoped.body.id,
    );
    await expect(consents.requireConsent(subject, 'content_capture', agentB)).rejects.toThrow(
      /consent/,
    );
    await admin.client.post('/v1/me/consents', { purpose: 'content_capture', version: '1' });
    await expect(
      consents.requireConsent(subject, 'content_capture', agentB),
    ).resolves.toMatchObject({ scope: '*' });
    await admin.client.post(`/v1/me/consents/${scoped.body.id}/revoke`);
    // Another user's grant never counts.
    await expect(
      consents.requireConsent({ tenantId, userId: member.userId }, 'content_capture'),
    ).rejects.toThrow(/consent/);
  });
});
