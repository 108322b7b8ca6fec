import { RateLimiterMemory, type RateLimiterRes } from 'rate-limiter-flexible';

/**
 * The per-process "insurance" limiter of a Redis limiter (rate-limiter-flexible counts there
 * while Redis fails), telling `onUse` each time it decides in Redis' stead: the Redis limiter
 * calls its `consume` only when Redis failed. Its other calls (refunds, corrections) decide
 * nothing and are not told.
 */
export function createInsuranceLimiter(options: {
  readonly limiter: ConstructorParameters<typeof RateLimiterMemory>[0];
  readonly onUse: () => void;
}): RateLimiterMemory {
  class InsuranceLimiter extends RateLimiterMemory {
    override consume(...args: Parameters<RateLimiterMemory['consume']>): Promise<RateLimiterRes> {
      options.onUse();
      return super.consume(...args);
    }
  }
  return new InsuranceLimiter(options.limiter);
}
