import type { Redis } from 'ioredis';
import {
  type RateLimiterAbstract,
  RateLimiterMemory,
  RateLimiterRedis,
} from 'rate-limiter-flexible';
import { AppError } from '../domain/errors.ts';
import { delay } from '../gateway/abortable-delay.ts';
import type { BindingLimit, LimitSubject, PolicyCache } from './policy-cache.ts';

/** A slot held by one model call; release it when the call ends. */
export interface ModelCallPermit {
  /** Counts the call's tokens against every tokens-per-minute limit, and frees its slots. */
  release(tokens: number): void;
}

/** Tokens-per-minute and concurrent-model-call limits from policies. */
export interface ModelCallLimits {
  /**
   * Waits until every binding limit has room (a run waits, up to `deadline`), or refuses at
   * once when `wait` is false (an API call answers 429 `rate_limited` with Retry-After).
   */
  acquire(
    subject: LimitSubject,
    options: { readonly wait: boolean; readonly deadline: Date; readonly signal: AbortSignal },
  ): Promise<ModelCallPermit>;
}

const windowSeconds = 60;

/**
 * Creates the {@link ModelCallLimits}. Tokens per minute are counted after each call (the
 * count is only known then) with rate-limiter-flexible, in Redis when configured so every
 * process shares them, else per process; a call starts only while the minute's count is
 * below the limit. Concurrent model calls are counted per process.
 */
export function createModelCallLimits(options: {
  readonly policies: PolicyCache;
  readonly redis: Redis | undefined;
  readonly onStoreError: (error: unknown) => void;
}): ModelCallLimits {
  const tokenLimiters = new Map<number, RateLimiterAbstract>();
  function tokenLimiter(points: number): RateLimiterAbstract {
    let found = tokenLimiters.get(points);
    if (found === undefined) {
      const keyPrefix = `brigade:tpm:${points}`;
      const memory = new RateLimiterMemory({ points, duration: windowSeconds, keyPrefix });
      found =
        options.redis === undefined
          ? memory
          : new RateLimiterRedis({
              storeClient: options.redis,
              points,
              duration: windowSeconds,
              keyPrefix,
              rejectIfRedisNotReady: true,
              insuranceLimiter: memory,
            });
      tokenLimiters.set(points, found);
    }
    return found;
  }
  const inFlight = new Map<string, number>();
  const waiters = new Set<() => void>();
  const slotKey = (limit: BindingLimit) => `${limit.policyId}:${limit.counterKey}`;

  /** Milliseconds until the tightest full token window frees, or 0 when all have room. */
  async function tokenWait(limits: readonly BindingLimit[]): Promise<number> {
    let wait = 0;
    for (const limit of limits) {
      try {
        const state = await tokenLimiter(limit.limit).get(slotKey(limit));
        if (state !== null && state.consumedPoints >= limit.limit)
          wait = Math.max(wait, state.msBeforeNext);
      } catch (error) {
        options.onStoreError(error);
      }
    }
    return wait;
  }

  return {
    async acquire(subject, { wait, deadline, signal }) {
      const [tokens, concurrency] = await Promise.all([
        options.policies.binding(subject, 'tokensPerMinute'),
        options.policies.binding(subject, 'concurrentModelCalls'),
      ]);
      if (tokens.length === 0 && concurrency.length === 0) return { release: () => undefined };
      for (;;) {
        const tokenMs = tokens.length === 0 ? 0 : await tokenWait(tokens);
        const full = concurrency.find(
          (limit) => (inFlight.get(slotKey(limit)) ?? 0) >= limit.limit,
        );
        if (tokenMs === 0 && full === undefined) break;
        const retryMs = tokenMs > 0 ? tokenMs : 1_000;
        if (!wait || Date.now() + Math.min(retryMs, 1_000) > deadline.getTime()) {
          throw new AppError(
            'rate_limited',
            tokenMs > 0
              ? 'The tokens-per-minute limit is reached.'
              : 'The concurrent model call limit is reached.',
            { details: { retryAfterSeconds: Math.max(1, Math.ceil(retryMs / 1000)) } },
          );
        }
        // Woken early when a slot frees; re-checked either way.
        await Promise.race([
          delay(Math.min(retryMs, 1_000), signal),
          new Promise<void>((resolve) => waiters.add(resolve)),
        ]);
      }
      for (const limit of concurrency)
        inFlight.set(slotKey(limit), (inFlight.get(slotKey(limit)) ?? 0) + 1);
      let released = false;
      return {
        release(used) {
          if (released) return;
          released = true;
          for (const limit of concurrency) {
            const left = (inFlight.get(slotKey(limit)) ?? 1) - 1;
            if (left <= 0) inFlight.delete(slotKey(limit));
            else inFlight.set(slotKey(limit), left);
          }
          for (const wake of waiters) wake();
          waiters.clear();
          if (used <= 0) return;
          for (const limit of tokens) {
            tokenLimiter(limit.limit)
              .penalty(slotKey(limit), used)
              .catch((error: unknown) => options.onStoreError(error));
          }
        },
      };
    },
  };
}
