import { CompiledQuery, Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { createRequestLimiter } from '../src/runtime/request-limiter.ts';
import { createBudgetStore } from '../src/storage/guards/budget-store.ts';
import type { DatabaseSchema } from '../src/storage/postgres/database-schema.ts';
import { claimRuns } from '../src/storage/runs/run-claim.ts';
import { type BenchServer, call, seedAdmin, startBenchServer } from './bench-server.ts';
import { cpuMs, machine, percentile, postgresPids, progress } from './support.ts';

interface RunBody {
  readonly id: string;
  readonly status: string;
}

interface Tenant {
  readonly key: string;
  readonly agentId: string;
  readonly threads: readonly string[];
}

const input = 'one two three four five six';
const terminal = new Set(['completed', 'failed', 'cancelled', 'expired']);

async function seedTenant(url: string, threads: number): Promise<Tenant> {
  const key = await seedAdmin(url);
  const agent = await call<{ id: string }>(`${url}/v1/agents`, {
    method: 'POST',
    key,
    body: { name: 'bench' },
  });
  const created = await Promise.all(
    Array.from({ length: threads }, () =>
      call<{ id: string }>(`${url}/v1/threads`, { method: 'POST', key, body: {} }),
    ),
  );
  return { key, agentId: agent.id, threads: created.map((thread) => thread.id) };
}

/** Submits one run every `intervalMs` for `durationMs`; returns the created runs (429s counted). */
async function submit(
  url: string,
  options: { tenant: Tenant; intervalMs: number; durationMs: number },
): Promise<{ runs: { threadId: string; runId: string }[]; refused: number }> {
  const { tenant } = options;
  const runs: { threadId: string; runId: string }[] = [];
  const pending: Promise<void>[] = [];
  let refused = 0;
  const started = performance.now();
  for (let index = 0; performance.now() - started < options.durationMs; index += 1) {
    const threadId = tenant.threads[index % tenant.threads.length] ?? '';
    pending.push(
      fetch(`${url}/v1/threads/${threadId}/runs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${tenant.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ agentId: tenant.agentId, input }),
      }).then(async (response) => {
        const body = (await response.json()) as { id?: string; code?: string };
        if (response.status === 201 && body.id !== undefined)
          runs.push({ threadId, runId: body.id });
        else if (body.code === 'queue_full') refused += 1;
        else throw new Error(`create run: ${response.status} ${JSON.stringify(body)}`);
      }),
    );
    const next = started + (index + 1) * options.intervalMs;
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, next - performance.now())));
  }
  await Promise.all(pending);
  return { runs, refused };
}

/**
 * Waits for every run to end (polling the API as its user) and returns their queue waits in
 * milliseconds, ascending, read from the database to the microsecond: the API's `queueWaitMs`
 * is a difference of millisecond timestamps, and one millisecond moves a p95 of a few
 * milliseconds by 20 %.
 */
async function queueWaits(
  server: { readonly url: string; readonly ownerUrl: string },
  key: string,
  runs: readonly { threadId: string; runId: string }[],
): Promise<number[]> {
  const { url, ownerUrl } = server;
  for (const run of runs) {
    for (;;) {
      const body = await call<RunBody>(`${url}/v1/threads/${run.threadId}/runs/${run.runId}`, {
        method: 'GET',
        key,
      });
      if (terminal.has(body.status)) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  const client = new pg.Client({ connectionString: ownerUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ ms: number }>(
      `select (extract(epoch from first_claimed_at - created_at) * 1000)::float8 as ms
         from brigade.runs where id = any($1::uuid[])`,
      [runs.map((run) => run.runId)],
    );
    return rows.map((row) => Math.max(0, row.ms ?? 0)).sort((a, b) => a - b);
  } finally {
    await client.end();
  }
}

/** The claim statement before fair queueing (oldest first), as the baseline. */
const fifoClaim = `
  update brigade.run_queue q set state = 'claimed', executor_id = 'bench', heartbeat_at = clock_timestamp()
   where q.run_id in (
     select c.run_id from brigade.run_queue c
      where (c.state = 'queued' or c.heartbeat_at < clock_timestamp() - interval '10 seconds')
        and not exists (select 1 from brigade.run_queue o
          where o.thread_id = c.thread_id and o.run_id <> c.run_id
            and (o.enqueued_at < c.enqueued_at
                 or (o.state = 'claimed' and o.heartbeat_at >= clock_timestamp() - interval '10 seconds')))
      order by c.enqueued_at for update skip locked limit 16)
  returning q.run_id`;

/** `callPrepared` on one connection (inside the measurement's transaction), for claimRuns. */
function ownerCalls(connection: Kysely<DatabaseSchema>) {
  return {
    async callPrepared(statement: { readonly text: string }, values: readonly unknown[]) {
      const result = await connection.executeQuery(CompiledQuery.raw(statement.text, [...values]));
      return result.rows as Record<string, unknown>[];
    },
  };
}

/**
 * Server CPU per claimed run of the fair claim minus the FIFO claim, on the same synthetic
 * backlog (1,000 entries of 51 tenants and 200 users, 40 running), in a transaction that is
 * rolled back: each claim runs inside a savepoint that is undone, so every claim sees the
 * same queue. CPU is read from /proc for the PostgreSQL backend.
 */
async function claimOverhead(ownerUrl: string, iterations: number) {
  const db = new Kysely<DatabaseSchema>({
    dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: ownerUrl, max: 1 }) }),
  });
  try {
    return await db.connection().execute(async (connection) => {
      const raw = async (text: string) => (await sql.raw(text).execute(connection)).rows;
      const [backend] = (await raw('select pg_backend_pid() as pid')) as { pid: number }[];
      const pid = backend?.pid ?? 0;
      await raw('begin');
      await raw(`
        insert into brigade.run_queue (run_id, tenant_id, user_id, thread_id, state, executor_id,
                                       heartbeat_at, priority, enqueued_at)
        select gen_random_uuid(), ('00000000-0000-0000-0000-' || lpad((i % 51)::text, 12, '0'))::uuid,
               ('00000000-0000-0000-0001-' || lpad((i % 200)::text, 12, '0'))::uuid, gen_random_uuid(),
               case when i <= 40 then 'claimed' else 'queued' end,
               case when i <= 40 then 'other' end, case when i <= 40 then clock_timestamp() end,
               case when i % 5 = 0 then 'batch' else 'interactive' end,
               clock_timestamp() - (i || ' milliseconds')::interval
          from generate_series(1, 1000) i`);
      const measure = async (claim: () => Promise<number>) => {
        let claimed = 0;
        const before = cpuMs([pid]);
        const started = performance.now();
        for (let index = 0; index < iterations; index += 1) {
          await raw('savepoint s');
          claimed += await claim();
          await raw('rollback to savepoint s');
        }
        return {
          cpuMsPerRun: (cpuMs([pid]) - before) / Math.max(1, claimed),
          msPerClaim: (performance.now() - started) / iterations,
        };
      };
      const fifo = await measure(async () => (await raw(fifoClaim)).length);
      const fair = await measure(
        async () =>
          (
            await claimRuns(ownerCalls(connection), {
              executorId: 'bench',
              limit: 16,
              staleAfterMs: 10_000,
              maxPerTenant: 32,
              maxPerUser: 8,
            })
          ).length,
      );
      await raw('rollback');
      return { fifo, fair };
    });
  } finally {
    await db.destroy();
  }
}

/**
 * CPU per request of the guard rails a model call passes besides the scheduler: the request
 * rate limiter (rate-limiter-flexible, in-process memory store as in embedded mode; three
 * limits per request: key, user, tenant) and an exact budget's reserve and settle (one
 * round trip each to PostgreSQL, with the usage record), for a tenant whose budget policy
 * binds every call. CPU is this process's plus PostgreSQL's; the baseline is two bare
 * prepared round trips on the same pool, so `budget` is what the budget adds to them.
 */
async function guardOverhead(server: BenchServer, iterations: number) {
  const key = await seedAdmin(server.url);
  await call(`${server.url}/v1/policies`, {
    method: 'POST',
    key,
    body: { level: 'tenant', limits: { budget: { amountUsd: 1_000_000, period: 'day' } } },
  });
  const me = await call<{ tenant: { id: string }; user: { id: string } }>(`${server.url}/v1/me`, {
    method: 'GET',
    key,
  });
  const spender = { tenantId: me.tenant.id, userId: me.user.id };
  const { database } = server.brigade.storage;
  const cpuOf = async (work: () => Promise<void>) => {
    const pids = [process.pid, ...postgresPids()];
    const before = cpuMs(pids);
    for (let index = 0; index < iterations; index += 1) await work();
    return (cpuMs([...pids, ...postgresPids()]) - before) / iterations;
  };
  const limiter = createRequestLimiter({
    perKey: 1_000_000_000,
    perUser: 1_000_000_000,
    perTenant: 1_000_000_000,
    redis: undefined,
    onStoreError: () => undefined,
  });
  const subject = { ...spender, keyId: 'bench' };
  const budgets = createBudgetStore(database);
  const bare = { name: 'bench_bare_round_trip', text: 'select $1::int as value' };
  const usage = {
    entry: {
      source: 'api' as const,
      provider: 'bench',
      model: 'bench',
      inputTokens: 10,
      outputTokens: 10,
      estimated: false,
      cost: 30,
      latencyMs: 1,
      ttftMs: null,
      status: 'ok' as const,
    },
  };
  const pair = async () => {
    const reservation = await budgets.reserve(spender, 1_000, {
      expiresAt: new Date(Date.now() + 60_000),
    });
    if (reservation.id === undefined) throw new Error('the budget policy does not bind');
    await budgets.settle(spender, reservation, usage);
  };
  // Warm both paths (prepared statements, JIT) before measuring.
  for (let index = 0; index < 100; index += 1) {
    await pair();
    await database.callPrepared(bare, [index]);
  }
  // In-process only, and cheap: this process's CPU in microseconds, over more calls.
  const limiterCalls = iterations * 10;
  const limiterBefore = process.cpuUsage();
  for (let index = 0; index < limiterCalls; index += 1) await limiter.consume(subject);
  const limiterUsage = process.cpuUsage(limiterBefore);
  const limiterMs = (limiterUsage.user + limiterUsage.system) / 1000 / limiterCalls;
  const roundTrips = await cpuOf(async () => {
    await database.callPrepared(bare, [1]);
    await database.callPrepared(bare, [2]);
  });
  const budgetMs = await cpuOf(pair);
  return { limiterMs, budgetMs, roundTrips };
}

/**
 * A noisy tenant submits runs at 50× a quiet tenant's rate; the quiet tenant's p95 queue wait
 * is compared with the same quiet load running alone (measured first, same server).
 */
export async function run(quick: boolean): Promise<object> {
  const durationMs = quick ? 10_000 : 80_000;
  const quietIntervalMs = 500;
  const server = await startBenchServer({
    runs: {
      concurrency: 16,
      pollIntervalMs: 50,
      maxConcurrentPerTenant: 8,
      maxConcurrentPerUser: 8,
      maxQueuedPerTenant: 300,
    },
    models: { local: { tokenDelayMs: 20 } },
  });
  try {
    // First, while the queue is empty: the live scheduler then claims nothing and waits little
    // for the claim lock the measurement holds.
    progress('claim statement: fair vs FIFO on a 1,000-entry backlog');
    const { ownerUrl } = server.brigade.storage;
    const urls = { url: server.url, ownerUrl };
    const overhead = await claimOverhead(ownerUrl, quick ? 50 : 200);
    progress('guard rails: limiter, budget reserve and settle');
    const guards = await guardOverhead(server, quick ? 500 : 2_000);
    const quiet = await seedTenant(server.url, 8);
    const noisy = await seedTenant(server.url, 200);
    progress(`alone: quiet tenant submits every ${quietIntervalMs} ms for ${durationMs} ms`);
    const alone = await submit(server.url, {
      tenant: quiet,
      intervalMs: quietIntervalMs,
      durationMs,
    });
    const aloneWaits = await queueWaits(urls, quiet.key, alone.runs);
    progress(`contended: noisy tenant submits every ${quietIntervalMs / 50} ms alongside`);
    const [quietContended, noisyContended] = await Promise.all([
      submit(server.url, { tenant: quiet, intervalMs: quietIntervalMs, durationMs }),
      submit(server.url, { tenant: noisy, intervalMs: quietIntervalMs / 50, durationMs }),
    ]);
    const contendedWaits = await queueWaits(urls, quiet.key, quietContended.runs);
    progress(`noisy: ${noisyContended.runs.length} accepted, ${noisyContended.refused} queue_full`);
    const noisySample = noisyContended.runs.filter((_, index) => index % 10 === 0);
    const noisyWaits = await queueWaits(urls, noisy.key, noisySample);
    const aloneP95 = percentile(aloneWaits, 0.95);
    const contendedP95 = percentile(contendedWaits, 0.95);
    return {
      bench: 'fairness',
      metrics: {
        quiet_p95_wait_ratio: round(contendedP95 / Math.max(1, aloneP95)),
        quiet_p95_wait_ms: round(contendedP95),
        quiet_p50_wait_ms: round(percentile(contendedWaits, 0.5)),
        quiet_runs: contendedWaits.length,
        noisy_p50_wait_ms: round(percentile(noisyWaits, 0.5)),
        noisy_accepted: noisyContended.runs.length,
        noisy_queue_full: noisyContended.refused,
        overhead_cpu_ms_per_request: round(overhead.fair.cpuMsPerRun - overhead.fifo.cpuMsPerRun),
        limiter_cpu_ms_per_request: round3(guards.limiterMs),
        budget_cpu_ms_per_request: round3(guards.budgetMs - guards.roundTrips),
        claim_ms_fair: round(overhead.fair.msPerClaim),
      },
      baseline: {
        description:
          'the quiet tenant alone (same server, same rate); the FIFO claim statement on the same backlog; two bare prepared round trips (what a budget reserve and settle add to)',
        quiet_p95_wait_ms: round(aloneP95),
        quiet_p50_wait_ms: round(percentile(aloneWaits, 0.5)),
        claim_ms_fifo: round(overhead.fifo.msPerClaim),
        claim_cpu_ms_per_run_fifo: round(overhead.fifo.cpuMsPerRun),
        budget_cpu_ms_per_request_with_round_trips: round3(guards.budgetMs),
        two_bare_round_trips_cpu_ms: round3(guards.roundTrips),
      },
      targets: { quiet_p95_wait_ratio: 1.25 },
      machine: machine(),
    };
  } finally {
    await server.stop();
  }
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}

function round3(value: number): number {
  return Math.round(value * 1000) / 1000;
}
