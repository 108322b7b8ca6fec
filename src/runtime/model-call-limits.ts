import type { Redis } from 'ioredis';
import {
  type RateLimiterAbstract,
  RateLimiterMemory,
  RateLimiterRedis,
} from 'rate-limiter-flexible';
import { AppError } from '../domain/errors.ts';
import { delay } from '../gateway/abortable-delay.ts';
import type { FallbackLimiter } from '../observability/state-gauges.ts';
import { createInsuranceLimiter } from './insurance-limiter.ts';
import {
  type CallSlots,
  createMemorySlots,
  createRedisSlots,
  type HeldSlots,
} from './model-call-slots.ts';
import type { BindingLimit, LimitSubject, PolicyCache } from './policy-cache.ts';

/** A slot held by one model call; release it when the call ends. */
export interface ModelCallPermit {
  /**
   * Frees the call's slots and replaces the tokens counted at its start by `tokens`, what it
   * used; undefined (the call failed or was cut off) keeps the count it started with.
   */
  release(tokens: number | undefined): void;
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
      /**
       * The tokens the call may use (its input's lower bound plus its output limit), counted
       * against tokens-per-minute limits when it starts and corrected to what it used when
       * it ends; asked only when such a limit binds.
       */
      readonly expectedTokens?: (() => number) | undefined;
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
  /** Told of each call counted per process because Redis failed (`tokens`, `model_calls`). */
  readonly onFallback?: ((limiter: FallbackLimiter) => void) | undefined;
}): ModelCallLimits {
  // One counter for every tokens-per-minute limit, whatever its size: rate-limiter-flexible
  // fixes the points per limiter, so each limit is compared here. A limiter per distinct
  // limit was kept for the process's life, and tenant admins choose the limits. Counters are
  // keyed by policy and subject (`slotKey`), so equal limits never share one.
  const tokenCounter: RateLimiterAbstract = (() => {
    const local = {
      points: Number.MAX_SAFE_INTEGER,
      duration: windowSeconds,
      keyPrefix: 'brigade:tpm',
    };
    return options.redis === undefined
      ? new RateLimiterMemory(local)
      : new RateLimiterRedis({
          ...local,
          storeClient: options.redis,
          rejectIfRedisNotReady: true,
          insuranceLimiter: createInsuranceLimiter({
            limiter: local,
            onUse: () => options.onFallback?.('tokens'),
          }),
        });
  })();
  const localSlots = createMemorySlots();
  const slots: CallSlots =
    options.redis === undefined
      ? localSlots
      : createRedisSlots({
          redis: options.redis,
          fallback: {
            take(limits) {
              options.onFallback?.('model_calls');
              return localSlots.take(limits);
            },
          },
          onError: options.onStoreError,
        });
  const waiters = new Set<() => void>();
  const slotKey = (limit: BindingLimit) => `${limit.policyId}:${limit.counterKey}`;

  /**
   * Takes `reserve` tokens from every limit's window (each capped at its limit, so a call
   * larger than a whole window still goes once the window is empty): all or none. Returns 0
   * when taken, else the milliseconds until the tightest window has room and, in `refusedBy`,
   * that window's limit. A store that fails lets the call through (`onStoreError` hears of it).
   */
  async function takeTokens(
    limits: readonly BindingLimit[],
    reserve: number,
  ): Promise<{ waitMs: number; taken: Map<BindingLimit, number>; refusedBy?: BindingLimit }> {
    const taken = new Map<BindingLimit, number>();
    let waitMs = 0;
    let refusedBy: BindingLimit | undefined;
    for (const limit of limits) {
      const points = Math.max(1, Math.min(reserve, limit.limit));
      let window: { consumedPoints: number; msBeforeNext: number };
      try {
        window = await tokenCounter.consume(slotKey(limit), points);
      } catch (error) {
        options.onStoreError(error);
        continue;
      }
      if (window.consumedPoints <= limit.limit) taken.set(limit, points);
      else {
        // Past the limit, the points were counted all the same: give them back.
        adjust(limit, -points);
        if (window.msBeforeNext >= waitMs) refusedBy = limit;
        waitMs = Math.max(waitMs, window.msBeforeNext, 1);
      }
    }
    if (waitMs > 0) {
      for (const [limit, points] of taken) adjust(limit, -points);
      taken.clear();
      return { waitMs, taken, ...(refusedBy === undefined ? {} : { refusedBy }) };
    }
    return { waitMs, taken };
  }

  /**
   * Corrects a finished call's count by `points`: more tokens than it reserved count in the
   * current window; fewer are given back only to the window that counted them (one that began
   * before `reservedAt`), never into a later one, which would start below zero.
   */
  function correct(limit: BindingLimit, points: number, reservedAt: number): void {
    if (points >= 0) {
      adjust(limit, points);
      return;
    }
    tokenCounter
      .get(slotKey(limit))
      .then((window) => {
        if (window === null) return;
        const startedAt = Date.now() + window.msBeforeNext - windowSeconds * 1000;
        if (startedAt > reservedAt) return;
        adjust(limit, -Math.min(-points, window.consumedPoints));
      })
      .catch((error: unknown) => options.onStoreError(error));
  }

  /** Adds `points` to a limit's window (a negative number gives them back). */
  function adjust(limit: BindingLimit, points: number): void {
    if (points === 0) return;
    (points > 0
      ? tokenCounter.penalty(slotKey(limit), points)
      : tokenCounter.reward(slotKey(limit), -points)
    ).catch((error: unknown) => options.onStoreError(error));
  }

  return {
    async acquire(subject, { wait, deadline, signal, beforeWait, expectedTokens }) {
      const [tokens, concurrency] = await Promise.all([
        options.policies.binding(subject, 'tokensPerMinute'),
        options.policies.binding(subject, 'concurrentModelCalls'),
      ]);
      if (tokens.length === 0 && concurrency.length === 0) return { release: () => undefined };
      const slotLimits = concurrency.map((limit) => ({ key: slotKey(limit), limit: limit.limit }));
      let held: HeldSlots | undefined;
      // The limit that kept the call from starting last: named when the call is refused.
      let refusedBy: BindingLimit | undefined;
      const reserve = tokens.length === 0 ? 0 : Math.ceil(expectedTokens?.() ?? 1);
      let reservedAt = Date.now();
      let reserved = new Map<BindingLimit, number>();
      for (;;) {
        const took = tokens.length === 0 ? undefined : await takeTokens(tokens, reserve);
        const tokenMs = took?.waitMs ?? 0;
        refusedBy = took?.refusedBy;
        if (tokenMs === 0) {
          reserved = took?.taken ?? reserved;
          reservedAt = Date.now();
          if (slotLimits.length === 0) break;
          const slot = await slots.take(slotLimits);
          if (!('full' in slot)) {
            held = slot;
            break;
          }
          refusedBy = concurrency.find((limit) => slotKey(limit) === slot.full.key);
          // No slot: the tokens go back while this call waits.
          for (const [limit, points] of reserved) adjust(limit, -points);
          reserved = new Map();
        }
        // Slots held by other processes free without a signal here: look again soon.
        const retryMs = tokenMs > 0 ? tokenMs : concurrencyRetryMs;
        if (!wait || Date.now() + Math.min(retryMs, 1_000) > deadline.getTime()) {
          throw new AppError(
            'rate_limited',
            tokenMs > 0
              ? 'The tokens-per-minute limit is reached.'
              : 'The concurrent model call limit is reached.',
            {
              details: {
                retryAfterSeconds: Math.max(1, Math.ceil(retryMs / 1000)),
                ...(refusedBy === undefined
                  ? {}
                  : {
                      limitScope: 'policy',
                      policyId: refusedBy.policyId,
                      level: refusedBy.level,
                      limit: refusedBy.limit,
                    }),
              },
            },
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
          // What the call used replaces what it reserved.
          if (used === undefined) return;
          for (const limit of tokens) correct(limit, used - (reserved.get(limit) ?? 0), reservedAt);
        },
      };
    },
  };
}
