import { timingSafeEqual } from 'node:crypto';
import { ForbiddenError, UnauthenticatedError } from '../../domain/errors.ts';
import type { Metrics } from '../../observability/metrics.ts';
import type { BrigadeApp } from '../app-env.ts';
import type { Authenticator } from '../auth/authenticator.ts';

/** The path Prometheus scrapes. */
export const metricsPath = '/metrics';

function sameSecret(presented: string, expected: string): boolean {
  const a = Buffer.from(presented);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Registers `GET /metrics` (Prometheus text format). It is outside the OpenAPI document and
 * the general authentication: it accepts the `BRIGADE_METRICS_TOKEN` bearer token or the
 * operator key; any tenant user is refused with 403.
 */
export function registerMetricsRoute(
  app: BrigadeApp,
  options: {
    readonly metrics: Metrics;
    readonly authenticator: Authenticator;
    readonly token: string | undefined;
  },
): void {
  app.get(metricsPath, async (context) => {
    const header = context.req.header('authorization');
    const credential =
      header === undefined ? undefined : /^Bearer ([\x21-\x7e]+)$/i.exec(header.trim())?.[1];
    if (credential === undefined)
      throw new UnauthenticatedError(
        'Send the metrics token or the operator key as a bearer token.',
        { credentialPresented: header !== undefined && /^\s*bearer\b/i.test(header) },
      );
    const allowed =
      (options.token !== undefined && sameSecret(credential, options.token)) ||
      (await options.authenticator.authenticate(credential)).kind === 'operator';
    if (!allowed)
      throw new ForbiddenError('Only the metrics token or the operator key may read metrics.');
    return context.body(await options.metrics.render(), 200, {
      'content-type': options.metrics.contentType,
      'cache-control': 'no-store',
    });
  });
}
