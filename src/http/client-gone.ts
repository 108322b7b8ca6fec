import type { Context } from 'hono';
import type { ErrorLogger } from './error-response.ts';

/**
 * The reason a request's own work is aborted with when its client disconnects: not a failure
 * of the server, and nothing can be answered to anyone.
 */
export class ClientGoneError extends Error {
  constructor() {
    super('client disconnected');
    this.name = 'ClientGoneError';
  }
}

/** Whether `error` is (or was caused by) a client's disconnection or an abort it caused. */
function causedByAbort(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Error; depth += 1) {
    if (current instanceof ClientGoneError || current.name === 'AbortError') return true;
    current = current.cause;
  }
  return false;
}

/**
 * The answer to an error thrown while handling a request whose client has gone (its signal
 * aborted), or undefined while the client is still there. The abort's own consequences are
 * logged at debug level without a stack (a client hanging up is not a server error); anything
 * else goes through `render` as usual, for its logging. Either way only an empty `499` (nginx's
 * "client closed request", for the access log and metrics) is returned: the socket is closed,
 * and no error document is written to it.
 */
export function answerClientGone(
  context: Context,
  error: unknown,
  handling: { readonly logger: ErrorLogger; readonly render: () => Response },
): Response | undefined {
  if (!context.req.raw.signal.aborted) return undefined;
  if (causedByAbort(error))
    handling.logger.debug?.(
      { requestId: context.get('requestId') as string | undefined, path: context.req.path },
      'client disconnected before the response',
    );
  else handling.render();
  return new Response(null, { status: 499 });
}
