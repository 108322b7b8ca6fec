import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RunEvent } from '../domain/agents/agent-types.ts';
import { createRunSignals } from './run-signals.ts';

// Local delivery needs no connection: the signals are never started here.
const signals = () =>
  createRunSignals({ connectionString: 'postgres://unused', onError: () => undefined });

function events(runId: string, firstSeq: number, count: number): RunEvent[] {
  return Array.from({ length: count }, (_, index) => ({
    runId,
    seq: firstSeq + index,
    type: 'message-delta',
    data: { text: `t${firstSeq + index}` },
    createdAt: new Date(),
  }));
}

describe('a stream subscription hands over events this process committed', () => {
  it('reads the database first, then takes contiguous committed batches without reading', () => {
    const hub = signals();
    const subscription = hub.subscribe('run-1', 'user-a');
    expect(subscription.take(0)).toBeUndefined();
    hub.runChanged('run-1', { userId: 'user-a', events: events('run-1', 1, 3) });
    hub.runChanged('run-1', { userId: 'user-a', events: events('run-1', 4, 2) });
    expect(subscription.take(0)?.map((event) => event.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(subscription.take(5)).toEqual([]);
    subscription.close();
  });

  it('sends the stream to the database after a change without its events, a gap or a timeout', async () => {
    const hub = signals();
    const subscription = hub.subscribe('run-1', 'user-a');
    subscription.take(0);
    hub.runChanged('run-1');
    expect(subscription.take(0)).toBeUndefined();
    hub.runChanged('run-1', { userId: 'user-a', events: events('run-1', 7, 1) });
    expect(subscription.take(5)).toBeUndefined();
    await subscription.wait(5, new AbortController().signal); // the change above: at once
    expect(subscription.take(7)).toEqual([]);
    await subscription.wait(5, new AbortController().signal); // nothing came: timed out
    expect(subscription.take(7)).toBeUndefined();
    subscription.close();
  });

  it("never hands another user's run events to a reader", () => {
    const hub = signals();
    const subscription = hub.subscribe('run-1', 'user-b');
    subscription.take(0);
    hub.runChanged('run-1', { userId: 'user-a', events: events('run-1', 1, 2) });
    expect(subscription.take(0)).toBeUndefined();
    subscription.close();
  });

  it('falls back to reading when a slow stream would buffer more than it may', () => {
    const hub = signals();
    const subscription = hub.subscribe('run-1', 'user-a');
    subscription.take(0);
    for (let batch = 0; batch < 20; batch += 1)
      hub.runChanged('run-1', { userId: 'user-a', events: events('run-1', 1 + batch * 60, 60) });
    expect(subscription.take(0)).toBeUndefined();
    subscription.close();
  });

  it('only ever hands over the exact events after the position, in order, or nothing', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({
              kind: fc.constant('batch' as const),
              size: fc.integer({ min: 0, max: 5 }),
            }),
            fc.record({ kind: fc.constant('foreign' as const) }),
            fc.record({ kind: fc.constant('skip' as const), size: fc.integer({ min: 1, max: 3 }) }),
            fc.record({ kind: fc.constant('take' as const) }),
          ),
          { maxLength: 40 },
        ),
        (steps) => {
          const hub = signals();
          const subscription = hub.subscribe('run', 'user');
          let committed = 0;
          let after = 0;
          for (const step of steps) {
            if (step.kind === 'batch') {
              hub.runChanged('run', {
                userId: 'user',
                events: events('run', committed + 1, step.size),
              });
              committed += step.size;
            } else if (step.kind === 'foreign') {
              hub.runChanged('run');
            } else if (step.kind === 'skip') {
              committed += step.size; // written by another writer, which signals without events
              hub.runChanged('run');
            } else {
              const taken = subscription.take(after);
              // undefined: the stream reads the database, which holds everything committed.
              const got = taken ?? events('run', after + 1, committed - after);
              expect(got.map((event) => event.seq)).toEqual(
                Array.from({ length: got.length }, (_, index) => after + 1 + index),
              );
              if (taken === undefined) expect(got.length).toBe(committed - after);
              after += got.length;
            }
          }
          subscription.close();
        },
      ),
    );
  });
});

describe('signals of the only process serving a database (the embedded one)', () => {
  it('start without a connection and deliver every signal in this process', async () => {
    const errors: Error[] = [];
    // An address nothing listens on: a connection attempt would fail and report it.
    const hub = createRunSignals({
      connectionString: 'postgres://brigade@127.0.0.1:1/none',
      onError: (error) => errors.push(error),
      crossProcess: false,
      batchMs: 1,
    });
    await hub.start();
    const queued: number[] = [];
    const cancelled: string[] = [];
    hub.onQueueChanged(() => queued.push(1));
    hub.onCancelRequested((runId) => cancelled.push(runId));
    const subscription = hub.subscribe('run-1', 'user-a', []);
    hub.runChanged('run-1', { userId: 'user-a', events: events('run-1', 1, 2) });
    hub.queueChanged();
    hub.queueChanged({ remoteOnly: true });
    hub.cancelRequested('run-2');
    await subscription.wait(1_000, new AbortController().signal);
    expect(subscription.take(0)?.map((event) => event.seq)).toEqual([1, 2]);
    expect(queued).toEqual([1]);
    expect(cancelled).toEqual(['run-2']);
    await new Promise((resolve) => setTimeout(resolve, 20)); // past a batch window
    await hub.stop();
    expect(errors).toEqual([]);
    subscription.close();
  });
});
