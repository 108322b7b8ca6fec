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
