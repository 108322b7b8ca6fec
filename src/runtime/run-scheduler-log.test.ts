import { afterEach, describe, expect, it, vi } from 'vitest';
import { throttledFailureLog } from './run-scheduler.ts';

afterEach(() => {
  vi.useRealTimers();
});

describe('a failure that repeats at every poll', () => {
  it('is logged once, then every 30 s with its count, and once when it works again', () => {
    vi.useFakeTimers();
    const lines: [string, string, object][] = [];
    const logger = {
      info: (object: object, message: string) => lines.push(['info', message, object]),
      warn: (object: object, message: string) => lines.push(['warn', message, object]),
      error: (object: object, message: string) => lines.push(['error', message, object]),
    };
    const log = throttledFailureLog(logger, 'claiming runs failed');
    const down = new Error('connection refused');
    // Four polls a second for a minute.
    for (let poll = 0; poll < 240; poll += 1) {
      log.failed(down);
      vi.advanceTimersByTime(250);
    }
    log.succeeded();
    log.succeeded();
    expect(lines.map(([level, message]) => `${level} ${message}`)).toEqual([
      'warn claiming runs failed',
      'warn claiming runs failed',
      'info claiming runs failed before; it works again',
    ]);
    expect(lines[1]?.[2]).toMatchObject({ repeats: 119, err: { message: 'connection refused' } });
    expect(lines[2]?.[2]).toEqual({ repeats: 119 });
  });
});
