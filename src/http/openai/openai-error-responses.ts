import { jsonResponse } from '../route-helpers.ts';
import { openAiErrorSchema } from './openai-schemas.ts';

const openAiError = (description: string) => jsonResponse(openAiErrorSchema, description);

/** The OpenAI-shaped error responses the OpenAI-compatible operations declare, by status. */
export const openAiErrors = {
  400: openAiError('Malformed request; `error.param` names the field.'),
  401: openAiError('Missing or invalid API key (`invalid_api_key`).'),
  403: openAiError('The key lacks the permission.'),
  404: openAiError('Unknown model (`model_not_found`).'),
  409: openAiError(
    'With `agent:<name>`: the run stopped for a tool call approval (`conflict`, naming the thread and run), or its memory is full.',
  ),
  413: openAiError('The request body is too large (`payload_too_large`).'),
  415: openAiError('The request body is not JSON (`unsupported_media_type`).'),
  422: openAiError(
    'With `agent:<name>`: the run failed on the agent’s own definition (an unknown tool or MCP command, a memory key or value it may not store).',
  ),
  429: openAiError(
    'Rate limited (`rate_limit_exceeded`, with Retry-After; a tokens-per-minute or concurrent-model-call policy is named by `policyId`, `level` and `limit`, and such a refusal carries no RateLimit headers, which describe the request limit) or budget spent (`insufficient_quota`, with `x-should-retry: false`).',
  ),
  500: openAiError('Internal error.'),
  502: openAiError('The model provider rejected the request.'),
  503: openAiError(
    'The model provider failed or is unreachable, or the server is overloaded (`service_unavailable`).',
  ),
  504: openAiError('With `agent:<name>`: the run reached its deadline (`request_timeout`).'),
} as const;
