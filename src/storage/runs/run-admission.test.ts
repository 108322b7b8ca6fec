import { describe, expect, it } from 'vitest';
import { estimateRetryAfterSeconds } from './run-admission.ts';

describe('estimateRetryAfterSeconds', () => {
  it('waits for one run to finish when the queue is exactly full', () => {
    // 4 running, each ~2 × 1 s long: one of them finishes in about half a second → 1 s floor.
    expect(estimateRetryAfterSeconds({ excess: 0, running: 4, meanAgeMs: 1_000 })).toBe(1);
    // 1 running, ~2 × 3 s long.
    expect(estimateRetryAfterSeconds({ excess: 0, running: 1, meanAgeMs: 3_000 })).toBe(6);
  });

  it('grows with the excess over the limit and shrinks with the runs executing', () => {
    const slow = estimateRetryAfterSeconds({ excess: 9, running: 2, meanAgeMs: 1_000 });
    const fast = estimateRetryAfterSeconds({ excess: 9, running: 10, meanAgeMs: 1_000 });
    expect(slow).toBe(10);
    expect(fast).toBe(2);
  });

  it('answers 5 s when nothing executes, and never more than 120 s', () => {
    expect(estimateRetryAfterSeconds({ excess: 0, running: 0, meanAgeMs: null })).toBe(5);
    expect(estimateRetryAfterSeconds({ excess: 1_000, running: 1, meanAgeMs: 60_000 })).toBe(120);
  });
});
