import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRunSignals, type RunSignals } from '../src/runtime/run-signals.ts';
import { createTestDatabase, type TestDatabase } from './support/test-brigade.ts';

// Two processes' signals on one real PostgreSQL: what one sends in a batch window, the other
// receives, every channel and every id, however many ids the batch holds.
describe('run signals across processes', () => {
  let database: TestDatabase;
  let sender: RunSignals;
  let receiver: RunSignals;
  const errors: Error[] = [];

  beforeAll(async () => {
    database = await createTestDatabase();
    const options = {
      connectionString: database.url,
      onError: (error: Error) => errors.push(error),
    };
    sender = createRunSignals(options);
    receiver = createRunSignals(options);
    await sender.start();
    await receiver.start();
  }, 60_000);

  afterAll(async () => {
    await sender?.stop();
    await receiver?.stop();
    await database?.drop();
  });

  it('delivers a batch of run changes, queue changes and cancels sent in one window', async () => {
    const cancelled: string[] = [];
    let queueWakes = 0;
    receiver.onCancelRequested((runId) => cancelled.push(runId));
    receiver.onQueueChanged(() => {
      queueWakes += 1;
    });
    // More ids than one NOTIFY payload holds (7,000 characters): the batch is split.
    const runIds = Array.from({ length: 400 }, (_, index) => crypto.randomUUID() + String(index));
    const subscriptions = runIds.map((runId) => receiver.subscribe(runId, 'user-a'));
    for (const subscription of subscriptions) subscription.take(0);
    for (const runId of runIds) sender.runChanged(runId);
    sender.queueChanged();
    for (const runId of runIds.slice(0, 250)) sender.cancelRequested(runId);

    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline && (cancelled.length < 250 || queueWakes === 0))
      await new Promise((resolve) => setTimeout(resolve, 20));
    expect(new Set(cancelled)).toEqual(new Set(runIds.slice(0, 250)));
    expect(queueWakes).toBeGreaterThan(0);
    // Every subscription was woken: its next wait returns at once, not after its timeout.
    const started = performance.now();
    await Promise.all(
      subscriptions.map((subscription) => subscription.wait(2_000, new AbortController().signal)),
    );
    expect(performance.now() - started).toBeLessThan(1_500);
    for (const subscription of subscriptions) subscription.close();
    expect(errors).toEqual([]);
  });
});

describe('run signals after their connection is lost', () => {
  let database: TestDatabase;
  let sender: RunSignals;
  let receiver: RunSignals;

  beforeAll(async () => {
    database = await createTestDatabase();
    const options = { connectionString: database.url, onError: () => undefined };
    sender = createRunSignals(options);
    receiver = createRunSignals(options);
    await sender.start();
    await receiver.start();
  }, 60_000);

  afterAll(async () => {
    await sender?.stop();
    await receiver?.stop();
    await database?.drop();
  });

  /** Backend pids of the signal connections (both processes') on the test database. */
  async function signalBackends(owner: pg.Client): Promise<number[]> {
    const result = await owner.query<{ pid: number }>(
      `select pid from pg_stat_activity
        where datname = current_database() and application_name = 'brigade-signals'
          and state = 'idle' order by pid`,
    );
    return result.rows.map((row) => row.pid);
  }

  it('listen again, say so, and deliver what is signalled next (a PostgreSQL restart, say)', async () => {
    const reconnected: number[] = [];
    receiver.onReconnected(() => reconnected.push(Date.now()));
    const cancelled: string[] = [];
    receiver.onCancelRequested((runId) => cancelled.push(runId));
    const owner = new pg.Client({ connectionString: database.url });
    await owner.connect();
    try {
      const before = await signalBackends(owner);
      expect(before).toHaveLength(2);
      await owner.query('select pg_terminate_backend(pid) from unnest($1::int[]) as pid', [before]);
      // Both processes connect again on their own.
      const deadline = Date.now() + 10_000;
      let after: number[] = [];
      while (Date.now() < deadline) {
        after = await signalBackends(owner);
        if (after.length === 2 && reconnected.length > 0) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(after).toHaveLength(2);
      expect(after.some((pid) => before.includes(pid))).toBe(false);
      expect(reconnected).toHaveLength(1);
    } finally {
      await owner.end();
    }
    sender.cancelRequested('run-after-restart');
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline && cancelled.length === 0)
      await new Promise((resolve) => setTimeout(resolve, 20));
    expect(cancelled).toEqual(['run-after-restart']);
  });
});

describe('run signals with more waiting to be sent than a process keeps', () => {
  let database: TestDatabase;
  let sender: RunSignals;
  let receiver: RunSignals;
  const senderErrors: Error[] = [];

  beforeAll(async () => {
    database = await createTestDatabase();
    const connectionString = database.url;
    sender = createRunSignals({
      connectionString,
      onError: (error) => senderErrors.push(error),
      maxOutgoing: 5,
    });
    receiver = createRunSignals({ connectionString, onError: () => undefined });
    await sender.start();
    await receiver.start();
  }, 60_000);

  afterAll(async () => {
    await sender?.stop();
    await receiver?.stop();
    await database?.drop();
  });

  it('drop them for one resync, on which the others check everything again; later signals flow', async () => {
    const resyncs: number[] = [];
    const cancelled: string[] = [];
    let queueWakes = 0;
    receiver.onReconnected(() => resyncs.push(Date.now()));
    receiver.onCancelRequested((runId) => cancelled.push(runId));
    receiver.onQueueChanged(() => {
      queueWakes += 1;
    });
    const subscription = receiver.subscribe('run-waiting', 'user-a');
    subscription.take(0);
    // Ten cancels in one batch window: past the five kept, all give way to one resync.
    for (let index = 0; index < 10; index += 1) sender.cancelRequested(`run-${index}`);
    const waitFor = async (done: () => boolean) => {
      const deadline = Date.now() + 5_000;
      while (Date.now() < deadline && !done()) await new Promise((r) => setTimeout(r, 20));
    };
    await waitFor(() => resyncs.length > 0);
    expect(resyncs).toHaveLength(1);
    expect(cancelled).toEqual([]);
    // The resync wakes the receiver's queue and its streams, which then read the database.
    expect(queueWakes).toBeGreaterThan(0);
    await subscription.wait(2_000, new AbortController().signal);
    expect(subscription.take(0)).toBeUndefined();
    subscription.close();
    expect(senderErrors.map((error) => error.message)).toEqual([
      'more than 5 signals waited to be sent; they were dropped for one resync',
    ]);
    // What is signalled next is delivered as usual.
    sender.cancelRequested('run-next');
    await waitFor(() => cancelled.length > 0);
    expect(cancelled).toEqual(['run-next']);
    expect(resyncs).toHaveLength(1);
  });
});
