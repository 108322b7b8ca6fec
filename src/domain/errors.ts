/** Every stable error code Brigade returns; clients may branch on these strings. */
export const errorCodes = [
  'invalid_json',
  'validation_failed',
  'payload_too_large',
  'unsupported_media_type',
  'unauthenticated',
  'forbidden',
  'not_found',
  'method_not_allowed',
  'conflict',
  'tenant_not_found',
  'user_not_found',
  'api_key_not_found',
  'oidc_provider_not_found',
  'agent_not_found',
  'thread_not_found',
  'run_not_found',
  'thread_busy',
  'run_not_active',
  'unknown_model',
  'unknown_tool',
  'unknown_mcp_command',
  'approval_not_found',
  'provider_rate_limited',
  'provider_unavailable',
  'provider_error',
  'approval_not_pending',
  'rate_limited',
  'queue_full',
  'budget_exceeded',
  'quota_exceeded',
  'policy_not_found',
  'model_route_not_found',
  'route_in_use',
  'context_length_exceeded',
  'consent_required',
  'consent_not_found',
  'tool_not_found',
  'credential_not_found',
  'memory_not_found',
  'memory_key_invalid',
  'memory_value_invalid',
  'memory_value_too_large',
  'memory_limit_exceeded',
  'webhook_limit_exceeded',
  'resource_limit_exceeded',
  'vault_unavailable',
  'service_unavailable',
  'request_timeout',
  'bad_request',
  'headers_too_large',
  'request_too_slow',
  'internal',
] as const;

/** A stable, snake_case error code. */
export type ErrorCode = (typeof errorCodes)[number];

/** Options accepted by {@link AppError}. */
export interface AppErrorOptions extends ErrorOptions {
  /** Extra, client-safe fields rendered into the problem document. */
  readonly details?: Readonly<Record<string, unknown>>;
}

/**
 * The one error type the domain throws. `message` must be safe to show to the client: it
 * never contains secrets, SQL, stack traces or another tenant's data.
 */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>> | undefined;
  constructor(code: ErrorCode, message: string, options: AppErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.details = options.details;
  }
}

/** One field-level problem of a request. */
export interface ValidationIssue {
  /** JSON-pointer-like dotted path of the offending field, `(body)` for the whole body. */
  readonly path: string;
  readonly message: string;
}

/**
 * Most issues one {@link ValidationError} lists. A request of 60,000 unknown fields got a
 * 2.9 MB answer listing each; past this many, one last issue says how many were left out.
 */
export const maxListedIssues = 100;

/** The first {@link maxListedIssues} issues, then one saying how many more there are. */
function listedIssues(issues: readonly ValidationIssue[]): readonly ValidationIssue[] {
  if (issues.length <= maxListedIssues) return issues;
  const more = issues.length - maxListedIssues;
  // Named after the part of the request the first issue left out is in (`body`, `query`…).
  const root = issues[maxListedIssues]?.path.split('.')[0] || 'body';
  return [
    ...issues.slice(0, maxListedIssues),
    {
      path: root,
      message: `${more} more issues are not listed (the first ${maxListedIssues} are)`,
    },
  ];
}

/**
 * Thrown when input fails validation; lists every offending field, up to
 * {@link maxListedIssues} of them.
 */
export class ValidationError extends AppError {
  readonly issues: readonly ValidationIssue[];
  constructor(issues: readonly ValidationIssue[], message = 'The request is not valid.') {
    const listed = listedIssues(issues);
    super('validation_failed', message, { details: { errors: listed } });
    this.name = 'ValidationError';
    this.issues = listed;
  }
}

/**
 * Thrown when the caller is not authenticated. `credentialPresented` decides the
 * `WWW-Authenticate` challenge: a request that carried no bearer credential gets a challenge
 * without an error code (RFC 6750 §3.1), a bad credential `error="invalid_token"`.
 */
export class UnauthenticatedError extends AppError {
  readonly credentialPresented: boolean;
  constructor(
    message = 'Missing or invalid credentials.',
    options: { readonly credentialPresented?: boolean } = {},
  ) {
    super('unauthenticated', message);
    this.name = 'UnauthenticatedError';
    this.credentialPresented = options.credentialPresented ?? true;
  }
}

/** Thrown when the caller lacks a permission for an object it is allowed to know about. */
export class ForbiddenError extends AppError {
  constructor(message = 'You do not have permission to do this.') {
    super('forbidden', message);
    this.name = 'ForbiddenError';
  }
}

/** Thrown for a missing object, and for one the caller may not know exists. */
export class NotFoundError extends AppError {
  constructor(code: ErrorCode = 'not_found', message = 'Not found.') {
    super(code, message);
    this.name = 'NotFoundError';
  }
}

/** Thrown when a unique name or a state transition conflicts with existing data. */
export class ConflictError extends AppError {
  constructor(message: string) {
    super('conflict', message);
    this.name = 'ConflictError';
  }
}
