import { Writable } from 'node:stream';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/observability/index.ts';
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
 * The sweep of expired reservations takes budget counters before reservation rows, as every
 * writer does (migration 0059). It locked the reservations first, so a late settlement of one
 * of them (which locks its counters, then the reservation) deadlocked with it, and so did a
 * time-zone change's carry: one of the two failed.
 */
let mock: MockModelServer;
let server: TestServer;
const logLines: string[] = [];

beforeAll(async () => {
  mock = await createMockModelServer({
    script: () => ({ text: 'ok', usage: { promptTokens: 7, completionTokens: maxOutputTokens } }),
  });
  const destination = new Writable({
    write(chunk, _encoding, done) {
      logLines.push(String(chunk));
      done();
    },
  });
  server = await startTestServer(
    { ...pricedConfig(mock.url), retention: { sweepMs: 1_000 } },
    { logger: createLogger({ level: 'warn', destination }) },
  );
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await mock?.close();
});

describe('the sweep of expired reservations and a late settlement', () => {
  it('take the same locks in the same order: the settlement goes through, the sweep then finds it settled', async () => {
    const operator = apiClient(server.url, testOperatorKey);
    const tenantId = await seedTenant(operator, 'sweep-locks');
    const seeded = await seedUser(operator, { tenantId, role: 'owner' });
    const owner = apiClient(server.url, seeded.secret);
    const policy = await operator.post<Created>('/v1/policies', {
      tenantId,
      level: 'tenant',
      limits: { budget: { amountUsd: (100 * callNanos) / nanosPerUsd, period: 'day' } },
    });
    expect(policy.status).toBe(201);
    const served = await owner.post('/v1/chat/completions', {
      model: 'mock:priced',
      max_tokens: maxOutputTokens,
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(served.status).toBe(200);

    const settler = new pg.Client({ connectionString: server.database.url });
    await settler.connect();
    try {
      // A call whose reservation expired while it was still running (a slow provider).
      const [counter] = await ownerQuery<{ policy_id: string; subject_id: string; ps: string }>(
        settler,
        tenantId,
        {
          text: `select policy_id, subject_id, period_start::text as ps from brigade.limit_counters
                  where tenant_id = $1 and kind = 'budget'`,
          values: [tenantId],
        },
      );
      if (counter === undefined) throw new Error('no budget counter');
      const [reservation] = await ownerQuery<{ id: string }>(settler, tenantId, {
        text: `with r as (
                 insert into brigade.budget_reservations
                   (tenant_id, user_id, amount, counters, expires_at)
                 values ($1, $2, $3, jsonb_build_array(jsonb_build_object('policyId', $4::uuid,
                         'subjectId', $5::uuid, 'periodStart', $6::timestamptz)),
                         now() - interval '1 minute')
                 returning id)
               update brigade.limit_counters c set reserved = c.reserved + $3
                 from r where c.policy_id = $4 and c.kind = 'budget' and c.subject_id = $5
                  and c.period_start = $6::timestamptz
               returning r.id`,
        values: [
          tenantId,
          seeded.userId,
          callNanos,
          counter.policy_id,
          counter.subject_id,
          counter.ps,
        ],
      });
      if (reservation === undefined) throw new Error('no reservation');

      // The settlement has locked its counter (resolve_reservation's first step) when the
      // sweep (every second) comes for the reservation; then it resolves the reservation.
      await settler.query('begin');
      await settler.query(
        `select set_config('brigade.tenant_id', $1, true),
                set_config('brigade.user_id', $2, true)`,
        [tenantId, seeded.userId],
      );
      await settler.query(
        `select 1 from brigade.limit_counters where policy_id = $1 and kind = 'budget'
            and subject_id = $2 and period_start = $3::timestamptz for update`,
        [counter.policy_id, counter.subject_id, counter.ps],
      );
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      const settled = await settler
        .query('select brigade.resolve_reservation($1, $2, $3) as done', [
          reservation.id,
          1_000,
          'settled',
        ])
        .then(
          (result) => Boolean(result.rows[0]?.done),
          (error: Error) => error.message,
        );
      await settler.query(settled === true ? 'commit' : 'rollback');
      // Locked reservation first, the sweep made this a deadlock: the settlement failed.
      expect(settled).toBe(true);

      // The sweep found it settled: charged its cost once, never as orphaned.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      const [state] = await ownerQuery<{ status: string; cost: string }>(settler, tenantId, {
        text: 'select status, cost::text from brigade.budget_reservations where id = $1',
        values: [reservation.id],
      });
      expect(state).toMatchObject({ status: 'settled', cost: '1000' });
      expect(logLines.join('')).not.toMatch(/deadlock|reservation sweep failed/);
    } finally {
      await settler.end();
    }
  }, 60_000);
});
