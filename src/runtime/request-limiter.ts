import type { Redis } from 'ioredis';
import {
  type RateLimiterAbstract,
  RateLimiterMemory,
  RateLimiterRedis,
  RateLimiterRes,
} from 'rate-limiter-flexible';
import type { FallbackLimiter } from '../observability/state-gauges.ts';
import { createInsuranceLimiter } from './insurance-limiter.ts';
import type { BindingLimit } from './policy-cache.ts';

/** The outcome of counting one request against every limit that applies to it. */
export interface LimitDecision {
  readonly allowed: boolean;
  /** The tightest limit: what the RateLimit headers describe. */
  readonly limit: number;
  readonly remaining: number;
  /** Seconds until the tightest window resets (for Retry-After when refused). */
  readonly resetSeconds: number;
  /** Which limit refused the request, when one did (`policy`: a policy's requestsPerMinute). */
  readonly scope: 'key' | 'user' | 'tenant' | 'policy' | undefined;
  /** The refusing policy, when a policy refused. */
  readonly policyId?: string | undefined;
}

/** Counts requests per API key, user and tenant; the tightest limit wins. */
export interface RequestLimiter {
  consume(
    subject: { tenantId: string; userId: string; keyId: string | undefined },
    /** requestsPerMinute limits of the policies binding the subject. */
    policies?: readonly BindingLimit[],
  ): Promise<LimitDecision>;
  readonly windowSeconds: number;
}

/** Options for {@link createRequestLimiter}. */
export interface RequestLimiterOptions {
  readonly perKey: number;
  readonly perUser: number;
  readonly perTenant: number;
  /** Shared store; without it (or while it is unreachable) limits are per process. */
  readonly redis: Redis | undefined;
  readonly onStoreError: (error: unknown) => void;
  /** Told of each request counted per process because Redis failed (`requests`). */
  readonly onFallback?: ((limiter: FallbackLimiter) => void) | undefined;
}

const windowSeconds = 60;

/**
 * Requests-per-minute limits with rate-limiter-flexible. With Redis the counters are shared by
 * every process; if Redis becomes unreachable each limiter falls back to its in-process
 * "insurance" limiter (same points, per process), and `onStoreError` reports it.
 */
export function createRequestLimiter(options: RequestLimiterOptions): RequestLimiter {
  function limiter(scope: string, points: number): RateLimiterAbstract {
    const local = { points, duration: windowSeconds, keyPrefix: `brigade:rl:${scope}` };
    if (options.redis === undefined) return new RateLimiterMemory(local);
    return new RateLimiterRedis({
      ...local,
      storeClient: options.redis,
      rejectIfRedisNotReady: true,
      insuranceLimiter: createInsuranceLimiter({
        limiter: local,
        onUse: () => options.onFallback?.('requests'),
      }),
    });
  }
  const limiters = {
    key: { limiter: limiter('key', options.perKey), points: options.perKey },
    user: { limiter: limiter('user', options.perUser), points: options.perUser },
    tenant: { limiter: limiter('tenant', options.perTenant), points: options.perTenant },
  };
  // Policy limits are counted by one limiter whatever their size: rate-limiter-flexible fixes
  // the points per limiter, so the limit is compared here. A limiter per distinct limit
  // (~1 KB each) was kept for the process's life, and tenant admins choose the limits: every
  // new value a policy was given added one. Counters are keyed by policy and subject, so
  // equal limits never share a counter, and a changed limit goes on counting its window.
  const policyCounter = limiter('policy', Number.MAX_SAFE_INTEGER);
  type Scope = LimitDecision['scope'] & string;
  async function count(
    scope: Scope,
    counter: { limiter: RateLimiterAbstract; points: number; policyId?: string },
    key: string,
  ) {
    const { points, policyId } = counter;
    /** Gives the point back (a request another limit refused was not served). */
    const refund = () =>
      counter.limiter.reward(key, 1).then(
        () => undefined,
        (error: unknown) => options.onStoreError(error),
      );
    try {
      const consumed = await counter.limiter.consume(key);
      // The shared policy counter never refuses by itself: every count is compared with its
      // own limit here (for the fixed limiters this agrees with their own verdict).
      const result = new RateLimiterRes(
        Math.max(0, points - consumed.consumedPoints),
        consumed.msBeforeNext,
        consumed.consumedPoints,
        consumed.isFirstInDuration,
      );
      const allowed = consumed.consumedPoints <= points;
      return { scope, points, policyId, result, allowed, refund: allowed ? refund : undefined };
    } catch (rejection) {
      if (rejection instanceof RateLimiterRes)
        return { scope, points, policyId, result: rejection, allowed: false, refund: undefined };
      options.onStoreError(rejection);
      // Neither the store nor the insurance limiter answered: fail open for this request.
      return {
        scope,
        points,
        policyId,
        result: new RateLimiterRes(points, 0, 0, false),
        allowed: true,
        refund: undefined,
      };
    }
  }
  return {
    windowSeconds,
    async consume(subject, policies = []) {
      if (options.redis !== undefined && options.redis.status !== 'ready') {
        options.onStoreError(new Error(`Redis is ${options.redis.status}; limits are per process`));
      }
      const byPolicy = (breadth: PolicyBreadth) =>
        policies
          .filter((policy) => breadthOf(policy) === breadth)
          .map((policy) =>
            count(
              'policy',
              { limiter: policyCounter, points: policy.limit, policyId: policy.policyId },
              `${policy.policyId}:${policy.counterKey}`,
            ),
          );
      // A refused request is not served, so it costs only the limits that refused it: counted
      // against the wider ones too, one user over their own limit would use up their tenant's
      // (and a key over its limit its user's), refusing everyone else. So the limits are
      // counted from the narrowest to the widest, and a request refused by a narrow one never
      // reaches the wider ones: counting them all at once and refunding afterwards let a burst
      // of such requests fill the wider counters meanwhile, refusing others for good.
      const stages = [
        () => [
          ...(subject.keyId === undefined ? [] : [count('key', limiters.key, subject.keyId)]),
          ...byPolicy('key'),
        ],
        () => [
          count('user', limiters.user, `${subject.tenantId}:${subject.userId}`),
          ...byPolicy('user'),
        ],
        // An agent's limit is shared by its users but narrower than the tenant's.
        () => byPolicy('agent'),
        () => [count('tenant', limiters.tenant, subject.tenantId), ...byPolicy('tenant')],
      ];
      const outcomes: Awaited<ReturnType<typeof count>>[] = [];
      let refused: (typeof outcomes)[number] | undefined;
      for (const stage of stages) {
        const counted = await Promise.all(stage());
        outcomes.push(...counted);
        refused = counted.find((outcome) => !outcome.allowed);
        if (refused !== undefined) break;
      }
      if (refused !== undefined)
        await Promise.all(
          outcomes.map((outcome) => (outcome.allowed ? outcome.refund?.() : undefined)),
        );
      const tightest =
        refused ??
        outcomes.reduce((low, outcome) =>
          outcome.result.remainingPoints < low.result.remainingPoints ? outcome : low,
        );
      return {
        allowed: refused === undefined,
        limit: tightest.points,
        remaining: Math.max(0, tightest.result.remainingPoints),
        resetSeconds: Math.max(1, Math.ceil(tightest.result.msBeforeNext / 1000)),
        scope: refused?.scope,
        policyId: refused?.policyId,
      };
    },
  };
}

/** How wide a policy's counter is: one key's, one user's, one agent's, or the tenant's. */
type PolicyBreadth = 'key' | 'user' | 'agent' | 'tenant';

function breadthOf(policy: BindingLimit): PolicyBreadth {
  if (policy.counterKey.startsWith('k:')) return 'key';
  if (policy.counterKey.startsWith('u:')) return 'user';
  if (policy.counterKey.startsWith('a:')) return 'agent';
  return 'tenant';
}
