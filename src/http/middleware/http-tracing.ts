import type { MiddlewareHandler } from 'hono';
import { matchedRoutes } from 'hono/route';
import { SpanKind, SpanStatusCode, type Tracing } from '../../observability/tracing.ts';
import type { AppEnv } from '../app-env.ts';

/**
 * One server span per request (`GET /v1/threads/{threadId}`), active while the request is
 * handled so spans and log lines inside it join its trace (runs it creates join it too, see
 * run-spans.ts). It carries the route template, status, request id, and once authenticated
 * the caller's tenant and user, with the thread and run its path names.
 */
export function httpTracing(tracing: Tracing): MiddlewareHandler<AppEnv> {
  return (context, next) =>
    tracing.inSpan(
      context.req.method,
      {
        kind: SpanKind.SERVER,
        // The route template, never the path: paths carry ids (pseudonymous mode hides users).
        attributes: { 'http.request.method': context.req.method },
      },
      async (span) => {
        await next();
        const route =
          matchedRoutes(context)
            .filter((matched) => matched.method !== 'ALL')
            .at(-1)?.path ?? 'unmatched';
        span.updateName(`${context.req.method} ${route}`);
        span.setAttributes({
          'http.route': route,
          'http.response.status_code': context.res.status,
          'brigade.request.id': context.get('requestId') ?? '',
        });
        const principal = context.get('principal') as AppEnv['Variables']['principal'] | undefined;
        if (principal?.kind === 'user') {
          // The thread and run of the path, once the request succeeded: then they are the
          // caller's own (a refused request names nothing it could not see).
          const params: Partial<Record<string, string>> =
            context.res.status < 400 ? context.req.param() : {};
          span.setAttributes(
            tracing.subjectAttributes({
              tenantId: principal.tenantId,
              userId: principal.userId,
              threadId: params['threadId'],
              runId: params['runId'],
            }),
          );
        }
        if (context.res.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
        // Clients can quote it to support; the access log line carries it too.
        try {
          context.res.headers.set('x-trace-id', span.spanContext().traceId);
        } catch {
          // A response with immutable headers goes out without it.
        }
      },
    );
}
