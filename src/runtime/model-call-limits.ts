import type { Redis } from 'ioredis';
import {
  type RateLimiterAbstract,
  RateLimiterMemory,
  RateLimiterRedis,
} from 'rate-limiter-flexible';
import { AppError } from '../domain/errors.ts';
import { delay } from '../gateway/abortable-delay.ts';
import {
  type CallSlots,
  createMemorySlots,
  createRedisSlots,
  type HeldSlots,
} from './model-call-slots.ts';
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
    options: {
      readonly wait: boolean;
      readonly deadline: Date;
      readonly signal: AbortSignal;
      /** Awaited once, before the first wait (the caller commits what must not wait). */
      readonly beforeWait?: (() => Promise<void>) | undefined;
    },
  ): Promise<ModelCallPermit>;
}

const windowSeconds = 60;
/** How often a call waiting for a concurrency slot looks again (a local release wakes it sooner). */
const concurrencyRetryMs = 200;

/**
 * Creates the {@link ModelCallLimits}. Tokens per minute are counted after each call (the
 * count is only known then) with rate-limiter-flexible, in Redis when configured so every
 * process shares them, else per process; a call starts only while the minute's count is
 * below the limit. Concurrent model calls are counted in Redis too when configured (leased
 * slots, see model-call-slots.ts), else per process.
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
  const slots: CallSlots =
    options.redis === undefined
      ? createMemorySlots()
      : createRedisSlots({
          redis: options.redis,
          fallback: createMemorySlots(),
          onError: options.onStoreError,
        });
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
    async acquire(subject, { wait, deadline, signal, beforeWait }) {
      const [tokens, concurrency] = await Promise.all([
        options.policies.binding(subject, 'tokensPerMinute'),
        options.policies.binding(subject, 'concurrentModelCalls'),
      ]);
      if (tokens.length === 0 && concurrency.length === 0) return { release: () => undefined };
      const slotLimits = concurrency.map((limit) => ({ key: slotKey(limit), limit: limit.limit }));
      let held: HeldSlots | undefined;
      for (;;) {
        const tokenMs = tokens.length === 0 ? 0 : await tokenWait(tokens);
        if (tokenMs === 0) {
          if (slotLimits.length === 0) break;
          held = await slots.take(slotLimits);
          if (held !== undefined) break;
        }
        // Slots held by other processes free without a signal here: look again soon.
        const retryMs = tokenMs > 0 ? tokenMs : concurrencyRetryMs;
        if (!wait || Date.now() + Math.min(retryMs, 1_000) > deadline.getTime()) {
          throw new AppError(
            'rate_limited',
            tokenMs > 0
              ? 'The tokens-per-minute limit is reached.'
              : 'The concurrent model call limit is reached.',
            { details: { retryAfterSeconds: Math.max(1, Math.ceil(retryMs / 1000)) } },
          );
        }
        if (beforeWait !== undefined) {
          const told = beforeWait;
          beforeWait = undefined;
          await told();
        }
        // Woken early when a slot frees; re-checked either way.
        let wake: () => void = () => undefined;
        const woken = new Promise<void>((resolve) => {
          wake = resolve;
          waiters.add(resolve);
        });
        await Promise.race([delay(Math.min(retryMs, 1_000), signal), woken]).finally(() =>
          waiters.delete(wake),
        );
      }
      let released = false;
      return {
        release(used) {
          if (released) return;
          released = true;
          held?.release();
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
