import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
