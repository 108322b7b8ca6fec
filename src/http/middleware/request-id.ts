import { randomUUID } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { redactSecretShapes } from '../../runtime/tools/output-guard.ts';
import type { AppEnv } from '../app-env.ts';

/** What a client's request id may be made of: it goes into logs, spans and the collector. */
const clientIdPattern = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * The request id of a request: the client's `X-Request-Id` when it is 1–128 characters of
 * `[A-Za-z0-9._:-]` and not shaped like a credential (a Brigade or provider key, a token: the
 * output guard's patterns), else a new UUID. The id is echoed, logged (`requestId`) and put on
 * the request's span (`brigade.request.id`), so a key sent as one must not be kept.
 */
export function requestIdOf(sent: string | undefined): string {
  return sent !== undefined && clientIdPattern.test(sent) && redactSecretShapes(sent) === sent
    ? sent
    : randomUUID();
}

/** Sets `requestId` and the response's `X-Request-Id` (see {@link requestIdOf}). */
export function assignRequestId(): MiddlewareHandler<AppEnv> {
  return async (context, next) => {
    const id = requestIdOf(context.req.header('x-request-id'));
    context.set('requestId', id);
    context.header('X-Request-Id', id);
    await next();
  };
}
