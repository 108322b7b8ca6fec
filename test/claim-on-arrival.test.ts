import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  enqueue,
  ownerSeeingAll,
  seedTenantUsers,
  unlimitedRequests,
} from './support/run-queue.ts';
import {
  createTestDatabase,
  startTestServer,
  type TestDatabase,
  type TestServer,
} from './support/test-brigade.ts';

/**
 * A create claims its own run on arrival (brigade.claim_on_arrival, migration 0017) only where
 * a claim would have taken it, and claims exclude each other per tenant (migration 0018).
 * Runs are queued through the API on a server that executes nothing; the test claims them as
 * a create or a scheduler would, through the database.
 */
describe('claim on arrival (brigade.claim_on_arrival)', () => {
  let arrivalDatabase: TestDatabase;
  let arrivalApi: TestServer;
  let owner: pg.Client;
  let lockHolder: pg.Client;

  beforeAll(async () => {
    arrivalDatabase = await createTestDatabase();
    // No executor: every create queues its run, and the test claims it as a create would.
    arrivalApi = await startTestServer(
      { ...unlimitedRequests, runs: { concurrency: 0, maxQueuedPerTenant: 0 } },
      { database: arrivalDatabase },
    );
    owner = await ownerSeeingAll(arrivalDatabase.url);
    lockHolder = new pg.Client({ connectionString: arrivalDatabase.url });
    await lockHolder.connect();
  }, 60_000);

  afterAll(async () => {
    await owner?.end();
    await lockHolder?.end();
    await arrivalApi?.stop();
    await arrivalDatabase?.drop();
  });

  async function arrive(
    runId: string,
    caps: { tenant?: number; user?: number } = {},
    executor: string | null = 'test-executor',
  ) {
    const result = await owner.query<{ outcome: string }>(
      `select brigade.claim_on_arrival($1, $4, '10 seconds', $2, $3) as outcome`,
      [runId, caps.tenant ?? 0, caps.user ?? 0, executor],
    );
    return result.rows[0]?.outcome;
  }

  async function queueEntry(runId: string) {
    const result = await owner.query<{
      state: string;
      executor_id: string | null;
      claimed: boolean;
    }>(
      `select state, executor_id, first_claimed_at is not null as claimed
         from brigade.run_queue where run_id = $1`,
      [runId],
    );
    return result.rows[0];
  }

  async function tenantWithRuns(slug: string, threads: number, runsPerThread: number) {
    const tenant = await seedTenantUsers(arrivalApi.url, { slug, users: 1 });
    const runs = await enqueue({
      client: tenant.admin,
      agentId: tenant.agentId,
      threads,
      runsPerThread,
      label: slug,
    });
    return { ...tenant, runs };
  }

  it('claims a tenant’s only queued run for the creating process', async () => {
    const { runs } = await tenantWithRuns('sole', 1, 1);
    const [run] = runs;
    expect(await queueEntry(run?.runId ?? '')).toMatchObject({ state: 'queued', claimed: false });
    expect(await arrive(run?.runId ?? '')).toBe('claimed');
    expect(await queueEntry(run?.runId ?? '')).toEqual({
      state: 'claimed',
      executor_id: 'test-executor',
      claimed: true,
    });
    // Claimed once: a second attempt finds nothing queued.
    expect(await arrive(run?.runId ?? '')).toBe('queued');
  });

  it('leaves a run queued behind its tenant’s backlog or its thread’s earlier run', async () => {
    const backlog = await tenantWithRuns('backlog', 2, 1);
    for (const run of backlog.runs) expect(await arrive(run.runId)).toBe('queued');
    const thread = await tenantWithRuns('thread', 1, 2);
    const [earlier, later] = thread.runs;
    expect(await arrive(earlier?.runId ?? '')).toBe('queued');
    await owner.query(`delete from brigade.run_queue where run_id = $1`, [earlier?.runId]);
    expect(await arrive(later?.runId ?? '')).toBe('claimed');
    for (const run of backlog.runs) expect((await queueEntry(run.runId))?.state).toBe('queued');
  });

  it('answers capped when the tenant or the user is at a cap, counting only live claims', async () => {
    const tenant = await tenantWithRuns('capped', 2, 1);
    const [first, second] = tenant.runs;
    // Make the first run the tenant's one live claim, then ask for the second.
    await owner.query(
      `update brigade.run_queue set state = 'claimed', executor_id = 'other', heartbeat_at = now()
        where run_id = $1`,
      [first?.runId],
    );
    expect(await arrive(second?.runId ?? '', { tenant: 1 })).toBe('capped');
    expect(await arrive(second?.runId ?? '', { tenant: 2, user: 1 })).toBe('capped');
    // A concurrentRuns policy caps like the configured default.
    await owner.query(
      `insert into brigade.policies (level, tenant_id, limits, managed_by)
       values ('tenant', $1, '{"concurrentRuns": 1}'::jsonb, 'operator')`,
      [tenant.tenantId],
    );
    expect(await arrive(second?.runId ?? '')).toBe('capped');
    await owner.query(`delete from brigade.policies where tenant_id = $1`, [tenant.tenantId]);
    // A stale claim (its process died) holds no slot.
    await owner.query(
      `update brigade.run_queue set heartbeat_at = now() - interval '1 minute' where run_id = $1`,
      [first?.runId],
    );
    expect(await arrive(second?.runId ?? '', { tenant: 1 })).toBe('claimed');
  });

  it('answers capped behind a backlog too, so a create of a tenant at its cap wakes no scheduler', async () => {
    // Creates that join a backlog used to answer queued, and each woke every scheduler into a
    // claim over the whole backlog that could take nothing while the tenant was at its cap.
    const tenant = await tenantWithRuns('backlog-capped', 3, 1);
    const [running, waiting, latest] = tenant.runs;
    await owner.query(
      `update brigade.run_queue set state = 'claimed', executor_id = 'other', heartbeat_at = now()
        where run_id = $1`,
      [running?.runId],
    );
    expect(await arrive(latest?.runId ?? '', { tenant: 1 })).toBe('capped');
    expect(await arrive(latest?.runId ?? '', { tenant: 1 }, null)).toBe('capped');
    // Below the cap the backlog's order still holds: queued, and a claim elsewhere may take it.
    expect(await arrive(latest?.runId ?? '', { tenant: 3 })).toBe('queued');
    expect(await arrive(latest?.runId ?? '', { tenant: 3 }, null)).toBe('queued');
    for (const run of [waiting, latest])
      expect((await queueEntry(run?.runId ?? ''))?.state).toBe('queued');
  });

  it('queues the run when a claim holds its tenant’s claim lock for longer than a moment', async () => {
    const { runs, tenantId } = await tenantWithRuns('locked', 1, 1);
    const [run] = runs;
    await lockHolder.query(`select pg_advisory_lock(1651531, hashtext($1))`, [tenantId]);
    try {
      expect(await arrive(run?.runId ?? '')).toBe('queued');
      expect((await queueEntry(run?.runId ?? ''))?.state).toBe('queued');
    } finally {
      await lockHolder.query(`select pg_advisory_unlock(1651531, hashtext($1))`, [tenantId]);
    }
    expect(await arrive(run?.runId ?? '')).toBe('claimed');
  });

  it('claims on arrival while a claim for other tenants holds the schedulers’ lock', async () => {
    // claim_runs holds the global lock and the locks of the tenants it claims for; an arrival
    // of a tenant outside that set does not wait for it.
    const { runs } = await tenantWithRuns('unlocked', 1, 1);
    const [run] = runs;
    await lockHolder.query('select pg_advisory_lock(7093848255832547689)');
    try {
      expect(await arrive(run?.runId ?? '')).toBe('claimed');
    } finally {
      await lockHolder.query('select pg_advisory_unlock(7093848255832547689)');
    }
  });

  it('does not wait for the claim lock of a tenant whose users or policy hold it at its cap', async () => {
    // Such a tenant can get nothing from the claim, so the claim neither locks it (an arrival
    // of it never delays the claim) nor spends one of its places on it.
    async function capped(slug: string) {
      const tenant = await tenantWithRuns(slug, 2, 1);
      await owner.query(
        `update brigade.run_queue set state = 'claimed', executor_id = 'other', heartbeat_at = now()
          where run_id = $1`,
        [tenant.runs[0]?.runId],
      );
      return tenant;
    }
    async function claimWhileLocked(tenantId: string, maxPerUser: number) {
      await lockHolder.query('begin');
      await owner.query(`set lock_timeout = '3s'`);
      try {
        await lockHolder.query(`select pg_advisory_xact_lock(1651531, hashtext($1))`, [tenantId]);
        const claimed = await owner.query<{ claimed_run: string }>(
          `select claimed_run from brigade.claim_runs('test-claimer', 16, '10 seconds', 0, $1)`,
          [maxPerUser],
        );
        return claimed.rows.map((row) => row.claimed_run);
      } finally {
        await owner.query('reset lock_timeout');
        await lockHolder.query('rollback');
      }
    }
    // A tenant policy of one run, and the tenant runs one.
    const byPolicy = await capped('policy-capped');
    await owner.query(
      `insert into brigade.policies (level, tenant_id, limits, managed_by)
       values ('tenant', $1, '{"concurrentRuns": 1}'::jsonb, 'operator')`,
      [byPolicy.tenantId],
    );
    const free = await tenantWithRuns('claim-free', 1, 1);
    try {
      const claimed = await claimWhileLocked(byPolicy.tenantId, 0);
      expect(claimed).toContain(free.runs[0]?.runId);
      expect(claimed).not.toContain(byPolicy.runs[1]?.runId);
    } finally {
      await owner.query(`delete from brigade.policies where tenant_id = $1`, [byPolicy.tenantId]);
    }
    // The default cap of one run per user, and the tenant's only user runs one.
    const byUser = await capped('user-capped');
    const other = await tenantWithRuns('claim-free-2', 1, 1);
    const claimed = await claimWhileLocked(byUser.tenantId, 1);
    expect(claimed).toContain(other.runs[0]?.runId);
    expect(claimed).not.toContain(byUser.runs[1]?.runId);
  });

  it('claims only for the tenants whose claim locks it holds', async () => {
    // A claim that may take a tenant's entry first waits for that tenant's claim lock, which
    // an arriving create of the tenant holds until it commits.
    const busy = await tenantWithRuns('claim-busy', 1, 1);
    await lockHolder.query('begin');
    await lockHolder.query(`select pg_advisory_xact_lock(1651531, hashtext($1))`, [busy.tenantId]);
    const claiming = owner.query<{ claimed_run: string }>(
      `select claimed_run from brigade.claim_runs('test-claimer', 16, '10 seconds', 0, 0)`,
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    // Still waiting for the tenant's lock: the entry is not taken behind the arrival's back.
    expect(
      (
        await lockHolder.query(`select state from brigade.run_queue where run_id = $1`, [
          busy.runs[0]?.runId,
        ])
      ).rows[0]?.state,
    ).toBe('queued');
    await lockHolder.query('commit');
    const claimed = (await claiming).rows.map((row) => row.claimed_run);
    expect(claimed).toContain(busy.runs[0]?.runId);
  });
});
