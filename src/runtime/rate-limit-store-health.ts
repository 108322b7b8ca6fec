import type { Redis } from 'ioredis';
import type { FallbackLimiter, RateLimitStoreState } from '../observability/state-gauges.ts';

/** Whether this process counts its rate limits in Redis or, Redis failing, on its own. */
export interface RateLimitStoreHealth {
  /** A limiter counted one request or model call in this process because Redis failed. */
  fellBack(limiter: FallbackLimiter): void;
  /** What `/metrics` reports (`brigade_rate_limit_store_degraded` and its fallbacks). */
  state(): RateLimitStoreState;
}

/**
 * How long one fallback keeps the store reported degraded: a Redis that is connected but does
 * not answer (each command waits out its timeout) looks ready, and only its failed commands
 * tell. A scrape every 15–30 s so sees it even when only some requests fell back.
 */
const degradedHoldMs = 30_000;

/**
 * Tracks the rate-limit store for `/metrics`: degraded while Redis is configured and not
 * connected, or a limiter fell back to its per-process counter in the last 30 s. Without Redis
 * the limits are per process by configuration, which is not degraded.
 */
export function createRateLimitStoreHealth(options: {
  readonly redis: Pick<Redis, 'status'> | undefined;
  readonly now?: () => number;
}): RateLimitStoreHealth {
  const now = options.now ?? Date.now;
  const fallbacks: Record<FallbackLimiter, number> = { requests: 0, tokens: 0, model_calls: 0 };
  let lastFallback = Number.NEGATIVE_INFINITY;
  return {
    fellBack(limiter) {
      fallbacks[limiter] += 1;
      lastFallback = now();
    },
    state() {
      const { redis } = options;
      const degraded =
        redis !== undefined && (redis.status !== 'ready' || now() - lastFallback < degradedHoldMs);
      return { degraded, fallbacks: { ...fallbacks } };
    },
  };
}
