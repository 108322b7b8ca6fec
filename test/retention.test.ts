import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiClient, apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { ownerQuery } from './support/budget-fixtures.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * Retention of bookkeeping rows (migration 0039): every budgeted model call leaves a
 * reservation, every budget period of every subject a limit counter (a rolling window one an
 * hour), every threshold crossed an alert, every webhook deliveries. Nothing deleted them;
 * the maintenance sweep now deletes what is past `retention` and nothing that still counts.
 */
let server: TestServer;
let owner: pg.Client;
let tenantId: string;
let userId: string;
let client: ApiClient;

async function chat(): Promise<void> {
  const response = await client.post('/v1/chat/completions', {
    model: 'local',
    messages: [{ role: 'user', content: 'hello' }],
    max_tokens: 5,
  });
  expect(response.status).toBe(200);
}

const query = <T>(text: string, values: readonly unknown[] = []) =>
  ownerQuery<T>(owner, tenantId, { text, values });

const countOf = async (table: string, where = 'true') =>
  Number((await query<{ n: string }>(`select count(*) as n from ${table} where ${where}`))[0]?.n);

beforeAll(async () => {
  server = await startTestServer({
    limits: { requestsPerMinute: { key: 1_000_000, user: 1_000_000, tenant: 1_000_000 } },
    // The webhook worker announces unannounced alerts (announced_at = now()): polling at its
    // 1 s default, it could announce the test's old unannounced alert before the sweep, which
    // then deleted it too (seen under load: 1 alert left, not 2).
    webhooks: { pollMs: 60_000 },
  });
  const operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'retention');
  const seeded = await seedUser(operator, { tenantId, role: 'owner' });
  userId = seeded.userId;
  client = apiClient(server.url, seeded.secret);
  for (const body of [
    { level: 'tenant', limits: { budget: { amountUsd: 100, period: 'day' } } },
    {
      level: 'user',
      subjectId: userId,
      limits: { budget: { amountUsd: 100, period: 'rolling', windowHours: 24 } },
    },
  ])
    expect((await client.post('/v1/policies', body)).status).toBe(201);
  owner = new pg.Client({ connectionString: server.database.url });
  await owner.connect();
}, 60_000);

afterAll(async () => {
  await owner?.end();
  await server?.stop();
});

describe('retention', () => {
  it('deletes reservations, counters, alerts and deliveries past it, and keeps the rest', async () => {
    for (let call = 0; call < 3; call += 1) await chat();
    expect(await countOf('brigade.budget_reservations', "status = 'settled'")).toBe(3);
    // Two reservations resolved long ago, one lately.
    await query(`update brigade.budget_reservations set resolved_at = now() - interval '31 days'
                  where id in (select id from brigade.budget_reservations order by created_at limit 2)`);
    // Every counter of a period (not the rolling window's anchor) moves 101 days back; one of
    // them still holds a reservation's amount, so it stays.
    await query(`update brigade.limit_counters set period_start = period_start - interval '101 days'
                  where period_start > '-infinity'`);
    await query(`update brigade.limit_counters set reserved = 1
                  where period_start > '-infinity' and user_id is not null`);
    const [policy] = await query<{ id: string }>(
      `select id from brigade.policies where level = 'tenant' and tenant_id = $1`,
      [tenantId],
    );
    for (const [periodDays, announced] of [
      [101, true],
      [101, false],
      [1, true],
    ] as const)
      await query(
        `insert into brigade.budget_alerts
           (tenant_id, policy_id, subject_id, period_start, threshold, used, limit_value, announced_at)
         values ($1, $2, $1, now() - make_interval(days => $3), 50, 1, 2, ${announced ? 'now()' : 'null'})`,
        [tenantId, policy?.id, periodDays],
      );
    const [endpoint] = await query<{ id: string }>(
      `insert into brigade.webhook_endpoints (tenant_id, url, events, secret)
       values ($1, 'https://hooks.example.com/brigade', '{budget.threshold}', 'secret') returning id`,
      [tenantId],
    );
    for (const [status, ageDays] of [
      ['delivered', 31],
      ['failed', 31],
      ['delivered', 1],
      ['pending', 31],
    ] as const)
      await query(
        `insert into brigade.webhook_deliveries
           (tenant_id, endpoint_id, event_type, payload, status, created_at, next_attempt_at)
         values ($1, $2, 'budget.threshold', '{}', $3, now() - make_interval(days => $4),
                 now() + interval '1 day')`,
        [tenantId, endpoint?.id, status, ageDays],
      );

    const before = {
      counters: await countOf('brigade.limit_counters'),
      usage: await countOf('brigade.usage_records'),
      audit: await countOf('brigade.audit_events'),
    };
    expect(before.counters).toBe(3);
    expect(await server.brigade.maintenance.runOnce()).toBeGreaterThanOrEqual(5);

    expect(await countOf('brigade.budget_reservations')).toBe(1);
    // Left: the rolling window's anchor and the old counter still holding an amount.
    expect(
      await query<{ period_start: Date | string; reserved: string }>(
        'select period_start, reserved from brigade.limit_counters order by period_start',
      ),
    ).toEqual([
      { period_start: Number.NEGATIVE_INFINITY, reserved: '0' },
      expect.objectContaining({ reserved: '1' }),
    ]);
    expect(await countOf('brigade.budget_alerts')).toBe(2);
    expect(await countOf('brigade.budget_alerts', 'announced_at is null')).toBe(1);
    expect(
      (
        await query<{ status: string }>(
          'select status from brigade.webhook_deliveries order by status',
        )
      ).map((row) => row.status),
    ).toEqual(['delivered', 'pending']);
    // The ledger and the audit log are kept.
    expect(await countOf('brigade.usage_records')).toBe(before.usage);
    expect(await countOf('brigade.audit_events')).toBeGreaterThanOrEqual(before.audit);

    // Budgets go on counting in new rows.
    await chat();
    const limits = await client.get<{ budgets: { used: number }[] }>('/v1/me/limits');
    expect(limits.status).toBe(200);
    expect(limits.body.budgets.every((budget) => budget.used > 0)).toBe(true);
  });

  it('deletes spans past tracing.retentionHours, and a backlog larger than a batch in one round', async () => {
    // 25,000 spans that ended 100 hours ago (the default retention is 72), 5 recent ones, and
    // 25,000 reservations resolved 31 days ago: more than one 10,000-row batch each.
    await query(
      `insert into brigade.spans (tenant_id, trace_id, span_id, user_id, name, kind, started_at,
                                  ended_at, status)
       select $1, 't' || n, 's' || n, $2, 'retention-test', 'client',
              now() - make_interval(hours => case when n <= 5 then 1 else 100 end),
              now() - make_interval(hours => case when n <= 5 then 1 else 100 end), 'ok'
         from generate_series(1, 25005) as n`,
      [tenantId, userId],
    );
    await query(
      `insert into brigade.budget_reservations
         (tenant_id, user_id, amount, counters, status, cost, expires_at, created_at, resolved_at)
       select $1, $2, 1, '[]', 'settled', 1, now() - interval '31 days',
              now() - interval '31 days', now() - interval '31 days'
         from generate_series(1, 25000)`,
      [tenantId, userId],
    );
    const kept = await countOf(
      'brigade.budget_reservations',
      "resolved_at > now() - interval '1 day'",
    );
    await server.brigade.maintenance.runOnce();
    expect(await countOf('brigade.spans', "ended_at < now() - interval '72 hours'")).toBe(0);
    expect(await countOf('brigade.spans', "name = 'retention-test'")).toBe(5);
    expect(await countOf('brigade.budget_reservations')).toBe(kept);
  });

  it('lets only the scheduler delete: a user scope deletes none of its own rows', async () => {
    const deleted = await server.brigade.storage.database.withScope(
      { tenantId, userId },
      async (db) => {
        const reservations = await sql`delete from brigade.budget_reservations`.execute(db);
        const counters = await sql`delete from brigade.limit_counters`.execute(db);
        return Number(reservations.numAffectedRows) + Number(counters.numAffectedRows);
      },
    );
    expect(deleted).toBe(0);
    expect(await countOf('brigade.budget_reservations')).toBeGreaterThan(0);
  });
});
