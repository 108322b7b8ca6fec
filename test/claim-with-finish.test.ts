import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Created, waitForRun } from './support/api-client.ts';
import {
  enqueue,
  ownerSeeingAll,
  type RunBody,
  runInput,
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
 * A finishing run claims the runs that take its slot in the transaction that ends it
 * (brigade.finish_run_claim, migration 0024), instead of a claim of its own afterwards.
 */
describe('claims with a run’s finish (brigade.finish_run_claim)', () => {
  let database: TestDatabase;
  let api: TestServer;
  let owner: pg.Client;

  beforeAll(async () => {
    database = await createTestDatabase();
    // No executor: runs stay queued until the test claims and ends them as a process would.
    api = await startTestServer(
      { ...unlimitedRequests, runs: { concurrency: 0, maxQueuedPerTenant: 0 } },
      { database },
    );
    owner = await ownerSeeingAll(database.url);
  }, 60_000);

  afterAll(async () => {
    await owner?.end();
    await api?.stop();
    await database?.drop();
  });

  /** Two runs queued on one thread; the first claimed by `executor` (the second waits behind it). */
  async function threadOfTwo(slug: string, executor: string) {
    const tenant = await seedTenantUsers(api.url, { slug, users: 1 });
    const [first, second] = await enqueue({
      client: tenant.admin,
      agentId: tenant.agentId,
      threads: 1,
      runsPerThread: 2,
      label: slug,
    });
    if (first === undefined || second === undefined) throw new Error('runs not queued');
    const claimed = await owner.query<{ claimed_run: string }>(
      `select claimed_run from brigade.claim_runs($1, 16, '10 seconds', 0, 0)`,
      [executor],
    );
    expect(claimed.rows.map((row) => row.claimed_run)).toContain(first.runId);
    expect(claimed.rows.map((row) => row.claimed_run)).not.toContain(second.runId);
    const user = await owner.query<{ user_id: string }>(
      'select user_id from brigade.runs where id = $1',
      [first.runId],
    );
    return { tenantId: tenant.tenantId, userId: user.rows[0]?.user_id ?? '', first, second };
  }

  async function finishWithClaim(
    run: { tenantId: string; userId: string; runId: string },
    executor: string,
    limit: number,
  ) {
    const result = await owner.query<{
      result: { finished: { inputTokens: number } | null; claims: [string, string, string][] };
    }>(
      `select brigade.finish_run_claim($1, $2, $3, 2, '[]', 'failed', 'test_failure', 'ended by the test',
                                       null, null, $4, $5, $6, '10 seconds', 0, 0) as result`,
      [
        run.tenantId,
        run.userId,
        run.runId,
        JSON.stringify({ type: 'run-failed', data: { status: 'failed' } }),
        executor,
        limit,
      ],
    );
    return result.rows[0]?.result;
  }

  async function queueEntry(runId: string) {
    const result = await owner.query<{ state: string; executor_id: string | null }>(
      'select state, executor_id from brigade.run_queue where run_id = $1',
      [runId],
    );
    return result.rows[0];
  }

  it('ends the run and claims the run queued behind it on its thread, in one transaction', async () => {
    const { tenantId, userId, first, second } = await threadOfTwo('finish-claim', 'proc-a');
    const result = await finishWithClaim({ tenantId, userId, runId: first.runId }, 'proc-a', 4);
    expect(result?.finished).not.toBeNull();
    expect(result?.claims).toEqual([[second.runId, tenantId, userId]]);
    // The first run ended and left the queue; the second is claimed by the finishing process.
    const ended = await owner.query<{ status: string; error_code: string }>(
      'select status, error_code from brigade.runs where id = $1',
      [first.runId],
    );
    expect(ended.rows[0]).toEqual({ status: 'failed', error_code: 'test_failure' });
    expect(await queueEntry(first.runId)).toBeUndefined();
    expect(await queueEntry(second.runId)).toEqual({ state: 'claimed', executor_id: 'proc-a' });
    // Its terminal event is the run's second, after run-queued.
    const events = await owner.query<{ seq: number; type: string }>(
      'select seq, type from brigade.run_events where run_id = $1 order by seq',
      [first.runId],
    );
    expect(events.rows).toEqual([
      { seq: 1, type: 'run-queued' },
      { seq: 2, type: 'run-failed' },
    ]);
  });

  it('claims other tenants’ runs too, though the finish ran in its own tenant’s scope', async () => {
    const { tenantId, userId, first, second } = await threadOfTwo('finish-scope', 'proc-c');
    const other = await seedTenantUsers(api.url, { slug: 'finish-scope-other', users: 1 });
    const [foreign] = await enqueue({
      client: other.admin,
      agentId: other.agentId,
      threads: 1,
      runsPerThread: 1,
      label: 'other',
    });
    const result = await finishWithClaim({ tenantId, userId, runId: first.runId }, 'proc-c', 4);
    const claimed = (result?.claims ?? []).map(([runId]) => runId);
    expect(claimed).toEqual(expect.arrayContaining([second.runId, foreign?.runId]));
    expect(await queueEntry(foreign?.runId ?? '')).toEqual({
      state: 'claimed',
      executor_id: 'proc-c',
    });
  });

  it('claims nothing with no free slot, and nothing for a run that had already ended', async () => {
    const { tenantId, userId, first, second } = await threadOfTwo('finish-no-slot', 'proc-b');
    const result = await finishWithClaim({ tenantId, userId, runId: first.runId }, 'proc-b', 0);
    expect(result?.finished).not.toBeNull();
    expect(result?.claims).toEqual([]);
    expect(await queueEntry(second.runId)).toEqual({ state: 'queued', executor_id: null });
    // Ending it again changes nothing, but its slot is free: the claim still takes the next run.
    const again = await finishWithClaim({ tenantId, userId, runId: first.runId }, 'proc-b', 1);
    expect(again?.finished).toBeNull();
    expect(again?.claims).toEqual([[second.runId, tenantId, userId]]);
  });
});

describe('a run queued behind its thread’s earlier run, with no poll to find it', () => {
  let server: TestServer;

  beforeAll(async () => {
    // One slot and a poll far beyond the test: only the earlier run's finish can start the next.
    server = await startTestServer({
      ...unlimitedRequests,
      runs: { concurrency: 1, pollIntervalMs: 60_000 },
      models: { local: { tokenDelayMs: 30 } },
    });
  }, 60_000);

  afterAll(async () => {
    await server?.stop();
  });

  it('starts each run of a thread as the one before it ends', async () => {
    const tenant = await seedTenantUsers(server.url, { slug: 'no-poll', users: 1 });
    const thread = await tenant.admin.post<Created>('/v1/threads', {});
    const runs: RunBody[] = [];
    for (let index = 0; index < 3; index += 1) {
      const created = await tenant.admin.post<RunBody>(`/v1/threads/${thread.body.id}/runs`, {
        agentId: tenant.agentId,
        input: runInput,
      });
      expect(created.status).toBe(201);
      runs.push(created.body);
    }
    for (const run of runs) {
      const ended = await waitForRun(tenant.admin, { threadId: thread.body.id, runId: run.id });
      expect(ended.status).toBe('completed');
    }
  });
});
