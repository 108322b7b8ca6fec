import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { processEnvironment } from '../config/index.ts';
import {
  cacheKeyOf,
  cacheKeyPrefix,
  createMemoryCacheStore,
  createRedisCacheStore,
  stableJson,
} from './response-cache-store.ts';

describe('createMemoryCacheStore', () => {
  it('evicts the least recently used entry beyond its entry limit', async () => {
    const store = createMemoryCacheStore({ maxEntries: 2, maxBytes: 1_000_000 });
    await store.set('a', 'A', 60);
    await store.set('b', 'B', 60);
    expect(await store.get('a')).toBe('A');
    await store.set('c', 'C', 60);
    expect(await store.get('b')).toBeUndefined();
    expect(await store.get('a')).toBe('A');
    expect(await store.get('c')).toBe('C');
  });

  it('stays under its byte limit and refuses a value larger than all of it', async () => {
    const store = createMemoryCacheStore({ maxEntries: 100, maxBytes: 30 });
    await store.set('a', 'x'.repeat(10), 60);
    await store.set('b', 'y'.repeat(10), 60);
    expect(await store.get('a')).toBeUndefined();
    expect(await store.get('b')).toBe('y'.repeat(10));
    await store.set('huge', 'z'.repeat(16), 60);
    expect(await store.get('huge')).toBeUndefined();
    expect(await store.get('b')).toBe('y'.repeat(10));
  });

  it('forgets an entry once its time to live has passed', async () => {
    let now = 1_000;
    const store = createMemoryCacheStore({ maxEntries: 10, maxBytes: 1_000, now: () => now });
    await store.set('a', 'A', 5);
    now += 4_999;
    expect(await store.get('a')).toBe('A');
    now += 1;
    expect(await store.get('a')).toBeUndefined();
  });
});

describe('createRedisCacheStore', () => {
  it('treats a failing Redis as a miss and still caches in process', async () => {
    const errors: unknown[] = [];
    const failing = {
      get: async () => {
        throw new Error('down');
      },
      set: async () => {
        throw new Error('down');
      },
      scan: async (): Promise<[string, string[]]> => {
        throw new Error('down');
      },
      unlink: async () => {
        throw new Error('down');
      },
    };
    const store = createRedisCacheStore({
      redis: failing,
      memory: createMemoryCacheStore({ maxEntries: 10, maxBytes: 1_000 }),
      onError: (error) => errors.push(error),
    });
    expect(await store.get('a')).toBeUndefined();
    await store.set('a', 'A', 60);
    expect(await store.get('a')).toBe('A');
    expect(errors).toHaveLength(2);
  });
});

const redisUrl = processEnvironment()['REDIS_URL'];

describe('purge', () => {
  const alice = cacheKeyPrefix('t1', 'alice');
  const bob = cacheKeyPrefix('t1', 'bob');

  it('drops one user’s entries from the in-process cache and keeps everyone else’s', async () => {
    const store = createMemoryCacheStore({ maxEntries: 100, maxBytes: 1_000_000 });
    await store.set(`${alice}k1`, 'A1', 60);
    await store.set(`${alice}k2`, 'A2', 60);
    await store.set(`${bob}k1`, 'B1', 60);
    await store.set(`${cacheKeyPrefix('t1', null)}k1`, 'S1', 60);
    expect(await store.purge(alice)).toBe(2);
    expect(await store.get(`${alice}k1`)).toBeUndefined();
    expect(await store.get(`${bob}k1`)).toBe('B1');
    expect(await store.get(`${cacheKeyPrefix('t1', null)}k1`)).toBe('S1');
  });

  it('reports a Redis failure to the erasure that asked for the purge', async () => {
    const down = async () => {
      throw new Error('down');
    };
    const store = createRedisCacheStore({
      redis: { get: down, set: down, scan: down, unlink: down },
      memory: createMemoryCacheStore({ maxEntries: 10, maxBytes: 1_000 }),
    });
    await expect(store.purge(alice)).rejects.toThrow('down');
  });

  it.runIf(redisUrl !== undefined)(
    'drops one user’s entries from Redis too (glob characters in the prefix match literally)',
    async () => {
      const redis = new Redis(redisUrl ?? '');
      const prefix = `brigade:test:${Math.random().toString(36).slice(2)}:`;
      try {
        const store = createRedisCacheStore({
          redis,
          memory: createMemoryCacheStore({ maxEntries: 10, maxBytes: 1_000_000 }),
          prefix,
        });
        for (let index = 0; index < 1_500; index += 1) await store.set(`${alice}${index}`, 'A', 60);
        await store.set(`${bob}k`, 'B', 60);
        await store.set('t1/*/k', 'glob', 60);
        expect(await store.purge(alice)).toBeGreaterThanOrEqual(1_500);
        expect(await store.purge('t1/*/')).toBeGreaterThanOrEqual(1);
        expect(await redis.get(`${prefix}${alice}1`)).toBeNull();
        expect(await redis.get(`${prefix}${bob}k`)).toBe('B');
      } finally {
        redis.disconnect();
      }
    },
  );
});

describe('cacheKeyOf', () => {
  it('is the same for the same request whatever the key order, and differs per user', () => {
    expect(stableJson({ b: 1, a: { d: 2, c: [3, { f: 4, e: 5 }] } })).toBe(
      '{"a":{"c":[3,{"e":5,"f":4}],"d":2},"b":1}',
    );
    const request = { messages: [{ role: 'user', text: 'hi' }], maxOutputTokens: 10 };
    const key = cacheKeyOf({ tenant: 't', user: 'u1', ...request });
    expect(cacheKeyOf({ ...request, user: 'u1', tenant: 't' })).toBe(key);
    expect(cacheKeyOf({ tenant: 't', user: 'u2', ...request })).not.toBe(key);
    expect(key).toMatch(/^[0-9a-f]{64}$/);
  });
});
