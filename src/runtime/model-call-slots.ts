import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';

/** One concurrency limit a call must fit under: its counter and its size. */
export interface SlotLimit {
  readonly key: string;
  readonly limit: number;
}

/** Slots held by one call, under every limit it was taken for. */
export interface HeldSlots {
  release(): void;
}

/** A call that got no slot: `full` is a limit without room (nothing was taken). */
export interface SlotsFull {
  readonly full: SlotLimit;
}

/** Concurrent-call counters: a call takes a slot under every limit at once, or none. */
export interface CallSlots {
  /** The call's slots when every limit has room, else a limit that has none. */
  take(limits: readonly SlotLimit[]): Promise<HeldSlots | SlotsFull>;
}

/** Counts in this process only. */
export function createMemorySlots(): CallSlots {
  const inFlight = new Map<string, number>();
  return {
    async take(limits) {
      const full = limits.find((limit) => (inFlight.get(limit.key) ?? 0) >= limit.limit);
      if (full !== undefined) return { full };
      for (const limit of limits) inFlight.set(limit.key, (inFlight.get(limit.key) ?? 0) + 1);
      let released = false;
      return {
        release() {
          if (released) return;
          released = true;
          for (const limit of limits) {
            const left = (inFlight.get(limit.key) ?? 1) - 1;
            if (left <= 0) inFlight.delete(limit.key);
            else inFlight.set(limit.key, left);
          }
        },
      };
    },
  };
}

/**
 * Takes a slot under every limit or none, atomically: each key is a sorted set of holders
 * scored by when their lease ends (Redis' own clock), expired holders are dropped first.
 * KEYS: the counters; ARGV: lease ms, holder, then each key's limit. Returns 1 when taken,
 * else minus the (1-based) index of the first key without room.
 */
const takeScript = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local lease = tonumber(ARGV[1])
for index, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= tonumber(ARGV[2 + index]) then return -index end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + lease, ARGV[2])
  if redis.call('PTTL', key) < lease then redis.call('PEXPIRE', key, lease) end
end
return 1`;

/** Extends the leases of held slots (KEYS: counters; ARGV: lease ms, holder). */
const renewScript = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local lease = tonumber(ARGV[1])
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + lease, ARGV[2])
  if redis.call('PTTL', key) < lease then redis.call('PEXPIRE', key, lease) end
end
return 1`;

/** Options of {@link createRedisSlots}. */
export interface RedisSlotsOptions {
  readonly redis: Pick<Redis, 'eval' | 'zrem'>;
  /** Used while Redis fails (each process then counts its own calls). */
  readonly fallback: CallSlots;
  readonly onError: (error: unknown) => void;
  /**
   * How long a slot outlives its holder's last renewal (default 30 s): a process that dies
   * mid-call frees its slots within this. Holders renew every third of it.
   */
  readonly leaseMs?: number;
}

/**
 * Counts concurrent calls in Redis, so a limit holds across every process sharing it. A slot
 * is a lease renewed while its call runs, so the slots of a process that died free themselves.
 * When Redis fails, calls are counted by `fallback` (per process) instead of being refused.
 */
export function createRedisSlots(options: RedisSlotsOptions): CallSlots & { close(): void } {
  const leaseMs = options.leaseMs ?? 30_000;
  const held = new Map<string, readonly string[]>();
  let timer: NodeJS.Timeout | undefined;

  function renewAll(): void {
    for (const [holder, keys] of held) {
      options.redis
        .eval(renewScript, keys.length, ...keys, leaseMs, holder)
        .catch((error: unknown) => options.onError(error));
    }
  }

  function track(holder: string, keys: readonly string[]): void {
    held.set(holder, keys);
    if (timer === undefined) {
      timer = setInterval(renewAll, Math.max(10, Math.floor(leaseMs / 3)));
      timer.unref();
    }
  }

  function untrack(holder: string): void {
    held.delete(holder);
    if (held.size === 0 && timer !== undefined) {
      clearInterval(timer);
      timer = undefined;
    }
  }

  return {
    async take(limits) {
      const holder = randomUUID();
      const keys = limits.map((limit) => `brigade:slots:${limit.key}`);
      let taken: unknown;
      try {
        taken = await options.redis.eval(
          takeScript,
          keys.length,
          ...keys,
          leaseMs,
          holder,
          ...limits.map((limit) => limit.limit),
        );
      } catch (error) {
        options.onError(error);
        // The script may have run and only its reply was lost (a command timeout): give back
        // what it may have taken, or the slot stays held for a whole lease with no call in it.
        // Sent on the same connection after the script, so Redis runs it after the script.
        for (const key of keys) options.redis.zrem(key, holder).catch(() => undefined);
        return options.fallback.take(limits);
      }
      if (Number(taken) !== 1) {
        const full = limits[-Number(taken) - 1] ?? limits[0];
        if (full !== undefined) return { full };
      }
      track(holder, keys);
      let released = false;
      return {
        release() {
          if (released) return;
          released = true;
          untrack(holder);
          for (const key of keys)
            options.redis.zrem(key, holder).catch((error: unknown) => options.onError(error));
        },
      };
    },
    close() {
      held.clear();
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
    },
  };
}
