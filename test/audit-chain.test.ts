import { createHash } from 'node:crypto';
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
async function auditedTenant(
  slug: string,
): Promise<{ tenantId: string; admin: ApiClient; adminId: string }> {
  const tenantId = await seedTenant(operator, slug);
  const admin = await seedUser(operator, { tenantId, role: 'admin' });
  const client = apiClient(server.url, admin.secret);
  for (const name of ['one', 'two', 'three']) {
    await client.post(`/v1/tenants/${tenantId}/users/${admin.userId}/api-keys`, { name });
  }
  return { tenantId, admin: client, adminId: admin.userId };
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

let tenant: { tenantId: string; admin: ApiClient; adminId: string };
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
    // The sequence number is hashed: the first of the swapped events no longer matches.
    expect(await verify(tenant.admin, tenant.tenantId)).toMatchObject({
      ok: false,
      firstBrokenSeq: 2,
      reason: 'record was modified',
    });
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

/** Rewrites the tenant's chain as migration 0043 found it: every event hashed with version 1. */
async function hashAllWithVersion1(tenantId: string): Promise<void> {
  await tamper(
    `do $$
     declare r record; prev bytea := '\\x';
     begin
       for r in select * from brigade.audit_events where tenant_id = '${tenantId}' order by seq loop
         update brigade.audit_events set hash_version = 1, prev_hash = prev,
           hash = sha256(prev || convert_to(concat_ws('|',
             r.tenant_id::text, r.seq::text, r.id::text,
             to_char(r.occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
             r.actor_kind, coalesce(r.actor_user_id::text, ''), coalesce(r.actor_key_id::text, ''),
             r.action, coalesce(r.target_type, ''), coalesce(r.target_id, ''), r.outcome,
             coalesce(r.reason, ''), r.data::text), 'UTF8'))
          where tenant_id = r.tenant_id and seq = r.seq
          returning hash into prev;
       end loop;
       update brigade.audit_heads set hash = prev where tenant_id = '${tenantId}';
     end $$`,
    [],
  );
}

interface ListedEvent {
  seq: number;
  id: string;
  occurredAt: string;
  actorKind: string;
  actorUserId: string | null;
  actorKeyId: string | null;
  action: string;
  targetType: string | null;
  targetId: string | null;
  outcome: string;
  reason: string | null;
  data: unknown;
  hash: string;
  hashVersion: number;
}

/** Every event of the tenant, page by page, as `listAuditEvents` returns them. */
async function listAll(client: ApiClient, tenantId: string): Promise<ListedEvent[]> {
  const events: ListedEvent[] = [];
  let after = '0';
  for (;;) {
    const page = await client.get<{ data: ListedEvent[]; nextCursor: string | null }>(
      `/v1/tenants/${tenantId}/audit-events?limit=2&after=${after}`,
    );
    expect(page.status).toBe(200);
    events.push(...page.body.data);
    if (page.body.nextCursor === null) return events;
    after = page.body.nextCursor;
  }
}

// The offline recomputation of docs/observability.md ("Recomputing the chain offline"), as
// written there: it must work from the API's output alone.
function jsonbText(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(jsonbText).join(', ')}]`;
  if (value !== null && typeof value === 'object') {
    const object = value as Record<string, unknown>;
    const keys = Object.keys(object).sort(
      (a, b) =>
        Buffer.byteLength(a) - Buffer.byteLength(b) ||
        Buffer.compare(Buffer.from(a), Buffer.from(b)),
    );
    return `{${keys.map((key) => `${JSON.stringify(key)}: ${jsonbText(object[key])}`).join(', ')}}`;
  }
  if (typeof value === 'number') return plainDecimal(value);
  return JSON.stringify(value);
}

function plainDecimal(number: number): string {
  const [mantissa = '', exponent] = String(number).split('e');
  if (exponent === undefined) return mantissa;
  const [whole = '', fraction = ''] = mantissa.replace('-', '').split('.');
  const digits = whole + fraction;
  const point = whole.length + Number(exponent);
  const text =
    point <= 0
      ? `0.${'0'.repeat(-point)}${digits}`
      : point >= digits.length
        ? digits + '0'.repeat(point - digits.length)
        : `${digits.slice(0, point)}.${digits.slice(point)}`;
  return mantissa.startsWith('-') ? `-${text}` : text;
}

function eventHash(tenantId: string, event: ListedEvent, previous: Buffer): string {
  const fields = [
    tenantId,
    String(event.seq),
    event.id,
    event.occurredAt,
    event.actorKind,
    event.actorUserId,
    event.actorKeyId,
    event.action,
    event.targetType,
    event.targetId,
    event.outcome,
    event.reason,
    jsonbText(event.data),
  ];
  const text =
    event.hashVersion === 1
      ? fields.map((field) => field ?? '').join('|')
      : [
          'v2',
          ...fields.map((field) => (field === null ? '-' : `${Buffer.byteLength(field)}:${field}`)),
        ].join('\n');
  return createHash('sha256')
    .update(Buffer.concat([previous, Buffer.from(text)]))
    .digest('hex');
}

describe('the audit hash encoding', () => {
  it('detects a field changed from NULL to an empty string', async () => {
    const rows = await owner.query<{ seq: string }>(
      'select seq from brigade.audit_events where tenant_id = $1 and reason is null order by seq desc limit 1',
      [tenant.tenantId],
    );
    const seq = Number(rows.rows[0]?.seq);
    await tamper(`update brigade.audit_events set reason = '' where tenant_id = $1 and seq = $2`, [
      tenant.tenantId,
      seq,
    ]);
    expect(await verify(tenant.admin, tenant.tenantId)).toMatchObject({
      ok: false,
      firstBrokenSeq: seq,
      reason: 'record was modified',
    });
  });

  it('still verifies events hashed with version 1 before them, and refuses a downgrade', async () => {
    await hashAllWithVersion1(tenant.tenantId);
    expect((await verify(tenant.admin, tenant.tenantId)).ok).toBe(true);
    await tenant.admin.post(`/v1/tenants/${tenant.tenantId}/users/${tenant.adminId}/api-keys`, {
      name: 'after the upgrade',
    });
    const events = await listAll(tenant.admin, tenant.tenantId);
    const last = events.at(-1);
    expect(last?.hashVersion).toBe(2);
    expect(events.slice(0, -1).every((event) => event.hashVersion === 1)).toBe(true);
    expect(await verify(tenant.admin, tenant.tenantId)).toMatchObject({ ok: true });
    // Turning the newest event back to version 1 is detected, however its hash is made.
    await tamper(
      `update brigade.audit_events set hash_version = 1 where tenant_id = $1 and seq = $2`,
      [tenant.tenantId, last?.seq],
    );
    expect(await verify(tenant.admin, tenant.tenantId)).toMatchObject({
      ok: false,
      firstBrokenSeq: last?.seq,
    });
  });

  it('can be recomputed offline from listAuditEvents, as the documentation says', async () => {
    await hashAllWithVersion1(tenant.tenantId);
    const { tenantId, admin, adminId } = tenant;
    await admin.post(`/v1/tenants/${tenantId}/users/${adminId}/api-keys`, {
      name: 'ключ | "quoted" \\ é 🙂',
    });
    const member = await seedUser(operator, { tenantId, role: 'member' });
    const policy = await admin.post('/v1/policies', {
      level: 'user',
      subjectId: member.userId,
      limits: { budget: { amountUsd: 1e-7, period: 'day' }, requestsPerMinute: 600 },
    });
    expect(policy.status).toBe(201);
    const erased = await admin.request(
      'DELETE',
      `/v1/tenants/${tenantId}/users/${member.userId}?reason=${encodeURIComponent('left | ушёл')}`,
    );
    expect(erased.status).toBe(204);
    const events = await listAll(admin, tenantId);
    expect(new Set(events.map((event) => event.hashVersion))).toEqual(new Set([1, 2]));
    expect(events.every((event) => /\.\d{6}Z$/.test(event.occurredAt))).toBe(true);
    // PostgreSQL prints the budget as 0.0000001, JavaScript as 1e-7.
    expect(events.some((event) => JSON.stringify(event.data).includes('1e-7'))).toBe(true);
    let previous = Buffer.alloc(0);
    for (const event of events) {
      expect(eventHash(tenantId, event, previous), `event ${event.seq}`).toBe(event.hash);
      previous = Buffer.from(event.hash, 'hex');
    }
  });
});

describe('the chain head', () => {
  it('is reported when altered, before and after the next event links to it', async () => {
    const before = await verify(tenant.admin, tenant.tenantId);
    await tamper(`update brigade.audit_heads set hash = '\\x00' where tenant_id = $1`, [
      tenant.tenantId,
    ]);
    const altered = await verify(tenant.admin, tenant.tenantId);
    expect(altered).toMatchObject({ ok: false, firstBrokenSeq: before.checked + 1 });
    expect(altered.reason).toContain('chain head (brigade.audit_heads) was altered');
    await tenant.admin.post(`/v1/tenants/${tenant.tenantId}/users/${tenant.adminId}/api-keys`, {
      name: 'next',
    });
    const linked = await verify(tenant.admin, tenant.tenantId);
    expect(linked).toMatchObject({ ok: false, firstBrokenSeq: before.checked + 1 });
    expect(linked.reason).toContain('the chain head was altered');
  });
});
