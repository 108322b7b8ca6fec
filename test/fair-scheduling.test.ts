import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, type Created, seedTenant, seedUser } from './support/api-client.ts';
import {
  byCompletion,
  enqueue,
  type FinishedRun,
  finished,
  mostAtOnce,
  positionOf,
  type Queued,
  runInput,
  seedTenantUsers,
  unlimitedRequests,
} from './support/run-queue.ts';
import { type SpawnedServer, spawnServer } from './support/spawn-server.ts';
import {
  createTestDatabase,
  startTestServer,
  type TestDatabase,
  type TestServer,
  testOperatorKey,
} from './support/test-brigade.ts';

/**
 * Fair scheduling through the public API. Runs are queued on an API-only server (it executes
 * nothing) and then a worker is started on the same database, so every claim order is decided
 * by the scheduler alone; the assertions compare completion order, not timings.
 */

let database: TestDatabase;
let api: TestServer;

beforeAll(async () => {
  database = await createTestDatabase();
  api = await startTestServer(
    { ...unlimitedRequests, runs: { concurrency: 0, maxQueuedPerTenant: 0 } },
    { database },
  );
});

afterAll(async () => {
  await api?.stop();
  await database?.drop();
});

/** Starts an in-process worker on the shared database, waits for `runs`, stops it. */
async function drainWith(
  runs: readonly Queued[],
  runsConfig: Record<string, unknown> = {},
): Promise<FinishedRun[]> {
  const worker = await startTestServer(
    {
      ...unlimitedRequests,
      runs: {
        concurrency: 4,
        pollIntervalMs: 20,
        maxConcurrentPerTenant: 0,
        maxConcurrentPerUser: 0,
        ...runsConfig,
      },
      models: { local: { tokenDelayMs: 1 } },
    },
    { database },
  );
  try {
    const done = byCompletion(await finished(runs));
    for (const run of done) {
      expect(run.status).toBe('completed');
      expect(run.queueWaitMs).toEqual(expect.any(Number));
      expect(run.queueWaitMs).toBeGreaterThanOrEqual(0);
      // The wait ends when the run is claimed, which is before it starts.
      expect(Date.parse(run.createdAt) + (run.queueWaitMs ?? 0)).toBeLessThanOrEqual(
        Date.parse(run.startedAt ?? '') + 1,
      );
    }
    return done;
  } finally {
    await worker.stop();
  }
}

describe('fair scheduling', () => {
  it('finishes a quiet tenant’s runs long before a noisy tenant’s backlog, with queue waits', async () => {
    const noisy = await seedTenantUsers(api.url, { slug: 'noisy', users: 1 });
    const quiet = await seedTenantUsers(api.url, { slug: 'quiet', users: 1 });
    const runs = [
      ...(await enqueue({
        client: noisy.admin,
        agentId: noisy.agentId,
        threads: 20,
        runsPerThread: 10,
        label: 'noisy',
      })),
    ];
    // Queued after all 200 of the noisy tenant: a FIFO queue would run these last.
    runs.push(
      ...(await enqueue({
        client: quiet.admin,
        agentId: quiet.agentId,
        threads: 5,
        runsPerThread: 1,
        label: 'quiet',
      })),
    );
    const order = await drainWith(runs);
    const lastQuiet = positionOf(order, 'quiet', 5);
    expect(lastQuiet).toBeLessThan(positionOf(order, 'noisy', 60));
    // Claimed round robin: the quiet tenant waited for no more than a couple of batches.
    expect(lastQuiet).toBeLessThan(16);
    const waits = (label: string) =>
      order.filter((run) => run.label === label).map((run) => run.queueWaitMs ?? 0);
    expect(Math.max(...waits('quiet'))).toBeLessThan(Math.max(...waits('noisy')));
  }, 120_000);

  it('lets the users of one tenant take turns', async () => {
    const tenant = await seedTenantUsers(api.url, { slug: 'turns', users: 2 });
    const [heavy, light] = tenant.clients;
    if (heavy === undefined || light === undefined) throw new Error('no users');
    const runs = await enqueue({
      client: heavy,
      agentId: tenant.agentId,
      threads: 6,
      runsPerThread: 10,
      label: 'heavy',
    });
    runs.push(
      ...(await enqueue({
        client: light,
        agentId: tenant.agentId,
        threads: 4,
        runsPerThread: 1,
        label: 'light',
      })),
    );
    const order = await drainWith(runs);
    expect(positionOf(order, 'light', 4)).toBeLessThan(positionOf(order, 'heavy', 20));
  });

  it('starts interactive runs before the same tenant’s batch runs', async () => {
    const tenant = await seedTenantUsers(api.url, { slug: 'priorities', users: 1 });
    const runs = await enqueue({
      client: tenant.admin,
      agentId: tenant.agentId,
      threads: 30,
      runsPerThread: 1,
      label: 'batch',
      priority: 'batch',
    });
    runs.push(
      ...(await enqueue({
        client: tenant.admin,
        agentId: tenant.agentId,
        threads: 4,
        runsPerThread: 1,
        label: 'interactive',
      })),
    );
    const order = await drainWith(runs);
    expect(positionOf(order, 'interactive', 4)).toBeLessThan(positionOf(order, 'batch', 10));
  });

  it('refuses a run beyond the tenant’s queue limit with 429 queue_full and Retry-After', async () => {
    const limited = await startTestServer(
      { ...unlimitedRequests, runs: { concurrency: 0, maxQueuedPerTenant: 3 } },
      { database },
    );
    try {
      const tenant = await seedTenantUsers(limited.url, { slug: 'full', users: 1 });
      const user = tenant.admin;
      const statuses: number[] = [];
      for (let index = 0; index < 3; index += 1) {
        const thread = await user.post<Created>('/v1/threads', {});
        const run = await user.post(`/v1/threads/${thread.body.id}/runs`, {
          agentId: tenant.agentId,
          input: runInput,
        });
        statuses.push(run.status);
      }
      expect(statuses).toEqual([201, 201, 201]);
      const thread = await user.post<Created>('/v1/threads', {});
      const refused = await user.post(`/v1/threads/${thread.body.id}/runs`, {
        agentId: tenant.agentId,
        input: runInput,
      });
      expect(refused.status).toBe(429);
      expect(refused.headers.get('content-type')).toBe('application/problem+json');
      expect(refused.body).toMatchObject({ code: 'queue_full', status: 429 });
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      // Nothing of the refused run was stored.
      const none = await user.get<{ data: unknown[] }>(`/v1/threads/${thread.body.id}/runs`);
      expect(none.body.data).toEqual([]);
      // Another tenant's queue is its own.
      const other = await seedTenantUsers(limited.url, { slug: 'not-full', users: 1 });
      const otherThread = await other.admin.post<Created>('/v1/threads', {});
      const accepted = await other.admin.post(`/v1/threads/${otherThread.body.id}/runs`, {
        agentId: other.agentId,
        input: runInput,
      });
      expect(accepted.status).toBe(201);
    } finally {
      await limited.stop();
    }
  });

  it('estimates Retry-After from how fast the refusing tenant’s own queue drains', async () => {
    // One running run that started 10 s ago: a run takes ~20 s, and the next free place in a
    // full queue comes when it ends. Another tenant's many fresh claims must not count.
    const limited = await startTestServer(
      { ...unlimitedRequests, runs: { concurrency: 0, maxQueuedPerTenant: 3 } },
      { database },
    );
    const owner = new pg.Client({ connectionString: database.url });
    await owner.connect();
    try {
      await owner.query(`select set_config('brigade.scheduler', 'on', false)`);
      const busy = await seedTenantUsers(limited.url, { slug: 'draining', users: 1 });
      const crowd = await seedTenantUsers(limited.url, { slug: 'crowd', users: 1 });
      const create = async (tenant: typeof busy) => {
        const thread = await tenant.admin.post<Created>('/v1/threads', {});
        return tenant.admin.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
          agentId: tenant.agentId,
          input: runInput,
        });
      };
      const first = await create(busy);
      await owner.query(
        `update brigade.run_queue set state = 'claimed', executor_id = 'elsewhere',
                heartbeat_at = now(), first_claimed_at = now() - interval '10 seconds'
          where run_id = $1`,
        [first.body.id],
      );
      for (let index = 0; index < 3; index += 1) expect((await create(busy)).status).toBe(201);
      for (let index = 0; index < 3; index += 1) {
        const run = await create(crowd);
        await owner.query(
          `update brigade.run_queue set state = 'claimed', executor_id = 'elsewhere',
                  heartbeat_at = now(), first_claimed_at = now() where run_id = $1`,
          [run.body.id],
        );
      }
      const refused = await create(busy);
      expect(refused.status).toBe(429);
      const retryAfter = Number(refused.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThanOrEqual(19);
      expect(retryAfter).toBeLessThanOrEqual(25);
    } finally {
      await owner.end();
      await limited.stop();
    }
  });
});

/**
 * Samples the claimed queue entries per tenant and per user until `stop`, which returns the most
 * seen at once for each tenant and user id.
 */
function sampleClaims(owner: pg.Client) {
  const maxima = new Map<string, number>();
  let sampling = true;
  const loop = (async () => {
    while (sampling) {
      const result = await owner.query<{ key: string; n: number }>(
        `select coalesce(tenant_id::text, user_id::text) as key, count(*)::int as n
           from brigade.run_queue where state = 'claimed'
          group by grouping sets ((tenant_id), (user_id))`,
      );
      for (const row of result.rows) {
        maxima.set(row.key, Math.max(maxima.get(row.key) ?? 0, row.n));
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  })();
  return {
    async stop() {
      sampling = false;
      await loop;
      return maxima;
    },
  };
}

describe('concurrency caps across processes', () => {
  let capDatabase: TestDatabase;
  let workers: SpawnedServer[] = [];
  let capApi: TestServer;
  let owner: pg.Client;

  beforeAll(async () => {
    capDatabase = await createTestDatabase();
    capApi = await startTestServer(
      { ...unlimitedRequests, runs: { concurrency: 0 } },
      { database: capDatabase },
    );
    const workerConfig = {
      ...unlimitedRequests,
      runs: {
        concurrency: 4,
        pollIntervalMs: 20,
        maxConcurrentPerTenant: 3,
        maxConcurrentPerUser: 2,
      },
      models: { local: { tokenDelayMs: 10 } },
    };
    workers = await Promise.all([
      spawnServer({ databaseUrl: capDatabase.url, config: workerConfig }),
      spawnServer({ databaseUrl: capDatabase.url, config: workerConfig }),
    ]);
    owner = new pg.Client({ connectionString: capDatabase.url });
    await owner.connect();
  }, 60_000);

  afterAll(async () => {
    await owner?.end();
    for (const worker of workers) worker.child.kill('SIGKILL');
    await capApi?.stop();
    await capDatabase?.drop();
  });

  it('never runs more of one tenant or user at once than its cap, on two workers', async () => {
    const busy = await seedTenantUsers(capApi.url, { slug: 'busy', users: 3 });
    const small = await seedTenantUsers(capApi.url, { slug: 'small', users: 1 });
    const sampler = sampleClaims(owner);
    const runs = (
      await Promise.all([
        ...busy.clients.map((client, index) =>
          enqueue({
            client,
            agentId: busy.agentId,
            threads: 4,
            runsPerThread: 3,
            label: `busy-${index}`,
          }),
        ),
        enqueue({
          client: small.admin,
          agentId: small.agentId,
          threads: 4,
          runsPerThread: 3,
          label: 'small',
        }),
      ])
    ).flat();
    const done = await finished(runs);
    const maxima = await sampler.stop();
    expect([...done.values()].every((run) => run.status === 'completed')).toBe(true);
    // The cap was reached (so it was tested) and never exceeded.
    expect(maxima.get(busy.tenantId)).toBe(3);
    expect(maxima.get(small.tenantId)).toBeLessThanOrEqual(2);
    for (const [key, count] of maxima) {
      if (key !== busy.tenantId && key !== small.tenantId) expect(count).toBeLessThanOrEqual(2);
    }
    // The same from the runs' own start and completion times.
    const busyRuns = [...done.values()].filter((run) => run.label.startsWith('busy'));
    expect(mostAtOnce(busyRuns)).toBeLessThanOrEqual(3);
  }, 60_000);

  it('keeps the caps when the workers take the creates themselves and claim runs on arrival', async () => {
    // Every create goes to a worker with free slots, so most runs are claimed by their create
    // (claim_on_arrival), racing the other worker's creates and both schedulers' claims.
    const operator = apiClient(workers[0]?.url ?? '', testOperatorKey);
    const tenantId = await seedTenant(operator, 'arrivals');
    const users = [];
    for (const role of ['admin', 'member', 'member'])
      users.push(await seedUser(operator, { tenantId, role }));
    const admin = apiClient(workers[0]?.url ?? '', users[0]?.secret);
    const agent = await admin.post<Created>('/v1/agents', { name: 'echo' });
    expect(agent.status).toBe(201);
    const sampler = sampleClaims(owner);
    const runs = (
      await Promise.all(
        users.flatMap((user, index) =>
          workers.map((worker, side) =>
            enqueue({
              client: apiClient(worker.url, user.secret),
              agentId: agent.body.id,
              threads: 2,
              runsPerThread: 3,
              label: `user-${index}-${side}`,
            }),
          ),
        ),
      )
    ).flat();
    const done = await finished(runs);
    const maxima = await sampler.stop();
    expect([...done.values()].every((run) => run.status === 'completed')).toBe(true);
    expect(maxima.get(tenantId)).toBe(3);
    for (const user of users) expect(maxima.get(user.userId) ?? 0).toBeLessThanOrEqual(2);
    expect(mostAtOnce([...done.values()])).toBeLessThanOrEqual(3);
  }, 60_000);
});

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
    owner = new pg.Client({ connectionString: arrivalDatabase.url });
    lockHolder = new pg.Client({ connectionString: arrivalDatabase.url });
    await owner.connect();
    await lockHolder.connect();
    // The owner is subject to row-level security too: see the queue and manage policies.
    await owner.query(
      `select set_config('brigade.scheduler', 'on', false), set_config('brigade.operator', 'on', false)`,
    );
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
