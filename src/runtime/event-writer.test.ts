import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Database } from '../storage/postgres/database.ts';
import type { CommittedEvents } from '../storage/runs/run-rows.ts';
import { createEventWriter, type RunEventInput } from './event-writer.ts';

const claim = {
  runId: '00000000-0000-4000-8000-000000000001',
  tenantId: '00000000-0000-4000-8000-000000000002',
  userId: '00000000-0000-4000-8000-000000000003',
};

/**
 * A writer whose timed flushes never fire during a test (they would need the database); only
 * `checkpoint`, whose write is the test's own function, commits anything.
 */
function writer(nextSeq = 1) {
  const woken: CommittedEvents[] = [];
  const events = createEventWriter({
    database: {} as Database,
    claim,
    nextSeq,
    flushMs: () => 3_600_000,
    sink: {
      runChanged: (_runId, committed) => {
        if (committed !== undefined) woken.push(committed);
      },
      queueChanged: () => undefined,
      cancelRequested: () => undefined,
    },
  });
  return { events, woken };
}

describe('EventWriter.checkpoint', () => {
  it('numbers the buffered events and the extra ones, and wakes streams with what committed', async () => {
    const { events, woken } = writer(5);
    events.push('tool-call-started', { toolCallId: 'a' });
    events.delta('hel');
    events.delta('lo');
    const seen = await events.checkpoint([{ type: 'step-finished', data: {} }], async (batch) => ({
      value: batch,
      committed: batch.events,
    }));
    expect(seen.firstSeq).toBe(5);
    expect(seen.events.map((event) => event.type)).toEqual([
      'tool-call-started',
      'message-delta',
      'step-finished',
    ]);
    expect(seen.events[1]?.data).toEqual({ text: 'hello' });
    expect(woken.flatMap((batch) => batch.events.map((event) => event.seq))).toEqual([5, 6, 7]);
    events.close();
  });

  it('keeps the events buffered, with their numbers, when the write committed none', async () => {
    const { events, woken } = writer();
    events.push('tool-call-started', { toolCallId: 'a' });
    await events.checkpoint([{ type: 'run-completed', data: {} }], async () => ({
      value: undefined,
    }));
    expect(woken).toEqual([]);
    events.push('tool-call-finished', { toolCallId: 'a' });
    const second = await events.checkpoint(
      [{ type: 'run-cancelled', data: {} }],
      async (batch) => ({
        value: batch,
        committed: batch.events,
      }),
    );
    // The refused terminal event is gone; the buffered one is written first, numbered from 1.
    expect(second.firstSeq).toBe(1);
    expect(second.events.map((event) => event.type)).toEqual([
      'tool-call-started',
      'tool-call-finished',
      'run-cancelled',
    ]);
    events.close();
  });

  it('numbers events without a gap or a repeat across any mix of commits and refusals', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ pushes: fc.nat(3), extra: fc.nat(2), commits: fc.boolean() }), {
          maxLength: 12,
        }),
        async (steps) => {
          const { events } = writer();
          const committed: number[] = [];
          for (const step of steps) {
            for (let index = 0; index < step.pushes; index += 1) events.push('tick', { index });
            const extra: RunEventInput[] = Array.from({ length: step.extra }, () => ({
              type: 'extra',
              data: {},
            }));
            await events.checkpoint(extra, async (batch) => {
              if (!step.commits) return { value: undefined };
              committed.push(...batch.events.map((_, index) => batch.firstSeq + index));
              return { value: undefined, committed: batch.events };
            });
          }
          events.close();
          expect(committed).toEqual(committed.map((_, index) => index + 1));
        },
      ),
    );
  });
});
