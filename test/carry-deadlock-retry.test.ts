import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockModelServer, type MockModelServer } from '../src/testing/index.ts';
import { apiClient, type Created, seedTenant, seedUser } from './support/api-client.ts';
import {
  callNanos,
  maxOutputTokens,
  nanosPerUsd,
  ownerQuery,
  pricedConfig,
} from './support/budget-fixtures.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/*
 * A tenant's batch of budget calls (migration 0019) locks each call's counters in order, but
 * not the whole batch's: a member's call can hold a later counter while the next call of the
 * batch waits for an earlier one. A time-zone change's carry, which locks every counter of the
 * tenant in order, then meets it the other way round, and PostgreSQL breaks the deadlock by
 * rolling one back. The batch is made again call by call; the change answered 503 (seen in
 * CI under load). It is now made again too. The batch is played here by a transaction that
 * takes the two counters in the wrong order, so the carry is the one rolled back.
 */
let mock: MockModelServer;
let server: TestServer;

beforeAll(async () => {
  mock = await createMockModelServer({
    script: () => ({ text: 'ok', usage: { promptTokens: 7, completionTokens: maxOutputTokens } }),
  });
  server = await startTestServer(pricedConfig(mock.url));
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await mock?.close();
});

interface Counter {
  readonly policy_id: string;
  readonly subject_id: string;
  readonly ps: string;
}

describe('a time-zone change that meets a batch of budget calls the other way round', () => {
  it('is made again when PostgreSQL rolls it back, and answers 200 with the spend carried', async () => {
    const operator = apiClient(server.url, testOperatorKey);
    const tenantId = await seedTenant(operator, 'carry-retry');
    const owner = apiClient(
      server.url,
      (await seedUser(operator, { tenantId, role: 'owner' })).secret,
    );
    const seeded = await seedUser(operator, { tenantId, role: 'member' });
    const member = apiClient(server.url, seeded.secret);
    const plenty = (100 * callNanos) / nanosPerUsd;
    const tenantPolicy = await operator.post<Created>('/v1/policies', {
      tenantId,
      level: 'tenant',
      limits: { budget: { amountUsd: plenty, period: 'day' } },
    });
    expect(tenantPolicy.status).toBe(201);
    const userPolicy = await owner.post<Created>('/v1/policies', {
      level: 'user',
      subjectId: seeded.userId,
      limits: { budget: { amountUsd: plenty, period: 'day' } },
    });
    expect(userPolicy.status).toBe(201);
    const served = await member.post('/v1/chat/completions', {
      model: 'mock:priced',
      max_tokens: maxOutputTokens,
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(served.status).toBe(200);

    const batch = new pg.Client({ connectionString: server.database.url });
    await batch.connect();
    try {
      const counters = await ownerQuery<Counter>(batch, tenantId, {
        text: `select policy_id, subject_id, period_start::text as ps from brigade.limit_counters
                where tenant_id = $1 and kind = 'budget' and used > 0
                order by policy_id, kind, subject_id, period_start`,
        values: [tenantId],
      });
      expect(counters).toHaveLength(2);
      const [first, second] = counters as [Counter, Counter];
      const lock = (counter: Counter) =>
        batch.query(
          `select 1 from brigade.limit_counters where policy_id = $1 and kind = 'budget'
              and subject_id = $2 and period_start = $3::timestamptz for update`,
          [counter.policy_id, counter.subject_id, counter.ps],
        );
      await batch.query('begin');
      await batch.query(
        `select set_config('brigade.tenant_id', $1, true),
                set_config('brigade.tenant_admin', 'on', true),
                set_config('brigade.scheduler', 'on', true)`,
        [tenantId],
      );
      await lock(second);
      // The carry takes the first counter and waits for the second...
      const change = owner.request('PATCH', `/v1/tenants/${tenantId}`, {
        timeZone: 'Pacific/Kiritimati',
      });
      await new Promise((resolve) => setTimeout(resolve, 400));
      // ...and the batch's next call waits for the first: PostgreSQL rolls back the carry,
      // which waited longer.
      await lock(first);
      await batch.query('commit');
      const changed = await change;
      expect(changed.status, JSON.stringify(changed.body)).toBe(200);
    } finally {
      await batch.end();
    }
    // The day's spend went with the change: one call's cost, still on each budget.
    const limits = await member.get<{ budgets: { policyId: string; used: number }[] }>(
      '/v1/me/limits',
    );
    for (const policyId of [tenantPolicy.body.id, userPolicy.body.id])
      expect(
        limits.body.budgets.find((budget) => budget.policyId === policyId)?.used,
      ).toBeGreaterThan(0);
  }, 60_000);
});
