import { describe, expect, it } from 'vitest';
import { startAttemptTimer } from './attempt-timer.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('an attempt timer', () => {
  it('cuts off an attempt without output at the timeout', async () => {
    const timer = startAttemptTimer({ timeoutMs: 40, deadlineInMs: 10_000, now: Date.now });
    await sleep(80);
    expect(timer.signal.aborted).toBe(true);
    expect(timer.cutoff()).toBe('attempt');
    expect((timer.signal.reason as Error).name).toBe('TimeoutError');
  });

  it('lets output that keeps coming run past the timeout, up to the deadline', async () => {
    const timer = startAttemptTimer({ timeoutMs: 60, deadlineInMs: 400, now: Date.now });
    for (let index = 0; index < 8; index += 1) {
      await sleep(20);
      timer.progress();
    }
    expect(timer.cutoff()).toBeUndefined();
    while (timer.cutoff() === undefined) {
      timer.progress();
      await sleep(20);
    }
    expect(timer.cutoff()).toBe('deadline');
  });

  it('cuts off output that stops for the timeout as idle', async () => {
    const timer = startAttemptTimer({ timeoutMs: 60, deadlineInMs: 10_000, now: Date.now });
    await sleep(20);
    timer.progress();
    await sleep(150);
    expect(timer.cutoff()).toBe('idle');
  });

  it('says the deadline when the deadline comes before the timeout', async () => {
    const timer = startAttemptTimer({ timeoutMs: 1_000, deadlineInMs: 30, now: Date.now });
    await sleep(80);
    expect(timer.cutoff()).toBe('deadline');
  });

  it('fires no more once stopped', async () => {
    const timer = startAttemptTimer({ timeoutMs: 20, deadlineInMs: 30, now: Date.now });
    timer.stop();
    await sleep(60);
    expect(timer.signal.aborted).toBe(false);
  });
});
