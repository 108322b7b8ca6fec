import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEventBatcher, type EventBatcher } from '../src/runtime/event-batcher.ts';
import { createEventWriter } from '../src/runtime/event-writer.ts';
import { loadRun } from '../src/runtime/run-loader.ts';
import { appendEventBatches } from '../src/storage/runs/event-batch-store.ts';
import { createRunCheckpoints } from '../src/storage/runs/run-checkpoints.ts';
import { apiClient, type Created, seedTenant, seedUser, waitForRun } from './support/api-client.ts';
import {
  createTestDatabase,
  startTestServer,
  type TestDatabase,
  type TestServer,
  testOperatorKey,
} from './support/test-brigade.ts';

/**
 * A process that misses its heartbeats for `staleAfterMs` while it still executes a run (a
 * database outage that long, a stalled event loop) loses the run to another process, which
 * resumes it. The old execution must stop without writing an outcome: before, both wrote the
 * run's events, collided on their numbers, and the loser failed a run the winner was
 * completing (`core_error`, "duplicate key value violates unique constraint run_events_pkey").
 */
let database: TestDatabase;
let slow: TestServer;
let fast: TestServer;
let owner: pg.Client;

const runs = { concurrency: 4, staleAfterMs: 2_000 };
const models = { local: { tokenDelayMs: 40 } };

beforeAll(async () => {
  database = await createTestDatabase();
  // The first process claims runs on arrival and looks for stale claims rarely; the second
  // looks often, so it is the one that resumes a run the first lost.
  slow = await startTestServer({ runs: { ...runs, pollIntervalMs: 5_000 }, models }, { database });
  fast = await startTestServer({ runs: { ...runs, pollIntervalMs: 50 }, models }, { database });
  owner = new pg.Client({ connectionString: database.url });
  await owner.connect();
});

afterAll(async () => {
  await owner?.end();
  await fast?.stop();
  await slow?.stop();
  await database?.drop();
});

async function executorOf(runId: string): Promise<string | null> {
  const result = await owner.query<{ executor_id: string | null }>(
    'select executor_id from brigade.run_queue where run_id = $1',
    [runId],
  );
  return result.rows[0]?.executor_id ?? null;
}

describe('a run whose executor missed its heartbeats', () => {
  it('is finished by the process that resumed it; the old execution stops without an outcome', async () => {
    const operator = apiClient(slow.url, testOperatorKey);
    const tenantId = await seedTenant(operator, 'stale');
    const user = await seedUser(operator, { tenantId, role: 'owner' });
    const client = apiClient(slow.url, user.secret);
    const agent = await client.post<Created>('/v1/agents', { name: 'talker' });
    const thread = await client.post<Created>('/v1/threads', {});
    const words = Array.from({ length: 100 }, (_, index) => `w${index}`).join(' ');
    const run = await client.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId: agent.body.id,
      input: words,
    });
    expect(run.status).toBe(201);
    const runId = run.body.id;
    let first: string | null = null;
    for (let attempt = 0; attempt < 100 && first === null; attempt += 1) {
      first = await executorOf(runId);
      if (first === null) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(first).not.toBeNull();
    // Its heartbeats stop reaching the database (they are dropped), and its claim is stale now.
    await owner.query(`create function public.drop_heartbeats() returns trigger language plpgsql as $$
      begin
        if old.executor_id = '${first}' and new.executor_id = old.executor_id then
          new.heartbeat_at := old.heartbeat_at;
        end if;
        return new;
      end $$`);
    await owner.query(`create trigger drop_heartbeats before update on brigade.run_queue
      for each row execute function public.drop_heartbeats()`);
    await owner.query(
      `update brigade.run_queue set heartbeat_at = now() - interval '1 minute' where run_id = $1`,
      [runId],
    );
    let second: string | null = first;
    for (let attempt = 0; attempt < 200 && second === first; attempt += 1) {
      second = await executorOf(runId);
      if (second === first) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await owner.query('drop trigger drop_heartbeats on brigade.run_queue');
    expect(second).not.toBe(first);
    const done = await waitForRun(apiClient(fast.url, user.secret), {
      threadId: thread.body.id,
      runId,
    });
    expect(done).toMatchObject({ status: 'completed', errorCode: null });
    // The events are the resumed execution's, numbered without a gap, with one outcome.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const events = await owner.query<{ seq: number; type: string }>(
      'select seq, type from brigade.run_events where run_id = $1 order by seq',
      [runId],
    );
    expect(events.rows.map((row) => row.seq)).toEqual(events.rows.map((_, index) => index + 1));
    const outcomes = events.rows.filter((row) => /^run-(completed|failed)$/.test(row.type));
    expect(outcomes.map((row) => row.type)).toEqual(['run-completed']);
    const answers = await owner.query(
      `select 1 from brigade.messages where thread_id = $1 and role = 'assistant'`,
      [thread.body.id],
    );
    expect(answers.rowCount).toBe(1);
  });
});

/**
 * The claim fence (migration 0042): every write of an execution (its start, its checkpoints,
 * its event batches) is refused, whole, once the run's queue entry is held by another executor
 * or gone. Before, an execution that had lost its claim went on writing until its next
 * heartbeat: deltas, steps, even its outcome, over the run another process had resumed.
 */
describe('the claim fence', () => {
  let fenced: TestDatabase;
  let zombie: TestServer;
  let fencedOwner: pg.Client;

  beforeAll(async () => {
    fenced = await createTestDatabase();
    // Heartbeats every 150 s: an execution here learns of a takeover from the fence alone.
    zombie = await startTestServer(
      { runs: { concurrency: 4, staleAfterMs: 600_000, pollIntervalMs: 5_000 }, models },
      { database: fenced },
    );
    fencedOwner = new pg.Client({ connectionString: fenced.url });
    await fencedOwner.connect();
  });

  afterAll(async () => {
    await fencedOwner?.end();
    await zombie?.stop();
    await fenced?.drop();
  });

  async function query<T extends pg.QueryResultRow>(text: string, values: unknown[]) {
    return (await fencedOwner.query<T>(text, values)).rows;
  }

  /** What the run has written: its events, steps and status, and who holds its entry. */
  async function written(runId: string) {
    const [events] = await query<{ count: number; last: number; terminal: number }>(
      `select count(*)::int as count, coalesce(max(seq), 0)::int as last,
              count(*) filter (where type ~ '^run-(completed|failed|cancelled|expired)$')::int
                as terminal
         from brigade.run_events where run_id = $1`,
      [runId],
    );
    const [steps] = await query<{ count: number }>(
      'select count(*)::int as count from brigade.run_steps where run_id = $1',
      [runId],
    );
    const [run] = await query<{ status: string }>('select status from brigade.runs where id = $1', [
      runId,
    ]);
    const [entry] = await query<{ executor_id: string | null }>(
      'select executor_id from brigade.run_queue where run_id = $1',
      [runId],
    );
    return { events, steps: steps?.count, status: run?.status, executor: entry?.executor_id };
  }

  /**
   * A run executing on `zombie` (a slow answer of 100 tokens, about 4 s) whose claim another
   * executor then takes over, as `claim_runs` takes a stale one (the entry locked first).
   */
  async function takenOver(slug: string) {
    const operator = apiClient(zombie.url, testOperatorKey);
    const tenantId = await seedTenant(operator, slug);
    const user = await seedUser(operator, { tenantId, role: 'owner' });
    const client = apiClient(zombie.url, user.secret);
    const agent = await client.post<Created>('/v1/agents', { name: 'talker' });
    const thread = await client.post<Created>('/v1/threads', {});
    const words = Array.from({ length: 100 }, (_, index) => `w${index}`).join(' ');
    const run = await client.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId: agent.body.id,
      input: words,
    });
    expect(run.status).toBe(201);
    const runId = run.body.id;
    // Running: claimed, started and streaming.
    let executor: string | null | undefined;
    for (let attempt = 0; attempt < 200; attempt += 1) {
      const [delta] = await query(
        `select 1 from brigade.run_events where run_id = $1 and type = 'message-delta' limit 1`,
        [runId],
      );
      executor = (await written(runId)).executor;
      if (delta !== undefined && executor != null) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(executor).toBeTruthy();
    await fencedOwner.query('begin');
    await fencedOwner.query('select 1 from brigade.run_queue where run_id = $1 for update', [
      runId,
    ]);
    await fencedOwner.query(
      `update brigade.run_queue set executor_id = 'another-process', heartbeat_at = now()
        where run_id = $1`,
      [runId],
    );
    await fencedOwner.query('commit');
    return {
      claim: { tenantId, userId: user.userId, runId },
      executor: executor as string,
      before: await written(runId),
    };
  }

  it('stops an execution whose claim was taken over, with nothing written after the takeover', async () => {
    const { claim, executor, before } = await takenOver('fence-stop');
    expect(before).toMatchObject({ status: 'running', executor: 'another-process' });
    expect(before.events?.terminal).toBe(0);
    // Well past the end of the answer the old execution was streaming (and its finish).
    await new Promise((resolve) => setTimeout(resolve, 5_500));
    const after = await written(claim.runId);
    expect(after).toEqual(before);
    // It stopped rather than only being refused: with its claim back, it still writes nothing.
    await fencedOwner.query('update brigade.run_queue set executor_id = $2 where run_id = $1', [
      claim.runId,
      executor,
    ]);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(await written(claim.runId)).toEqual({ ...before, executor });
  });

  it('refuses each checkpoint of the old executor before it writes anything', async () => {
    const { claim, executor, before } = await takenOver('fence-order');
    const database = zombie.brigade.storage.database;
    const checkpoints = createRunCheckpoints(database);
    const old = { ...claim, executorId: executor };
    // Event 1 exists: a write evaluated before the fence would fail with a unique violation
    // (23505), not with the fence's BRG17.
    const batch = { firstSeq: 1, events: [{ type: 'probe', data: {} }] };
    const step = { key: 'model:probe', kind: 'model' as const, output: {} };
    const settlement = {
      tenant: claim.tenantId,
      user: claim.userId,
      reservation: randomUUID(),
      cost: 0,
      status: 'settled' as const,
      usage: [],
    };
    const settled = { ...step, settlement };
    const reservation = {
      tenant: claim.tenantId,
      user: claim.userId,
      amount: 1,
      key: null,
      agent: null,
      id: randomUUID(),
      run: claim.runId,
      expires: new Date(Date.now() + 60_000),
    };
    const terminal = { type: 'run-failed', data: { status: 'failed' } };
    const successors = {
      take: () => ({
        executorId: executor,
        limit: 1,
        staleAfterMs: 600_000,
        maxPerTenant: 0,
        maxPerUser: 0,
      }),
      done: () => undefined,
    };
    const codeOf = (write: Promise<unknown>) =>
      write.then(
        () => 'written',
        (error: { code?: string }) => error.code,
      );
    const refused = [
      checkpoints.saveStep(old, batch, step),
      checkpoints.saveStep(old, batch, settled),
      checkpoints.saveStepThenConsumeQuota(old, batch, {
        step: settled,
        binding: { keyId: null, agentId: randomUUID() },
      }),
      checkpoints.saveStepThenReserve(old, batch, { step, reservation }),
      checkpoints.finish(old, batch, { status: 'failed', terminal }),
      checkpoints.finish(old, batch, {
        status: 'failed',
        terminal,
        step: { checkpoint: settled, committed: () => undefined },
      }),
      checkpoints.finish(old, batch, { status: 'failed', terminal, successors }),
      checkpoints.finish(old, batch, {
        status: 'failed',
        terminal,
        successors,
        step: { checkpoint: settled, committed: () => undefined },
      }),
      appendEventBatches(database, [
        { run: { ...old, firstSeq: 1 }, events: [{ type: 'probe', json: '{}' }] },
      ]),
      loadRun(database, old, { cores: ['tool-loop'], now: new Date() }),
    ];
    expect(await Promise.all(refused.map(codeOf))).toEqual(refused.map(() => 'BRG17'));
    // The writer's own transactions (an approval, a park) and flushes, batched or not; the
    // execution is told at each refusal.
    let told = 0;
    const writer = (batcher?: EventBatcher) =>
      createEventWriter({
        database,
        claim: old,
        nextSeq: 1,
        sink: {
          runChanged: () => undefined,
          queueChanged: () => undefined,
          cancelRequested: () => undefined,
        },
        onClaimLost: () => {
          told += 1;
        },
        ...(batcher === undefined ? {} : { batcher }),
      });
    const alone = writer();
    const batched = writer(createEventBatcher(database));
    alone.push('probe', {});
    batched.push('probe', {});
    const flushes = [
      alone.flush(),
      batched.flush(),
      alone.inTransaction((_db, append) => append([{ type: 'probe', data: {} }])),
      alone.inTransaction(async () => 'read only'),
    ];
    expect(await Promise.all(flushes.map(codeOf))).toEqual(flushes.map(() => 'BRG17'));
    expect(told).toBe(flushes.length);
    for (const events of [alone, batched]) events.close();
    // The executor holding the claim passes the fence, and so does a write without one.
    expect(
      await codeOf(checkpoints.saveStep({ ...claim, executorId: 'another-process' }, batch, step)),
    ).toBe('23505');
    expect(await codeOf(checkpoints.saveStep(claim, batch, step))).toBe('23505');
    expect(await written(claim.runId)).toEqual(before);
    // An entry gone (the run ended elsewhere, or was deleted) holds no claim either.
    await fencedOwner.query('delete from brigade.run_queue where run_id = $1', [claim.runId]);
    const holder = { ...claim, executorId: 'another-process' };
    expect(
      await codeOf(
        checkpoints.finish(holder, { firstSeq: 99, events: [] }, { status: 'failed', terminal }),
      ),
    ).toBe('BRG17');
    expect(await written(claim.runId)).toEqual({ ...before, executor: undefined });
  });
});
