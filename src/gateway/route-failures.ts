import { BrokenCircuitError } from 'cockatiel';
import { AppError } from '../domain/errors.ts';
import type { ModelResultV1 } from '../plugin-api/index.ts';
import type { AttemptCutoff } from './attempt-timer.ts';
import type { FailureKind } from './model-routes.ts';

/** How routing classifies an error: a failure kind, or one retrying cannot fix. */
export type ErrorClass = FailureKind | 'client_error' | 'aborted';

/** One attempt of a routed call, for metering and the caller's records. */
export interface RouteAttempt {
  readonly route: string;
  readonly model: string;
  readonly status: 'ok' | 'error';
  readonly errorClass?: ErrorClass | undefined;
  readonly latencyMs: number;
  /** Whether any output reached the caller during this attempt. */
  readonly streamed: boolean;
}

/** The outcome of a routed call. */
export interface RoutedResult {
  readonly result: ModelResultV1;
  readonly route: string;
  readonly model: string;
  readonly attempts: readonly RouteAttempt[];
}

/** Thrown when a routed call fails for good; carries every attempt made. */
export class RouteFailedError extends AppError {
  readonly attempts: readonly RouteAttempt[];
  constructor(cause: AppError, attempts: readonly RouteAttempt[]) {
    super(cause.code, cause.message, {
      cause,
      ...(cause.details === undefined ? {} : { details: cause.details }),
    });
    this.name = 'RouteFailedError';
    this.attempts = attempts;
  }
}

/** Classifies an error of a deployment call (see `toProviderError` in ai-sdk-model.ts). */
export function classifyError(error: unknown): { kind: ErrorClass; retryAfterMs?: number } {
  if (error instanceof BrokenCircuitError) return { kind: 'server_error' };
  if (!(error instanceof AppError)) return { kind: 'server_error' };
  const details = error.details ?? {};
  const retryAfterSeconds = details['retryAfterSeconds'];
  const retryAfterMs =
    typeof retryAfterSeconds === 'number' ? Math.max(0, retryAfterSeconds * 1000) : undefined;
  const failure = details['failure'];
  if (typeof failure === 'string') {
    return {
      kind: failure as ErrorClass,
      ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
    };
  }
  switch (error.code) {
    case 'provider_rate_limited':
      return { kind: 'rate_limited', ...(retryAfterMs === undefined ? {} : { retryAfterMs }) };
    case 'provider_unavailable':
      return { kind: 'server_error' };
    case 'request_timeout':
      return { kind: 'timeout' };
    default:
      return { kind: 'client_error' };
  }
}

/**
 * The error of a call that ran out of time, naming the limit it hit: the route's attempt
 * timeout (no answer, or a stream that stopped, for that long) or the call's deadline (while
 * the model answered or not, or with too little of it left to start another attempt).
 */
export function timeoutError(timeout: {
  readonly cutoff: AttemptCutoff | 'too-late';
  readonly attemptTimeoutMs: number;
  /** The call's deadline, in ms from its start. */
  readonly deadlineMs: number;
  /** Whether output reached the caller before the cut. */
  readonly streamed: boolean;
}): AppError {
  const { attemptTimeoutMs, deadlineMs } = timeout;
  switch (timeout.cutoff) {
    case 'attempt':
      return new AppError(
        'provider_unavailable',
        `The model did not answer within ${attemptTimeoutMs} ms (the route's attempt timeout).`,
      );
    case 'idle':
      return new AppError(
        'provider_unavailable',
        `The model stopped answering for ${attemptTimeoutMs} ms (the route's attempt timeout).`,
      );
    case 'deadline':
      return new AppError(
        'provider_unavailable',
        timeout.streamed
          ? `The call's deadline (${deadlineMs} ms) passed while the model was answering.`
          : `The model did not answer within the call's deadline (${deadlineMs} ms).`,
      );
    case 'too-late':
      return new AppError(
        'provider_unavailable',
        `The call's deadline (${deadlineMs} ms) passed before a model could answer.`,
      );
  }
}
