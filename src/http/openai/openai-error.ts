import type { Context } from 'hono';
import { AppError, type ErrorCode, ValidationError } from '../../domain/errors.ts';
import { refusalDetails } from '../../domain/guards/refusal-details.ts';
import {
  bearerChallenge,
  type ErrorLogger,
  logUnavailable,
  statusByCode,
  toAppError,
} from '../error-response.ts';

/** Paths whose errors are OpenAI-shaped error objects instead of problem+json. */
export function isOpenAiPath(path: string): boolean {
  return path === '/v1/chat/completions' || path === '/v1/models' || path.startsWith('/v1/models/');
}

/** An error as the OpenAI API writes it: status, body and headers. */
export interface OpenAiError {
  readonly status: number;
  readonly body: {
    readonly error: {
      readonly message: string;
      readonly type: string;
      readonly param: string | null;
      readonly code: string | null;
      /** A refusal's structured details (budgets and quotas), beside OpenAI's four fields. */
      readonly [detail: string]: unknown;
    };
  };
  readonly headers: Readonly<Record<string, string>>;
}

/** OpenAI's status, `type` and `code` for a Brigade code, where they differ from the defaults. */
const mapped: Partial<
  Record<ErrorCode, { status: number; type: string; code: string; retry?: boolean }>
> = {
  invalid_json: { status: 400, type: 'invalid_request_error', code: 'invalid_json' },
  validation_failed: { status: 400, type: 'invalid_request_error', code: 'invalid_value' },
  unauthenticated: { status: 401, type: 'invalid_request_error', code: 'invalid_api_key' },
  forbidden: { status: 403, type: 'permission_error', code: 'insufficient_permissions' },
  unknown_model: { status: 404, type: 'invalid_request_error', code: 'model_not_found' },
  context_length_exceeded: {
    status: 400,
    type: 'invalid_request_error',
    code: 'context_length_exceeded',
    retry: false,
  },
  agent_not_found: { status: 404, type: 'invalid_request_error', code: 'model_not_found' },
  rate_limited: { status: 429, type: 'rate_limit_error', code: 'rate_limit_exceeded' },
  quota_exceeded: { status: 429, type: 'rate_limit_error', code: 'rate_limit_exceeded' },
  queue_full: { status: 429, type: 'rate_limit_error', code: 'rate_limit_exceeded' },
  provider_rate_limited: { status: 429, type: 'rate_limit_error', code: 'rate_limit_exceeded' },
  // OpenAI's own answer to a spent budget: 429 insufficient_quota. Official clients retry
  // every 429 unless told otherwise, so `x-should-retry: false` stops a pointless retry.
  budget_exceeded: {
    status: 429,
    type: 'insufficient_quota',
    code: 'insufficient_quota',
    retry: false,
  },
  // The provider refused the request (4xx upstream): retrying the same request will not help.
  provider_error: { status: 502, type: 'server_error', code: 'provider_error', retry: false },
  provider_unavailable: { status: 503, type: 'server_error', code: 'provider_unavailable' },
  // Official clients retry 409 too; on this path it means an agent run stopped for an approval,
  // and a retry would start another run (and pay again) for the same request.
  conflict: { status: 409, type: 'invalid_request_error', code: 'conflict', retry: false },
};

/** The thread and run of an agent completion an error ended (agent-completion.ts), if any. */
function agentRunOf(error: AppError): { threadId: string; runId: string } | undefined {
  const threadId = error.details?.['threadId'];
  const runId = error.details?.['runId'];
  return typeof threadId === 'string' && typeof runId === 'string'
    ? { threadId, runId }
    : undefined;
}

/** `body.messages.0.content` → `messages[0].content`, the way OpenAI names a parameter. */
function toParam(path: string): string | null {
  const segments = path.split('.').filter((segment) => segment !== 'body' && segment !== '');
  if (segments.length === 0) return null;
  return segments
    .map((segment, index) =>
      /^\d+$/.test(segment) ? `[${segment}]` : index === 0 ? segment : `.${segment}`,
    )
    .join('');
}

/** Maps anything thrown to an OpenAI error object with a status official clients handle. */
export function toOpenAiError(error: unknown): OpenAiError {
  const appError = toAppError(error);
  // An `agent:<name>` completion whose run started, then failed: the response names the run,
  // and a failure on the agent's definition (its model route deleted since, say) is the run's
  // 422, not a 404 saying the model the client asked for does not exist.
  const run = agentRunOf(appError);
  const rule =
    run !== undefined && (appError.code === 'unknown_model' || appError.code === 'agent_not_found')
      ? { status: 422, type: 'invalid_request_error', code: appError.code }
      : mapped[appError.code];
  const status = rule?.status ?? statusByCode[appError.code];
  const type = rule?.type ?? (status >= 500 ? 'server_error' : 'invalid_request_error');
  const headers: Record<string, string> = {};
  let param = typeof appError.details?.['param'] === 'string' ? appError.details['param'] : null;
  let message = appError.message;
  if (appError instanceof ValidationError) {
    const first = appError.issues[0];
    param = first === undefined ? null : toParam(first.path);
    message = appError.issues
      .map((issue) => `${toParam(issue.path) ?? '(body)'}: ${issue.message}`)
      .join('; ');
  }
  if ((appError.code === 'unknown_model' || appError.code === 'agent_not_found') && !run)
    param = 'model';
  if (appError.code === 'context_length_exceeded') param = 'messages';
  const retryAfter = appError.details?.['retryAfterSeconds'];
  if (typeof retryAfter === 'number') headers['retry-after'] = String(Math.ceil(retryAfter));
  // `retry: false` in an error's details: this request already did work a repeat would do
  // again (an agent run that failed after it started, say), whatever the status says.
  if (rule?.retry === false || appError.details?.['retry'] === false)
    headers['x-should-retry'] = 'false';
  if (appError.code === 'unauthenticated') headers['www-authenticate'] = bearerChallenge(appError);
  if (appError.code === 'payload_too_large') headers['connection'] = 'close';
  if (run !== undefined) {
    headers['x-brigade-thread-id'] = run.threadId;
    headers['x-brigade-run-id'] = run.runId;
  }
  return {
    status,
    body: {
      error: {
        message,
        type,
        param,
        code: rule?.code ?? appError.code,
        ...(refusalDetails(appError) ?? {}),
      },
    },
    headers,
  };
}

/**
 * Renders an error of the OpenAI-compatible paths. Internal errors are logged with the request
 * id and rendered without detail, as in problem+json.
 */
export function renderOpenAiError(context: Context, error: unknown, logger: ErrorLogger): Response {
  const appError = toAppError(error);
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
  const rendered = toOpenAiError(appError);
  return new Response(JSON.stringify(rendered.body), {
    status: rendered.status,
    headers: {
      'content-type': 'application/json',
      ...(requestId === undefined ? {} : { 'x-request-id': requestId }),
      ...rendered.headers,
    },
  });
}

/** A 400 `invalid_request_error` naming the offending parameter. */
export function invalidRequest(param: string, message: string): AppError {
  return new AppError('validation_failed', message, { details: { param } });
}
