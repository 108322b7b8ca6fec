import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import {
  AppError,
  type ErrorCode,
  UnauthenticatedError,
  ValidationError,
} from '../domain/errors.ts';
import { describeUniqueViolation } from '../storage/postgres/unique-violation.ts';

/** The one table mapping error codes to HTTP statuses. */
export const statusByCode: Readonly<Record<ErrorCode, ContentfulStatusCode>> = {
  invalid_json: 400,
  validation_failed: 422,
  payload_too_large: 413,
  unsupported_media_type: 415,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  tenant_not_found: 404,
  user_not_found: 404,
  api_key_not_found: 404,
  oidc_provider_not_found: 404,
  agent_not_found: 404,
  thread_not_found: 404,
  run_not_found: 404,
  thread_busy: 409,
  run_not_active: 409,
  unknown_model: 422,
  unknown_tool: 422,
  unknown_mcp_command: 422,
  approval_not_found: 404,
  provider_rate_limited: 429,
  provider_unavailable: 503,
  provider_error: 502,
  approval_not_pending: 409,
  rate_limited: 429,
  queue_full: 429,
  budget_exceeded: 402,
  quota_exceeded: 429,
  policy_not_found: 404,
  model_route_not_found: 404,
  route_in_use: 409,
  context_length_exceeded: 400,
  consent_required: 403,
  consent_not_found: 404,
  tool_not_found: 404,
  credential_not_found: 404,
  memory_not_found: 404,
  memory_key_invalid: 422,
  memory_value_invalid: 422,
  memory_value_too_large: 413,
  memory_limit_exceeded: 409,
  webhook_limit_exceeded: 409,
  resource_limit_exceeded: 409,
  vault_unavailable: 503,
  service_unavailable: 503,
  request_timeout: 504,
  bad_request: 400,
  headers_too_large: 431,
  request_too_slow: 408,
  internal: 500,
};

/** The problem document's `title` of each error code. */
export const titleByCode: Readonly<Record<ErrorCode, string>> = {
  invalid_json: 'Malformed JSON',
  validation_failed: 'Validation failed',
  payload_too_large: 'Payload too large',
  unsupported_media_type: 'Unsupported media type',
  unauthenticated: 'Unauthenticated',
  forbidden: 'Forbidden',
  not_found: 'Not found',
  method_not_allowed: 'Method not allowed',
  conflict: 'Conflict',
  tenant_not_found: 'Tenant not found',
  user_not_found: 'User not found',
  api_key_not_found: 'API key not found',
  oidc_provider_not_found: 'OIDC provider not found',
  agent_not_found: 'Agent not found',
  thread_not_found: 'Thread not found',
  run_not_found: 'Run not found',
  thread_busy: 'Thread busy',
  run_not_active: 'Run not active',
  unknown_model: 'Unknown model',
  unknown_tool: 'Unknown tool',
  unknown_mcp_command: 'Unknown MCP server command',
  approval_not_found: 'Approval not found',
  provider_rate_limited: 'Provider rate limited',
  provider_unavailable: 'Provider unavailable',
  provider_error: 'Provider error',
  approval_not_pending: 'Approval not pending',
  rate_limited: 'Too many requests',
  queue_full: 'Run queue full',
  budget_exceeded: 'Budget exceeded',
  quota_exceeded: 'Quota exceeded',
  policy_not_found: 'Policy not found',
  model_route_not_found: 'Model route not found',
  route_in_use: 'Route in use',
  context_length_exceeded: 'Context length exceeded',
  consent_required: 'Consent required',
  consent_not_found: 'Consent not found',
  tool_not_found: 'Tool not found',
  credential_not_found: 'Credential not found',
  memory_not_found: 'Memory not found',
  memory_key_invalid: 'Invalid memory key',
  memory_value_invalid: 'Invalid memory value',
  memory_value_too_large: 'Memory value too large',
  memory_limit_exceeded: 'Memory full',
  webhook_limit_exceeded: 'Too many webhooks',
  resource_limit_exceeded: 'Limit reached',
  vault_unavailable: 'Credentials vault unavailable',
  service_unavailable: 'Service unavailable',
  request_timeout: 'Request timed out',
  bad_request: 'Bad request',
  headers_too_large: 'Request header fields too large',
  request_too_slow: 'Request not received in time',
  internal: 'Internal error',
};

/** Logger the error renderer reports unexpected errors (and an unavailable database) to. */
export interface ErrorLogger {
  error(object: object, message: string): void;
  warn?(object: object, message: string): void;
  debug?(object: object, message: string): void;
}

/** SQLSTATEs of a server that refuses new connections (too many, starting up, shutting down). */
const refusedStates = new Set(['53300', '57P03', '08001', '08004']);
/** SQLSTATEs of a connection the server ended under a request (restart, terminated backend). */
const lostStates = new Set(['57P01', '57P02', '08003', '08006']);
/** Socket errors of a database that cannot be reached, and of a connection cut under a request. */
const unreachableCodes = new Set(['ECONNREFUSED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH']);
const cutCodes = new Set(['ECONNRESET', 'EPIPE']);
/** node-postgres's messages for a connection that never opened (the pool's and a client's). */
const refusedMessages = ['timeout exceeded when trying to connect', 'due to connection timeout'];
/** …and for one that ended under the request. */
const lostMessages = ['Connection terminated', 'is not queryable'];

/**
 * An unavailable database (refused or lost connections) as a 503 with Retry-After: the client
 * should retry, as during any outage, and nothing internal is shown. A connection lost under
 * the request may have committed its work first, so that answer says to check.
 */
function fromUnavailableDatabase(error: unknown): AppError | undefined {
  if (!(error instanceof Error)) return undefined;
  const code = (error as { code?: unknown }).code;
  const refused =
    (typeof code === 'string' && (refusedStates.has(code) || unreachableCodes.has(code))) ||
    refusedMessages.some((message) => error.message.includes(message));
  const lost =
    (typeof code === 'string' && (lostStates.has(code) || cutCodes.has(code))) ||
    lostMessages.some((message) => error.message.includes(message));
  if (!refused && !lost) return undefined;
  return new AppError(
    'service_unavailable',
    refused
      ? 'The database is unavailable or overloaded; nothing was done, retry shortly.'
      : 'The database connection was lost; retry shortly (a change may have been saved: check first).',
    { cause: error, details: { retryAfterSeconds: refused ? 1 : 2 } },
  );
}

/** Maps PostgreSQL errors a client can cause (unique and foreign-key violations) to AppErrors. */
function fromDatabaseError(error: unknown): AppError | undefined {
  const code = (error as { code?: unknown }).code;
  if (code === '23505') {
    const { field, message } = describeUniqueViolation(error);
    return new AppError('conflict', message, field === undefined ? {} : { details: { field } });
  }
  if (code === '23503') return new AppError('not_found', 'A referenced object does not exist.');
  if (code === '42501') return new AppError('not_found', 'Not found.');
  // A run created for a user disabled (or a tenant suspended) meanwhile (migration 0034).
  if (code === 'BRG16')
    return new AppError(
      'unauthenticated',
      'Your access has ended: the user is disabled or the organisation suspended.',
    );
  // A value PostgreSQL cannot take (a character it cannot store, a number out of range): the
  // boundary should have refused it, but it is the client's value all the same. (Text where an
  // id belongs, 22P02, stays a 500: ids are checked at the boundary, so it would be our bug.)
  if (code === '22021' || code === '22P05' || code === '22003')
    return new ValidationError([
      { path: 'request', message: 'holds a value the database cannot store or compare' },
    ]);
  // Two transactions that each waited for the other (PostgreSQL rolled one back whole), or a
  // serialisation failure: nothing was written, and the same request succeeds when repeated.
  if (code === '40P01' || code === '40001')
    return new AppError('service_unavailable', 'A concurrent change got in the way; retry.', {
      details: { retryAfterSeconds: 1 },
    });
  // Overload or an outage, not a bug: every pooled connection stayed busy past the connect
  // timeout, or the server refused or lost the connection.
  return fromUnavailableDatabase(error);
}

/** Normalises anything thrown into an {@link AppError}; unknown errors become `internal`. */
export function toAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  if (error instanceof HTTPException) {
    if (error.status === 400 && error.message.includes('JSON')) {
      return new AppError('invalid_json', 'The request body is not valid JSON.');
    }
    if (error.status === 413)
      return new AppError('payload_too_large', 'The request body is too large.');
    if (error.status === 401)
      return new AppError('unauthenticated', 'Missing or invalid credentials.');
  }
  return (
    fromDatabaseError(error) ??
    new AppError('internal', 'An internal error occurred.', { cause: error })
  );
}

/**
 * Renders an error as RFC 9457 problem+json. Internal errors are logged with the request id
 * and rendered without any detail, so nothing internal (stack, SQL, secrets) reaches a client.
 */
export function renderProblem(context: Context, error: unknown, logger: ErrorLogger): Response {
  const appError = toAppError(error);
  const status = statusByCode[appError.code];
  const requestId = context.get('requestId') as string | undefined;
  logUnavailable(logger, appError, requestId);
  if (appError.code === 'internal') {
    const cause = appError.cause ?? error;
    logger.error(
      {
        err:
          cause instanceof Error
            ? { message: cause.message, name: cause.name, stack: cause.stack }
            : { value: String(cause) },
        requestId,
      },
      'unhandled error',
    );
  }
  const body = {
    type: `https://brigade.dev/problems/${appError.code}`,
    title: titleByCode[appError.code],
    status,
    code: appError.code,
    detail: appError.message,
    instance: context.req.path,
    ...(requestId === undefined ? {} : { requestId }),
    ...(appError.details ?? {}),
  };
  const headers: Record<string, string> = { 'content-type': 'application/problem+json' };
  if (appError.code === 'unauthenticated') headers['www-authenticate'] = bearerChallenge(appError);
  // The unread rest of an oversized body must not be parsed as the next request.
  if (appError.code === 'payload_too_large') headers['connection'] = 'close';
  const retryAfter = appError.details?.['retryAfterSeconds'];
  if (typeof retryAfter === 'number') headers['retry-after'] = String(Math.ceil(retryAfter));
  return new Response(JSON.stringify(body), { status, headers });
}

/**
 * The `WWW-Authenticate` value of a 401: no error code when the request carried no bearer
 * credential (RFC 6750 §3.1), `invalid_token` when it carried one that was refused.
 */
export function bearerChallenge(appError: AppError): string {
  return appError instanceof UnauthenticatedError && !appError.credentialPresented
    ? 'Bearer realm="brigade"'
    : 'Bearer realm="brigade", error="invalid_token"';
}

/** Reports a 503 caused by the database (its message only: never the SQL or a stack). */
export function logUnavailable(
  logger: ErrorLogger,
  appError: AppError,
  requestId: string | undefined,
): void {
  if (appError.code !== 'service_unavailable' || !(appError.cause instanceof Error)) return;
  logger.warn?.({ err: { message: appError.cause.message }, requestId }, 'database unavailable');
}

/** The parts of a zod issue the API reports. */
export type ZodIssueLike = {
  readonly path: readonly PropertyKey[];
  readonly message: string;
  readonly code?: string;
  readonly keys?: readonly string[];
};

/** Converts zod issues into field-level {@link ValidationError} entries with dotted paths. */
export function toValidationError(
  target: string,
  issues: readonly ZodIssueLike[],
): ValidationError {
  const prefix = target === 'json' ? 'body' : target;
  return new ValidationError(
    issues.flatMap((issue) => {
      const base = [prefix, ...issue.path.map(String)].join('.');
      if (issue.code === 'unrecognized_keys' && issue.keys !== undefined) {
        return issue.keys.map((key) => ({ path: `${base}.${key}`, message: 'unknown field' }));
      }
      return [{ path: base, message: issue.message }];
    }),
  );
}
