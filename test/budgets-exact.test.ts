import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { createMockModelServer, type MockModelServer } from '../src/testing/index.ts';
import { type ApiClient, apiClient, type Created, seedUser } from './support/api-client.ts';
import {
  budgetOf,
  callNanos,
  chatCalls,
  ledgerOf,
  maxOutputTokens,
  nanosPerUsd,
  ownerQuery,
  pricedConfig,
  type RunBody,
  seedBudgetedMember,
  startRun,
  toNanos,
  type Usage,
} from './support/budget-fixtures.ts';
import { type SpawnedServer, spawnServer } from './support/spawn-server.ts';
import { createTestDatabase, type TestDatabase, testOperatorKey } from './support/test-brigade.ts';

/*
 * Budgets are exact (DESIGN.md invariant 7) across processes and crashes. The mock model
 * prices input at zero and output at $1 per million tokens, so a call's worst case is its
 * `maxOutputTokens` × 1,000 nano-USD; when the mock reports exactly that many output tokens,
 * the worst case equals the actual cost and a budget of k calls affords exactly k.
 */

async function until(what: string, check: () => Promise<boolean>, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Whether some of the recorded calls were in flight at the same time. */
function overlapped(mock: MockModelServer): boolean {
  const spans = chatCalls(mock)
    .map((call) => [call.startedAt, call.finishedAt ?? Number.POSITIVE_INFINITY] as const)
    .sort((a, b) => a[0] - b[0]);
  return spans.some((span, index) => index > 0 && span[0] < (spans[index - 1]?.[1] ?? 0));
}

const spawned: SpawnedServer[] = [];
const databases: TestDatabase[] = [];
const owners: pg.Client[] = [];
const mocks: MockModelServer[] = [];

async function ownerOf(database: TestDatabase): Promise<pg.Client> {
  const owner = new pg.Client({ connectionString: database.url });
  await owner.connect();
  owners.push(owner);
  return owner;
}

/** Spawns a Brigade process on `database`, killed after the test. */
async function start(
  database: TestDatabase,
  config: Record<string, unknown>,
): Promise<SpawnedServer> {
  const server = await spawnServer({ databaseUrl: database.url, config });
  spawned.push(server);
  return server;
}

async function newMock(): Promise<MockModelServer> {
  const mock = await createMockModelServer();
  mocks.push(mock);
  return mock;
}

afterEach(async () => {
  for (const server of spawned.splice(0)) {
    server.child.kill('SIGKILL');
    await server.exited;
  }
  for (const owner of owners.splice(0)) await owner.end();
  for (const mock of mocks.splice(0)) await mock.close();
  for (const database of databases.splice(0)) await database.drop();
});

describe('exact budgets across processes', () => {
  it('lets exactly k of 64 concurrent runs on two processes call the model, and charges exactly k calls', async () => {
    const k = 10;
    const total = 64;
    const mock = await newMock();
    // Every call answers with exactly maxOutputTokens output tokens, after 30-80 ms.
    mock.setScript((request) => ({
      text: 'ok',
      usage: { promptTokens: 7, completionTokens: maxOutputTokens },
      fault: { latencyMs: 30 + ((request.chatIndex * 37) % 51) },
    }));
    const database = await createTestDatabase();
    databases.push(database);
    const config = pricedConfig(mock.url, { concurrency: 32 });
    // Both start at once (migrations serialise on their lock).
    const [first, second] = await Promise.all([start(database, config), start(database, config)]);
    const seeded = await seedBudgetedMember(first.url, {
      slug: 'exact',
      budgetNanos: k * callNanos,
      maxOutputTokens,
    });
    const clients = [first.url, second.url].map((url) => apiClient(url, seeded.member.secret));

    const runs = await Promise.all(
      Array.from({ length: total }, (_, index) =>
        startRun(clients[index % 2] as ApiClient, seeded.agentId),
      ),
    );

    const owner = await ownerOf(database);
    await until(
      'every run to end',
      async () => {
        const [row] = await ownerQuery<{ done: string }>(owner, seeded.tenantId, {
          text: `select count(*) as done from brigade.runs
            where tenant_id = $1 and status in ('completed', 'failed', 'cancelled', 'expired')`,
          values: [seeded.tenantId],
        });
        return Number(row?.done) === total;
      },
      45_000,
    );
    const outcomes = await Promise.all(
      runs.map((ids, index) =>
        (clients[index % 2] as ApiClient).get<RunBody>(
          `/v1/threads/${ids.threadId}/runs/${ids.runId}`,
        ),
      ),
    );
    const statuses = outcomes.map((outcome) => `${outcome.body.status}:${outcome.body.errorCode}`);
    expect(statuses.filter((status) => status === 'completed:null')).toHaveLength(k);
    expect(statuses.filter((status) => status === 'failed:budget_exceeded')).toHaveLength(
      total - k,
    );
    // The provider was called exactly k times, and the calls overlapped.
    expect(chatCalls(mock)).toHaveLength(k);
    expect(overlapped(mock)).toBe(true);

    for (const client of clients) {
      const budget = await budgetOf(client, seeded.policyId);
      expect(toNanos(budget?.limit ?? -1)).toBe(k * callNanos);
      expect(toNanos(budget?.used ?? -1)).toBe(k * callNanos);
      expect(budget?.reserved).toBe(0);
      expect(budget?.remaining).toBe(0);
      const usage = await client.get<Usage>('/v1/usage');
      expect(usage.status).toBe(200);
      expect(usage.body.totals.requests).toBe(k);
      expect(toNanos(usage.body.totals.costUsd)).toBe(k * callNanos);
      expect(toNanos(usage.body.totals.costUsd)).toBeLessThanOrEqual(k * callNanos);
    }

    expect(await ledgerOf(owner, seeded)).toEqual({
      ledger: k * callNanos,
      used: k * callNanos,
      reserved: 0,
      open: 0,
    });
    const reservations = await ownerQuery<{ status: string; count: string; cost: string }>(
      owner,
      seeded.tenantId,
      {
        text: `select status, count(*) as count, sum(cost) as cost from brigade.budget_reservations
        where tenant_id = $1 group by status`,
        values: [seeded.tenantId],
      },
    );
    expect(reservations.map((row) => [row.status, Number(row.count), Number(row.cost)])).toEqual([
      ['settled', k, k * callNanos],
    ]);
  }, 90_000);
});

describe('reservations and settlements committed in groups', () => {
  it('keeps each member of a tenant to their own budget when their concurrent calls share batches', async () => {
    // 48 concurrent chat completions on one process, two members of one tenant interleaved:
    // the calls that wait for their tenant's batch in flight go out together (migration
    // 0019), and each call in a batch must still see the earlier ones and its own user's scope.
    const k = 6;
    const perMember = 24;
    const mock = await newMock();
    mock.setScript(() => ({
      text: 'ok',
      usage: { promptTokens: 7, completionTokens: maxOutputTokens },
      fault: { latencyMs: 20 },
    }));
    const database = await createTestDatabase();
    databases.push(database);
    const server = await start(database, pricedConfig(mock.url));
    const first = await seedBudgetedMember(server.url, {
      slug: 'grouped',
      budgetNanos: k * callNanos,
      maxOutputTokens,
    });
    const operator = apiClient(server.url, testOperatorKey);
    const admin = apiClient(
      server.url,
      (await seedUser(operator, { tenantId: first.tenantId, role: 'admin' })).secret,
    );
    const other = await seedUser(operator, { tenantId: first.tenantId, role: 'member' });
    const policy = await admin.post<Created>('/v1/policies', {
      level: 'user',
      subjectId: other.userId,
      limits: { budget: { amountUsd: (2 * k * callNanos) / nanosPerUsd, period: 'day' } },
    });
    expect(policy.status).toBe(201);
    const members = [
      { client: apiClient(server.url, first.member.secret), affords: k, policyId: first.policyId },
      { client: apiClient(server.url, other.secret), affords: 2 * k, policyId: policy.body.id },
    ];

    const answers = await Promise.all(
      Array.from({ length: 2 * perMember }, (_, index) => {
        const member = members[index % 2] as (typeof members)[number];
        return member.client.post<{ error?: { code?: string } }>('/v1/chat/completions', {
          model: 'mock:priced',
          messages: [{ role: 'user', content: `call ${index}` }],
          max_tokens: maxOutputTokens,
        });
      }),
    );
    const owner = await ownerOf(database);
    for (const [index, member] of members.entries()) {
      const mine = answers.filter((_, call) => call % 2 === index);
      expect(mine.filter((answer) => answer.status === 200)).toHaveLength(member.affords);
      const refused = mine.filter((answer) => answer.status !== 200);
      expect(refused).toHaveLength(perMember - member.affords);
      for (const answer of refused) {
        expect(answer.status).toBe(429);
        expect(answer.body.error?.code).toBe('insufficient_quota');
      }
      const budget = await budgetOf(member.client, member.policyId);
      expect(toNanos(budget?.used ?? -1)).toBe(member.affords * callNanos);
      expect(budget?.reserved).toBe(0);
    }
    expect(chatCalls(mock)).toHaveLength(3 * k);
    const ledger = await ownerQuery<{ user_id: string; cost: string; records: string }>(
      owner,
      first.tenantId,
      {
        text: `select user_id, sum(cost) as cost, count(*) as records from brigade.usage_records
                where tenant_id = $1 group by user_id order by count(*)`,
        values: [first.tenantId],
      },
    );
    expect(ledger.map((row) => [row.user_id, Number(row.cost), Number(row.records)])).toEqual([
      [first.member.userId, k * callNanos, k],
      [other.userId, 2 * k * callNanos, 2 * k],
    ]);
  }, 90_000);
});

describe('a process killed between reserve and settle', () => {
  it('charges the orphaned reservation in full, and the resumed run settles its own call', async () => {
    const budgetCalls = 5;
    const mock = await newMock();
    mock.setScript(() => ({
      text: 'ok',
      usage: { promptTokens: 7, completionTokens: maxOutputTokens },
    }));
    mock.setFaults({ hang: true });
    const database = await createTestDatabase();
    databases.push(database);
    const config = pricedConfig(mock.url, { concurrency: 4, staleAfterMs: 2000 });
    const doomed = await start(database, config);
    const seeded = await seedBudgetedMember(doomed.url, {
      slug: 'orphan',
      budgetNanos: budgetCalls * callNanos,
      maxOutputTokens,
    });
    const ids = await startRun(apiClient(doomed.url, seeded.member.secret), seeded.agentId);

    const owner = await ownerOf(database);
    const openReservation = async () =>
      ownerQuery<{ id: string; amount: string }>(owner, seeded.tenantId, {
        text: `select id, amount from brigade.budget_reservations where run_id = $1 and status = 'reserved'`,
        values: [ids.runId],
      });
    await until(
      'the reservation and the hanging call',
      async () => (await openReservation()).length === 1 && chatCalls(mock).length === 1,
      20_000,
    );
    const [reservation] = await openReservation();
    expect(Number(reservation?.amount)).toBe(callNanos);

    doomed.child.kill('SIGKILL');
    await doomed.exited;
    mock.setFaults(undefined);
    const survivor = await start(database, config);
    const member = apiClient(survivor.url, seeded.member.secret);

    let run: RunBody | undefined;
    await until(
      'the resumed run to end',
      async () => {
        const current = await member.get<RunBody>(`/v1/threads/${ids.threadId}/runs/${ids.runId}`);
        run = current.body;
        return ['completed', 'failed', 'cancelled', 'expired'].includes(current.body.status);
      },
      30_000,
    );
    expect(run?.status).toBe('completed');
    expect(chatCalls(mock)).toHaveLength(2);

    const [resolved] = await ownerQuery<{ status: string; cost: string }>(owner, seeded.tenantId, {
      text: 'select status, cost from brigade.budget_reservations where id = $1',
      values: [reservation?.id],
    });
    expect(resolved).toEqual({ status: 'orphaned', cost: String(callNanos) });
    const records = await ownerQuery<{
      status: string;
      error_code: string | null;
      cost: string;
      reservation_id: string;
    }>(owner, seeded.tenantId, {
      text: `select status, error_code, cost, reservation_id from brigade.usage_records
        where run_id = $1 order by created_at`,
      values: [ids.runId],
    });
    expect(records).toHaveLength(2);
    expect(records[0]).toEqual({
      status: 'orphaned',
      error_code: 'process_lost',
      cost: String(callNanos),
      reservation_id: reservation?.id,
    });
    expect(records[1]).toMatchObject({ status: 'ok', cost: String(callNanos) });
    expect(await ledgerOf(owner, seeded)).toEqual({
      ledger: 2 * callNanos,
      used: 2 * callNanos,
      reserved: 0,
      open: 0,
    });

    const budget = await budgetOf(member, seeded.policyId);
    expect(toNanos(budget?.used ?? -1)).toBe(2 * callNanos);
    expect(budget?.reserved).toBe(0);
    expect(toNanos(budget?.remaining ?? -1)).toBe((budgetCalls - 2) * callNanos);
    const usage = await member.get<Usage>('/v1/usage');
    expect(toNanos(usage.body.totals.costUsd)).toBe(2 * callNanos);
    expect(usage.body.totals.requests).toBe(2);
  }, 90_000);
});
