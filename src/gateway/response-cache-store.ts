import { createHash } from 'node:crypto';

/** A cached answer and when it expires (milliseconds since the epoch). */
export interface CachedAnswer {
  readonly value: string;
  readonly expiresAt: number;
}

/** Where cached answers live; keys are already hashed and scoped by the caller. */
export interface ResponseCacheStore {
  get(key: string): Promise<string | undefined>;
  set(key: string, value: string, ttlSeconds: number): Promise<void>;
  /** Drops every entry whose key starts with `prefix`; returns how many were dropped. */
  purge(prefix: string): Promise<number>;
  /**
   * Drops them from this process's own memory only (another process purged the shared store
   * and asks every process to forget its copies).
   */
  purgeLocal(prefix: string): Promise<number>;
}

/** The part of an ioredis client the Redis store uses. */
export interface RedisLike {
  get(key: string): Promise<string | null>;
  set(key: string, value: string, mode: 'EX', seconds: number): Promise<unknown>;
  scan(
    cursor: string,
    match: 'MATCH',
    pattern: string,
    count: 'COUNT',
    size: number,
  ): Promise<[cursor: string, keys: string[]]>;
  unlink(...keys: string[]): Promise<number>;
}

/** Limits of {@link createMemoryCacheStore}. */
export interface MemoryCacheLimits {
  /** Most entries held at once (least recently used evicted first). */
  readonly maxEntries: number;
  /** Most bytes of cached values held at once (UTF-16 length × 2, keys not counted). */
  readonly maxBytes: number;
  readonly now?: () => number;
}

/**
 * An in-process LRU of cached answers, bounded by entries and bytes; an entry past its expiry is
 * dropped when read. A Map keeps insertion order, so re-inserting on a hit makes it the newest.
 */
export function createMemoryCacheStore(limits: MemoryCacheLimits): ResponseCacheStore {
  const now = limits.now ?? Date.now;
  const entries = new Map<string, CachedAnswer>();
  let bytes = 0;
  const sizeOf = (value: string) => value.length * 2;
  const remove = (key: string) => {
    const entry = entries.get(key);
    if (entry === undefined) return;
    entries.delete(key);
    bytes -= sizeOf(entry.value);
  };
  async function purge(prefix: string): Promise<number> {
    let dropped = 0;
    for (const key of [...entries.keys()]) {
      if (!key.startsWith(prefix)) continue;
      remove(key);
      dropped += 1;
    }
    return dropped;
  }
  return {
    async get(key) {
      const entry = entries.get(key);
      if (entry === undefined) return undefined;
      if (entry.expiresAt <= now()) {
        remove(key);
        return undefined;
      }
      entries.delete(key);
      entries.set(key, entry);
      return entry.value;
    },
    async set(key, value, ttlSeconds) {
      if (sizeOf(value) > limits.maxBytes) return;
      remove(key);
      entries.set(key, { value, expiresAt: now() + ttlSeconds * 1000 });
      bytes += sizeOf(value);
      while (entries.size > limits.maxEntries || bytes > limits.maxBytes) {
        const oldest = entries.keys().next().value;
        if (oldest === undefined) break;
        remove(oldest);
      }
    },
    purge,
    // Nothing here is shared with other processes: the local purge is the purge.
    purgeLocal: purge,
  };
}

/**
 * The cache in Redis (shared by every process), with the in-process LRU in front of it. Redis
 * failures count as misses (reads) or are ignored (writes): the cache is an optimisation, and
 * a call must never fail because of it; `onError` hears of them.
 */
export function createRedisCacheStore(options: {
  readonly redis: RedisLike;
  readonly memory: ResponseCacheStore;
  readonly prefix?: string;
  readonly onError?: (error: unknown) => void;
}): ResponseCacheStore {
  const prefix = options.prefix ?? 'brigade:cache:';
  return {
    async get(key) {
      const local = await options.memory.get(key);
      if (local !== undefined) return local;
      try {
        return (await options.redis.get(prefix + key)) ?? undefined;
      } catch (error) {
        options.onError?.(error);
        return undefined;
      }
    },
    async set(key, value, ttlSeconds) {
      await options.memory.set(key, value, ttlSeconds);
      try {
        await options.redis.set(prefix + key, value, 'EX', ttlSeconds);
      } catch (error) {
        options.onError?.(error);
      }
    },
    /**
     * Unlike reads and writes, a purge reports Redis failures to its caller: an erasure must
     * not claim to have dropped what it could not reach.
     */
    async purge(keyPrefix) {
      let dropped = await options.memory.purge(keyPrefix);
      const pattern = `${escapeGlob(prefix + keyPrefix)}*`;
      let cursor = '0';
      do {
        const [next, keys] = await options.redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
        if (keys.length > 0) dropped += await options.redis.unlink(...keys);
        cursor = next;
      } while (cursor !== '0');
      return dropped;
    },
    purgeLocal(keyPrefix) {
      return options.memory.purge(keyPrefix);
    },
  };
}

/** Escapes Redis glob characters, so a key prefix matches only itself. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, (character) => `\\${character}`);
}

/**
 * The prefix of every cache key of one user (or, with `userId` null, of a tenant's shared
 * entries), so an erasure can drop that user's cached answers.
 */
export function cacheKeyPrefix(tenantId: string, userId: string | null): string {
  return `${tenantId}/${userId ?? 'shared'}/`;
}

/** JSON with object keys sorted at every level, so equal requests give equal text. */
export function stableJson(value: unknown): string {
  return JSON.stringify(sorted(value));
}

function sorted(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sorted);
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(
    Object.keys(value)
      .sort()
      .map((key) => [key, sorted((value as Record<string, unknown>)[key])]),
  );
}

/** SHA-256 (hex) of the stable JSON of `parts`: the cache key. */
export function cacheKeyOf(parts: Record<string, unknown>): string {
  return createHash('sha256').update(stableJson(parts)).digest('hex');
}

/**
 * The response cache of a process: an in-process LRU (10,000 answers, 64 MiB), behind Redis
 * when Redis is configured (`onError` hears of its failures).
 */
export function createResponseCacheStore(
  redis: RedisLike | undefined,
  onError: (error: unknown) => void,
): ResponseCacheStore {
  const memory = createMemoryCacheStore({ maxEntries: 10_000, maxBytes: 64 * 1024 * 1024 });
  return redis === undefined ? memory : createRedisCacheStore({ redis, memory, onError });
}
