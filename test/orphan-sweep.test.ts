import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createMockModelServer, type MockModelServer } from '../src/testing/index.ts';
import { apiClient } from './support/api-client.ts';
import {
  budgetOf,
  callNanos,
  chatCalls,
  maxOutputTokens,
  ownerQuery,
  pricedConfig,
  seedBudgetedMember,
  toNanos,
} from './support/budget-fixtures.ts';
import { type SpawnedServer, spawnServer } from './support/spawn-server.ts';
import { createTestDatabase, type TestDatabase } from './support/test-brigade.ts';

/*
 * An API call (`/v1/chat/completions`, no run to resume it) whose process is killed between
 * its reservation and its settlement: once the reservation is past its expiry, the
 * maintenance sweep of any other process charges it in full as `orphaned`, and the budget's
 * reserved amount is free again. The sweep runs in the scheduler's scope (every tenant, no
 * user), where row-level security once refused its usage record and the money stayed held.
 */
let mock: MockModelServer;
let database: TestDatabase;
let owner: pg.Client;
const servers: SpawnedServer[] = [];

async function until(what: string, check: () => Promise<boolean>, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

afterAll(async () => {
  for (const server of servers) {
    server.child.kill('SIGKILL');
    await server.exited;
  }
  await owner?.end();
  await mock?.close();
  await database?.drop();
});

describe('the reservation of an API call whose process died', () => {
  it('is charged in full as orphaned by the sweep, and the budget is free again', async () => {
    mock = await createMockModelServer();
    mock.setFaults({ hang: true });
    database = await createTestDatabase();
    const config = { ...pricedConfig(mock.url), retention: { sweepMs: 1_000 } };
    const doomed = await spawnServer({ databaseUrl: database.url, config });
    servers.push(doomed);
    const seeded = await seedBudgetedMember(doomed.url, {
      slug: 'api-orphan',
      budgetNanos: 5 * callNanos,
      maxOutputTokens,
    });
    // Never answered: the process dies with the call in flight.
    void fetch(`${doomed.url}/v1/chat/completions`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${seeded.member.secret}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({
        model: 'mock:priced',
        max_tokens: maxOutputTokens,
        messages: [{ role: 'user', content: 'hello' }],
      }),
    }).catch(() => undefined);
    owner = new pg.Client({ connectionString: database.url });
    await owner.connect();
    const open = () =>
      ownerQuery<{ id: string; amount: string }>(owner, seeded.tenantId, {
        text: `select id, amount from brigade.budget_reservations
                where tenant_id = $1 and run_id is null and status = 'reserved'`,
        values: [seeded.tenantId],
      });
    await until(
      'the reservation and the hanging call',
      async () => (await open()).length === 1 && chatCalls(mock).length === 1,
      20_000,
    );
    const [reservation] = await open();
    doomed.child.kill('SIGKILL');
    await doomed.exited;

    // The call's deadline and grace have passed (a minute and more, made short here).
    await ownerQuery(owner, seeded.tenantId, {
      text: `update brigade.budget_reservations set expires_at = now() - interval '1 second'
              where id = $1`,
      values: [reservation?.id],
    });
    const survivor = await spawnServer({ databaseUrl: database.url, config });
    servers.push(survivor);
    const member = apiClient(survivor.url, seeded.member.secret);
    await until(
      'the sweep to free the reservation',
      async () => (await budgetOf(member, seeded.policyId))?.reserved === 0,
      20_000,
    );
    const budget = await budgetOf(member, seeded.policyId);
    expect(toNanos(budget?.used ?? 0)).toBe(callNanos);
    const records = await ownerQuery<{ status: string; error_code: string; cost: string }>(
      owner,
      seeded.tenantId,
      {
        text: `select status, error_code, cost from brigade.usage_records
                where reservation_id = $1`,
        values: [reservation?.id],
      },
    );
    expect(records).toEqual([
      { status: 'orphaned', error_code: 'process_lost', cost: String(callNanos) },
    ]);
  }, 90_000);
});
