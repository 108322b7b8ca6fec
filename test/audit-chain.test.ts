import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli/main.ts';
import { type ApiClient, apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * The audit log is append-only for the runtime role and hash-chained per tenant; tampering
 * with it directly in PostgreSQL (as the owner) is detected every time.
 */
let server: TestServer;
let operator: ApiClient;
let owner: pg.Client;

interface Verification {
  ok: boolean;
  checked: number;
  firstBrokenSeq: number | null;
  reason: string | null;
}

/** A fresh tenant with a few audited changes; returns its id and an admin client. */
async function auditedTenant(slug: string): Promise<{ tenantId: string; admin: ApiClient }> {
  const tenantId = await seedTenant(operator, slug);
  const admin = await seedUser(operator, { tenantId, role: 'admin' });
  const client = apiClient(server.url, admin.secret);
  for (const name of ['one', 'two', 'three']) {
    await client.post(`/v1/tenants/${tenantId}/users/${admin.userId}/api-keys`, { name });
  }
  return { tenantId, admin: client };
}

async function verify(client: ApiClient, tenantId: string): Promise<Verification> {
  const response = await client.post<Verification>(`/v1/tenants/${tenantId}/audit/verify`);
  expect(response.status).toBe(200);
  return response.body;
}

/** Runs SQL as the owner with the audit trigger's table writable (the attacker's position). */
async function tamper(text: string | readonly string[], values: unknown[]): Promise<void> {
  await owner.query('begin');
  try {
    for (const statement of typeof text === 'string' ? [text] : text)
      await owner.query(statement, values);
    await owner.query('commit');
  } catch (error) {
    await owner.query('rollback');
    throw error;
  }
}

beforeAll(async () => {
  server = await startTestServer();
  operator = apiClient(server.url, testOperatorKey);
  owner = new pg.Client({ connectionString: server.database.url });
  await owner.connect();
});

afterAll(async () => {
  await owner?.end();
  await server?.stop();
});

let tenant: { tenantId: string; admin: ApiClient };
let counter = 0;
beforeEach(async () => {
  counter += 1;
  tenant = await auditedTenant(`audit-${counter}`);
});

describe('the audit chain', () => {
  it('verifies intact and lists events in order, to admins of the tenant only', async () => {
    const result = await verify(tenant.admin, tenant.tenantId);
    expect(result).toMatchObject({ ok: true, firstBrokenSeq: null });
    expect(result.checked).toBeGreaterThanOrEqual(5);
    const list = await tenant.admin.get<{ data: { seq: number; action: string }[] }>(
      `/v1/tenants/${tenant.tenantId}/audit-events`,
    );
    expect(list.body.data.map((event) => event.seq)).toEqual(
      list.body.data.map((_, index) => index + 1),
    );
    expect(list.body.data.map((event) => event.action)).toContain('api_key.created');
    const stranger = await auditedTenant(`audit-stranger-${counter}`);
    expect((await stranger.admin.get(`/v1/tenants/${tenant.tenantId}/audit-events`)).status).toBe(
      404,
    );
    const member = await seedUser(operator, { tenantId: tenant.tenantId, role: 'member' });
    expect(
      (
        await apiClient(server.url, member.secret).get(
          `/v1/tenants/${tenant.tenantId}/audit-events`,
        )
      ).status,
    ).toBe(403);
  });

  it('detects an edited record', async () => {
    await tamper(
      `update brigade.audit_events set reason = 'nothing to see' where tenant_id = $1 and seq = 3`,
      [tenant.tenantId],
    );
    expect(await verify(tenant.admin, tenant.tenantId)).toMatchObject({
      ok: false,
      firstBrokenSeq: 3,
      reason: 'record was modified',
    });
  });

  it('detects a deleted record', async () => {
    await tamper('delete from brigade.audit_events where tenant_id = $1 and seq = 2', [
      tenant.tenantId,
    ]);
    expect(await verify(tenant.admin, tenant.tenantId)).toMatchObject({
      ok: false,
      firstBrokenSeq: 2,
    });
  });

  it('detects reordered records', async () => {
    await tamper(
      [
        'update brigade.audit_events set seq = 1000 where tenant_id = $1 and seq = 2',
        'update brigade.audit_events set seq = 2 where tenant_id = $1 and seq = 3',
        'update brigade.audit_events set seq = 3 where tenant_id = $1 and seq = 1000',
      ],
      [tenant.tenantId],
    );
    expect((await verify(tenant.admin, tenant.tenantId)).ok).toBe(false);
  });

  it('detects a truncated tail', async () => {
    await tamper(
      'delete from brigade.audit_events where tenant_id = $1 and seq = (select max(seq) from brigade.audit_events where tenant_id = $1)',
      [tenant.tenantId],
    );
    const result = await verify(tenant.admin, tenant.tenantId);
    expect(result.ok).toBe(false);
    expect(result.reason).toContain('missing');
  });

  it('detects a record re-hashed after an edit at the next link', async () => {
    await tamper(
      `update brigade.audit_events set reason = 'forged', hash = sha256(hash) where tenant_id = $1 and seq = 2`,
      [tenant.tenantId],
    );
    expect((await verify(tenant.admin, tenant.tenantId)).firstBrokenSeq).toBe(2);
  });

  it('cannot be changed by the runtime role at all', async () => {
    const runtime = new pg.Client({
      connectionString: server.brigade.storage.runtimeConnection.url,
    });
    await runtime.connect();
    try {
      await runtime.query('begin');
      await runtime.query("select set_config('brigade.tenant_id', $1, true)", [tenant.tenantId]);
      await expect(
        runtime.query('update brigade.audit_events set reason = $1', ['x']),
      ).rejects.toThrow(/permission denied/);
      await runtime.query('rollback');
    } finally {
      await runtime.end();
    }
  });

  it('is checked by `brigade audit verify`, which exits 1 on a broken chain', async () => {
    const lines: string[] = [];
    const io = { out: (text: string) => lines.push(text), err: (text: string) => lines.push(text) };
    const env = { DATABASE_URL: server.database.url, LOG_LEVEL: 'silent' };
    const slug = `audit-${counter}`;
    expect(await runCli(['audit', 'verify', '--tenant', slug], io, env)).toBe(0);
    await tamper(
      `update brigade.audit_events set action = 'nothing' where tenant_id = $1 and seq = 1`,
      [tenant.tenantId],
    );
    expect(await runCli(['audit', 'verify', '--tenant', slug, '--json'], io, env)).toBe(1);
    expect(JSON.parse(lines.at(-1) ?? '{}')).toMatchObject({ ok: false, firstBrokenSeq: 1 });
  });
});
