import type { Logger } from 'pino';
import { redactSecretShapes } from '../../runtime/tools/output-guard.ts';
import type { BrigadeApp } from '../app-env.ts';

/**
 * Wraps the app's fetch handler with one access-log line per request: method, path (without
 * the query string, which may carry tokens, and with credential-shaped segments redacted: a
 * client may put a key in a path by mistake), status, duration and request id. Never headers.
 */
export function accessLog(
  app: BrigadeApp,
  logger: Logger,
): (request: Request) => Promise<Response> {
  return async (request) => {
    const started = performance.now();
    const response = await app.fetch(request);
    if (logger.isLevelEnabled('info')) {
      const path = redactSecretShapes(new URL(request.url).pathname);
      logger.info(
        {
          method: request.method,
          path,
          status: response.status,
          durationMs: Math.round((performance.now() - started) * 100) / 100,
          requestId: response.headers.get('x-request-id') ?? undefined,
          trace_id: response.headers.get('x-trace-id') ?? undefined,
        },
        'request',
      );
    }
    return response;
  };
}
