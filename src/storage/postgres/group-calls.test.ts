import fc from 'fast-check';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { createGroupCalls } from './group-calls.ts';

interface Item {
  readonly lane: string;
  readonly value: number;
}

/** A fake database: records what went out and answers each call with value × 10. */
function recorder(options: { failMany?: () => Error | undefined; maxBatch?: number } = {}) {
  const sent: { lane: string; values: number[] }[] = [];
  const inFlight = new Map<string, number>();
  let mostInFlight = 0;
  const track = async <T>(lane: string, values: number[], answer: () => T): Promise<T> => {
    inFlight.set(lane, (inFlight.get(lane) ?? 0) + 1);
    mostInFlight = Math.max(mostInFlight, inFlight.get(lane) ?? 0);
    sent.push({ lane, values });
    await new Promise((resolve) => setTimeout(resolve, 1));
    inFlight.set(lane, (inFlight.get(lane) ?? 1) - 1);
    return answer();
  };
  const calls = createGroupCalls<Item, number>({
    maxBatch: options.maxBatch ?? 8,
    compare: (left, right) => left.value - right.value,
    one: (item) => track(item.lane, [item.value], () => item.value * 10),
    many: (items) =>
      track(
        items[0]?.lane ?? '',
        items.map((item) => item.value),
        () => {
          const failure = options.failMany?.();
          if (failure !== undefined) throw failure;
          return items.map((item) => item.value * 10);
        },
      ),
  });
  return { calls, sent, mostInFlight: () => mostInFlight };
}

describe('group calls', () => {
  it('answers every call with its own result, one batch in flight per lane, batches capped', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ lane: fc.constantFrom('a', 'b', 'c'), value: fc.integer() }), {
          minLength: 1,
          maxLength: 60,
        }),
        fc.integer({ min: 1, max: 8 }),
        async (items, maxBatch) => {
          const { calls, sent, mostInFlight } = recorder({ maxBatch });
          const results = await Promise.all(items.map((item) => calls.call(item.lane, item)));
          expect(results).toEqual(items.map((item) => item.value * 10));
          expect(mostInFlight()).toBe(1);
          for (const batch of sent) expect(batch.values.length).toBeLessThanOrEqual(maxBatch);
          // Every call went out exactly once, in a batch of its own lane, sorted.
          expect(sent.flatMap((batch) => batch.values).sort()).toEqual(
            items.map((item) => item.value).sort(),
          );
          for (const batch of sent)
            expect(batch.values).toEqual([...batch.values].sort((x, y) => x - y));
        },
      ),
    );
  });

  it('sends a call alone when its lane is idle, and groups the calls that wait', async () => {
    const { calls, sent } = recorder();
    const first = calls.call('a', { lane: 'a', value: 1 });
    const waiting = [2, 3, 4].map((value) => calls.call('a', { lane: 'a', value }));
    const other = calls.call('b', { lane: 'b', value: 9 });
    expect(await Promise.all([first, ...waiting, other])).toEqual([10, 20, 30, 40, 90]);
    expect(sent).toEqual([
      { lane: 'a', values: [1] },
      { lane: 'b', values: [9] },
      { lane: 'a', values: [2, 3, 4] },
    ]);
  });

  it('makes the calls of a batch the server refused one by one', async () => {
    const refused = new pg.DatabaseError('deadlock detected', 0, 'error');
    let failures = 1;
    const { calls, sent } = recorder({
      failMany: () => (failures-- > 0 ? refused : undefined),
    });
    const results = await Promise.all(
      [1, 2, 3].map((value) => calls.call('a', { lane: 'a', value })),
    );
    expect(results).toEqual([10, 20, 30]);
    expect(sent.map((batch) => batch.values)).toEqual([[1], [2, 3], [2], [3]]);
  });

  it('fails every call of a batch whose connection broke, and retries none', async () => {
    const broken = new Error('Connection terminated unexpectedly');
    const { calls, sent } = recorder({ failMany: () => broken });
    const outcomes = await Promise.allSettled(
      [1, 2, 3].map((value) => calls.call('a', { lane: 'a', value })),
    );
    expect(outcomes.map((outcome) => outcome.status)).toEqual([
      'fulfilled',
      'rejected',
      'rejected',
    ]);
    expect(sent.map((batch) => batch.values)).toEqual([[1], [2, 3]]);
  });
});
