import { describe, expect, it } from 'vitest';
import { createTtlCache } from './ttl-cache.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('createTtlCache', () => {
  it('loads a key once while its value is fresh, and again once it is stale', async () => {
    const cache = createTtlCache<number>({ ttlMs: 50 });
    let loads = 0;
    const load = async () => {
      loads += 1;
      return loads;
    };
    const [first, second] = await Promise.all([cache.get('t', load), cache.get('t', load)]);
    expect([first, second, loads]).toEqual([1, 1, 1]);
    expect(await cache.get('other', load)).toBe(2);
    await sleep(70);
    expect(await cache.get('t', load)).toBe(3);
  });

  it('loads afresh at once after an invalidation, for one key or all', async () => {
    const cache = createTtlCache<string>({ ttlMs: 60_000 });
    await cache.get('a', async () => 'old a');
    await cache.get('b', async () => 'old b');
    cache.invalidate('a');
    expect(await cache.get('a', async () => 'new a')).toBe('new a');
    expect(await cache.get('b', async () => 'new b')).toBe('old b');
    cache.invalidate();
    expect(await cache.get('b', async () => 'new b')).toBe('new b');
  });

  it('does not keep a failed load, and a late failure does not drop a newer entry', async () => {
    const cache = createTtlCache<string>({ ttlMs: 60_000 });
    await expect(cache.get('k', async () => Promise.reject(new Error('down')))).rejects.toThrow();
    expect(await cache.get('k', async () => 'up')).toBe('up');
    let fail: (error: Error) => void = () => undefined;
    const slow = cache.get('s', () => new Promise<string>((_, reject) => (fail = reject)));
    cache.invalidate('s');
    expect(await cache.get('s', async () => 'newer')).toBe('newer');
    fail(new Error('late'));
    await expect(slow).rejects.toThrow('late');
    expect(await cache.get('s', async () => 'newest')).toBe('newer');
  });

  it('keeps at most maxEntries keys, dropping the oldest', async () => {
    const cache = createTtlCache<string>({ ttlMs: 60_000, maxEntries: 2 });
    for (const key of ['a', 'b', 'c']) await cache.get(key, async () => `${key}1`);
    expect(await cache.get('a', async () => 'a2')).toBe('a2');
    expect(await cache.get('c', async () => 'c2')).toBe('c1');
  });
});
