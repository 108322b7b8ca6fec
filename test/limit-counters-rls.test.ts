import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { counterOwnersBackfill } from '../src/storage/migrations/0029-user-limit-counters.ts';
import type { DatabaseScope } from '../src/storage/postgres/scope.ts';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
  waitForRun,
} from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * A user's limit counters (role, user and API-key quotas and budgets) are theirs alone in the
 * database: another member's scope neither reads nor changes them, whatever SQL the runtime
 * role runs for it. Counters of tenant-wide policies stay readable to every member.
 */
let server: TestServer;
let tenantId: string;
let admin: { userId: string; client: ApiClient };
let alice: { userId: string; keyId: string; client: ApiClient };
let bob: { userId: string; keyId: string; client: ApiClient };

interface CounterRow {
  readonly subject: string;
  readonly owner: string | null;
  readonly used: string;
}

/** Every counter row `scope` can see. */
function countersIn(scope: DatabaseScope): Promise<CounterRow[]> {
  return server.brigade.storage.database.withScope(scope, async (db) => {
    const result = await sql<CounterRow>`
      select subject_id::text as subject, user_id::text as owner, used::text as used
        from brigade.limit_counters order by subject_id`.execute(db);
    return result.rows;
  });
}

async function completeRun(client: ApiClient, agentId: string): Promise<void> {
  const thread = await client.post<Created>('/v1/threads', {});
  const created = await client.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
    agentId,
    input: 'hello',
  });
  expect(created.status).toBe(201);
  const run = await waitForRun<{ status: string }>(client, {
    threadId: thread.body.id,
    runId: created.body.id,
  });
  expect(run.status).toBe('completed');
}

beforeAll(async () => {
  server = await startTestServer({ runs: { pollIntervalMs: 50 } });
  const operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'counters');
  const seededAdmin = await seedUser(operator, { tenantId, role: 'admin' });
  admin = { userId: seededAdmin.userId, client: apiClient(server.url, seededAdmin.secret) };
  const seededAlice = await seedUser(operator, { tenantId, role: 'member' });
  alice = { ...seededAlice, client: apiClient(server.url, seededAlice.secret) };
  const seededBob = await seedUser(operator, { tenantId, role: 'member' });
  bob = { ...seededBob, client: apiClient(server.url, seededBob.secret) };
  for (const policy of [
    { level: 'tenant', limits: { runsPerDay: 100 } },
    { level: 'role', role: 'member', limits: { runsPerDay: 50 } },
    { level: 'api_key', subjectId: alice.keyId, limits: { runsPerDay: 20 } },
  ]) {
    expect((await admin.client.post('/v1/policies', policy)).status).toBe(201);
  }
  const agent = await admin.client.post<Created>('/v1/agents', { name: 'plain', model: 'local' });
  expect(agent.status).toBe(201);
  await completeRun(alice.client, agent.body.id);
  await completeRun(alice.client, agent.body.id);
  await completeRun(bob.client, agent.body.id);
});

afterAll(async () => {
  await server?.stop();
});

describe('limit counters in the database', () => {
  it("show a member the tenant's counters and their own, never another member's", async () => {
    const seenByAlice = await countersIn({ tenantId, userId: alice.userId });
    expect(seenByAlice).toEqual(
      expect.arrayContaining([
        { subject: tenantId, owner: null, used: '3' },
        { subject: alice.userId, owner: alice.userId, used: '2' },
        { subject: alice.keyId, owner: alice.userId, used: '2' },
      ]),
    );
    expect(seenByAlice).toHaveLength(3);
    const seenByBob = await countersIn({ tenantId, userId: bob.userId });
    expect(seenByBob.map((row) => row.subject).sort()).toEqual([bob.userId, tenantId].sort());
  });

  it('show tenant admins every counter of their tenant', async () => {
    const seen = await countersIn({ tenantId, userId: admin.userId, tenantAdmin: true });
    expect(seen.map((row) => row.subject).sort()).toEqual(
      [tenantId, alice.userId, alice.keyId, bob.userId].sort(),
    );
  });

  it("do not let one member's scope reset or forge another member's counters", async () => {
    const reset = await server.brigade.storage.database.withScope(
      { tenantId, userId: bob.userId },
      (db) =>
        sql`update brigade.limit_counters set used = 0 where subject_id in (${alice.userId}::uuid, ${alice.keyId}::uuid)`.execute(
          db,
        ),
    );
    expect(Number(reset.numAffectedRows ?? 0)).toBe(0);
    const forged = server.brigade.storage.database.withScope(
      { tenantId, userId: bob.userId },
      (db) =>
        sql`
        insert into brigade.limit_counters (tenant_id, policy_id, kind, subject_id, period_start, limit_value)
        select ${tenantId}::uuid, p.id, 'runs', ${alice.userId}::uuid, now(), 1
          from brigade.policies p where p.level = 'role'`.execute(db),
    );
    await expect(forged).rejects.toThrow(/only in that user's scope/);
    const seenByAlice = await countersIn({ tenantId, userId: alice.userId });
    expect(seenByAlice.find((row) => row.subject === alice.userId)?.used).toBe('2');
  });

  it('still count and report each member their own use through the API', async () => {
    const limits = await alice.client.get<{ quotas: { level: string; used: number }[] }>(
      '/v1/me/limits',
    );
    expect(limits.status).toBe(200);
    expect(limits.body.quotas.map((quota) => [quota.level, quota.used]).sort()).toEqual(
      [
        ['api_key', 2],
        ['role', 2],
        ['tenant', 3],
      ].sort(),
    );
  });
});

describe('the migration to user-owned counters', () => {
  it('gives the counters that existed before it their users', async () => {
    const owner = new pg.Client({ connectionString: server.database.url });
    await owner.connect();
    try {
      await owner.query('begin');
      // As before migration 0029: no counter has a user.
      await owner.query('update brigade.limit_counters set user_id = null');
      await owner.query(counterOwnersBackfill);
      const { rows } = await owner.query<{ subject: string; owner: string | null }>(
        `select subject_id::text as subject, user_id::text as owner from brigade.limit_counters
          where tenant_id = $1`,
        [tenantId],
      );
      expect(new Map(rows.map((row) => [row.subject, row.owner]))).toEqual(
        new Map([
          [tenantId, null],
          [alice.userId, alice.userId],
          [alice.keyId, alice.userId],
          [bob.userId, bob.userId],
        ]),
      );
    } finally {
      await owner.query('rollback');
      await owner.end();
    }
  });
});
