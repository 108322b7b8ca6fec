import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli/main.ts';
import { type ApiClient, apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * The edges of the audit and usage operations: the operator naming a tenant that does not
 * exist, cursors that are not decimal integers, and the CLI's exit status for a bad range.
 */
let server: TestServer;
let operator: ApiClient;
let tenantId: string;
let admin: ApiClient;

const unknownTenant = '00000000-0000-4000-8000-000000000000';

beforeAll(async () => {
  server = await startTestServer();
  operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'audit-edges');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
});

afterAll(async () => {
  await server?.stop();
});

describe('the operator naming a tenant that does not exist', () => {
  it('gets 404 tenant_not_found from the audit operations, not an empty intact log', async () => {
    for (const [method, path] of [
      ['GET', `/v1/tenants/${unknownTenant}/audit-events`],
      ['POST', `/v1/tenants/${unknownTenant}/audit/verify`],
      ['GET', `/v1/tenants/${unknownTenant}/audit/checkpoints`],
    ] as const) {
      const response = await operator.request<{ code: string }>(method, path);
      expect(response.status, `${method} ${path}`).toBe(404);
      expect(response.body.code).toBe('tenant_not_found');
    }
    // A tenant that exists still answers.
    const known = await operator.post<{ ok: boolean }>(`/v1/tenants/${tenantId}/audit/verify`);
    expect(known.status).toBe(200);
    expect(known.body.ok).toBe(true);
  });

  it('gets 404 tenant_not_found from the usage report and its export, not zeros', async () => {
    for (const path of [
      `/v1/usage?tenantId=${unknownTenant}`,
      `/v1/usage/export?tenantId=${unknownTenant}`,
    ]) {
      const response = await operator.get<{ code: string }>(path);
      expect(response.status, path).toBe(404);
      expect(response.body.code).toBe('tenant_not_found');
    }
    expect((await operator.get(`/v1/usage?tenantId=${tenantId}`)).status).toBe(200);
  });
});

describe('usage report ranges', () => {
  it('cover at most 366 days, as the served parameters say', async () => {
    const document = (await (await fetch(`${server.url}/openapi.json`)).json()) as {
      paths: Record<
        string,
        Record<string, { parameters?: { name: string; description?: string }[] }>
      >;
    };
    for (const path of ['/v1/usage', '/v1/usage/export']) {
      const parameters = document.paths[path]?.['get']?.parameters ?? [];
      for (const name of ['from', 'to'])
        expect(
          parameters.find((parameter) => parameter.name === name)?.description,
          `${path} ${name}`,
        ).toContain('366 days');
    }
    const longest = await admin.get('/v1/usage?from=2024-01-01T00:00:00Z&to=2025-01-01T00:00:00Z');
    expect(longest.status).toBe(200);
    const tooLong = await admin.get<{ code: string; errors: { path: string }[] }>(
      '/v1/usage?from=2024-01-01T00:00:00Z&to=2025-01-02T00:00:01Z',
    );
    expect(tooLong.status).toBe(422);
    expect(tooLong.body.code).toBe('validation_failed');
    expect(tooLong.body.errors.map((error) => error.path)).toEqual(['from']);
  });
});

describe('sequence-number cursors', () => {
  it('accept only decimal integers', async () => {
    for (const path of ['audit-events', 'audit/checkpoints']) {
      for (const after of ['1e3', '0x10', '2.5', '', '-1', ' 1', '1000000000000000']) {
        const response = await admin.get(
          `/v1/tenants/${tenantId}/${path}?after=${encodeURIComponent(after)}`,
        );
        expect(response.status, `${path}?after=${after}`).toBe(422);
      }
      expect((await admin.get(`/v1/tenants/${tenantId}/${path}?after=1`)).status).toBe(200);
    }
    const page = await admin.get<{ data: { seq: number }[] }>(
      `/v1/tenants/${tenantId}/audit-events?after=1&limit=1`,
    );
    expect(page.body.data.map((event) => event.seq)).toEqual([2]);
  });
});

describe('brigade usage report', () => {
  it('exits 2 for --from after --to, like every other invalid flag', async () => {
    const err: string[] = [];
    const status = await runCli(
      [
        'usage',
        'report',
        '--tenant',
        'audit-edges',
        '--from',
        '2025-02-01T00:00:00Z',
        '--to',
        '2025-01-01T00:00:00Z',
      ],
      { out: () => undefined, err: (text) => err.push(text) },
      { DATABASE_URL: server.database.url, LOG_LEVEL: 'silent' },
    );
    expect(status).toBe(2);
    expect(err.join('\n')).toContain('--from');
  });
});

interface Listed {
  action: string;
  targetId: string | null;
  data: Record<string, unknown>;
}

describe('update events', () => {
  it('record the new values of status, role and settings, never free text', async () => {
    const owner = apiClient(
      server.url,
      (await seedUser(operator, { tenantId, role: 'owner' })).secret,
    );
    const member = await seedUser(operator, { tenantId, role: 'member' });
    const user = `/v1/tenants/${tenantId}/users/${member.userId}`;
    expect((await admin.request('PATCH', user, { status: 'disabled' })).status).toBe(200);
    expect((await admin.request('PATCH', user, { status: 'active' })).status).toBe(200);
    expect(
      (await admin.request('PATCH', user, { displayName: 'Jane Private', role: 'viewer' })).status,
    ).toBe(200);
    expect(
      (await owner.request('PATCH', `/v1/tenants/${tenantId}`, { captureContent: true })).status,
    ).toBe(200);
    const log = await admin.get<{ data: Listed[] }>(
      `/v1/tenants/${tenantId}/audit-events?limit=500`,
    );
    const about = (id: string) => log.body.data.filter((event) => event.targetId === id);
    const userEvents = about(member.userId).filter((event) => event.action !== 'user.created');
    expect(userEvents.map((event) => [event.action, event.data['changes']])).toEqual([
      ['user.updated', { status: { from: 'active', to: 'disabled' } }],
      ['user.updated', { status: { from: 'disabled', to: 'active' } }],
      ['user.role_changed', { role: { from: 'member', to: 'viewer' } }],
    ]);
    expect(userEvents[2]?.data['fields']).toEqual(['displayName', 'role']);
    expect(JSON.stringify(userEvents)).not.toContain('Jane Private');
    const tenantEvent = about(tenantId).find((event) => event.action === 'tenant.updated');
    expect(tenantEvent?.data).toMatchObject({
      fields: ['captureContent'],
      changes: { captureContent: { from: false, to: true } },
    });
  });
});
