import type { AppError, ErrorCode } from '../errors.ts';

/**
 * The details of a budget or quota refusal that reach the client beyond problem+json: in the
 * OpenAI-shaped error object and in a failed run's `errorDetails`. Named one by one, so a
 * detail added for the log never leaks into them by accident.
 */
const refusalDetailKeys: Partial<Record<ErrorCode, readonly string[]>> = {
  budget_exceeded: [
    'policyId',
    'level',
    'period',
    'limitUsd',
    'remainingUsd',
    'requiredUsd',
    'resetsAt',
  ],
  quota_exceeded: ['policyId', 'level', 'limit', 'used', 'resetsAt'],
  // A tokens-per-minute or concurrent-model-call policy that refused a model call.
  rate_limited: ['policyId', 'level', 'limit'],
};

/**
 * The structured details of a refusal (`budget_exceeded`: what is left, what the call needed,
 * when the period resets; `quota_exceeded`: the quota, its use, when it resets; `rate_limited`:
 * the policy and its limit), or undefined for an error of another code.
 */
export function refusalDetails(error: AppError): Record<string, unknown> | undefined {
  const keys = refusalDetailKeys[error.code];
  if (keys === undefined) return undefined;
  const details = error.details ?? {};
  return Object.fromEntries(keys.filter((key) => key in details).map((key) => [key, details[key]]));
}
