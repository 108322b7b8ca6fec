import { BrokenCircuitError } from 'cockatiel';
import { AppError } from '../domain/errors.ts';
import type { ModelResultV1 } from '../plugin-api/index.ts';
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
