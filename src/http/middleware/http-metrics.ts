import type { MiddlewareHandler } from 'hono';
import { matchedRoutes } from 'hono/route';
import type { Metrics } from '../../observability/metrics.ts';
import type { AppEnv } from '../app-env.ts';

/**
 * Counts every request and times it to its response headers, labelled with the matched route
 * template (`/v1/threads/:threadId`), never the concrete path, so no id becomes a label.
 * Requests no route matches share the label `unmatched`. Register it first: errors are
 * rendered into responses below it, so their status is counted too.
 */
export function httpMetrics(
  metrics: Pick<Metrics, 'observeHttpRequest'>,
): MiddlewareHandler<AppEnv> {
  return async (context, next) => {
    const started = performance.now();
    try {
      await next();
    } finally {
      // The route that answered is the last matched one registered for a method (not `use`).
      const route =
        matchedRoutes(context)
          .filter((matched) => matched.method !== 'ALL')
          .at(-1)?.path ?? 'unmatched';
      metrics.observeHttpRequest({
        method: context.req.method,
        route,
        status: context.res.status,
        durationSeconds: (performance.now() - started) / 1000,
      });
    }
  };
}
