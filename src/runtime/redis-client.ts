import { Redis } from 'ioredis';

/**
 * Longest wait for one Redis reply. Redis answers in well under a millisecond; a server that
 * accepts commands and does not answer (stalled, paused, a half-open connection after a
 * failover) would otherwise hold every request that counts a limit or reads the response
 * cache until it answers, however long that takes. Past this, the command fails and the
 * caller falls back as it does when Redis is down (per-process limits, a cache miss).
 */
export const redisCommandTimeoutMs = 500;

/**
 * The Redis client the request and model-call limiters and the response cache share. Commands
 * fail at once while it is disconnected (no offline queue), are retried at most once after a
 * reconnect, and fail after {@link redisCommandTimeoutMs} without an answer.
 */
export function createRedisClient(url: string): Redis {
  return new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000,
    commandTimeout: redisCommandTimeoutMs,
  });
}

/**
 * Reports a failing Redis (rate-limit store, response cache) as a warning at most every 30 s
 * while it is down: limits are then per process until it recovers.
 */
export function storeErrorReporter(logger: {
  warn(object: object, message: string): void;
}): (error: unknown) => void {
  let lastWarning = 0;
  return (error) => {
    if (Date.now() - lastWarning < 30_000) return;
    lastWarning = Date.now();
    logger.warn(
      { err: { message: error instanceof Error ? error.message : String(error) } },
      'rate-limit store unavailable: limits are per process until it recovers',
    );
  };
}
