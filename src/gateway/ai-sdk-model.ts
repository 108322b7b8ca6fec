import { createAnthropic } from '@ai-sdk/anthropic';
import { createOpenAI } from '@ai-sdk/openai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import {
  APICallError,
  generateText,
  jsonSchema,
  type LanguageModel,
  type ModelMessage,
  type OutputInterface,
  streamText,
  type ToolSet,
  tool,
} from 'ai';
import { AppError } from '../domain/errors.ts';
import type { MessageV1, ModelResultV1, ToolDescriptionV1 } from '../plugin-api/index.ts';
import { sdkCallSettings, toProviderToolName } from './call-settings.ts';
import type { ResponseFormat, Sampling, ToolChoice } from './model-gateway.ts';
import { type ResultRequest, toResult } from './model-result.ts';
import type { Prompt, PromptTokens } from './token-count.ts';

/** A configured model provider (keys come from the environment, never the config file). */
export interface ProviderConfig {
  readonly type: 'openai' | 'anthropic' | 'openai-compatible';
  readonly baseUrl?: string | undefined;
  readonly apiKey?: string | undefined;
  readonly headers?: Readonly<Record<string, string>> | undefined;
}

/** Creates an AI SDK language model for `modelId` on a configured provider. */
export function createLanguageModel(
  name: string,
  config: ProviderConfig,
  modelId: string,
): LanguageModel {
  const headers = config.headers === undefined ? undefined : { ...config.headers };
  switch (config.type) {
    case 'openai':
      return createOpenAI({
        ...(config.apiKey === undefined ? {} : { apiKey: config.apiKey }),
        ...(config.baseUrl === undefined ? {} : { baseURL: config.baseUrl }),
        ...(headers === undefined ? {} : { headers }),
      }).chat(modelId);
    case 'anthropic':
      return createAnthropic({
        ...(config.apiKey === undefined ? {} : { apiKey: config.apiKey }),
        ...(config.baseUrl === undefined ? {} : { baseURL: config.baseUrl }),
        ...(headers === undefined ? {} : { headers }),
      })(modelId);
    case 'openai-compatible':
      return createOpenAICompatible({
        name,
        baseURL: config.baseUrl ?? 'http://127.0.0.1:11434/v1',
        includeUsage: true,
        // json_schema response formats are passed on as json_schema (not degraded to json_object).
        supportsStructuredOutputs: true,
        ...(config.apiKey === undefined ? {} : { apiKey: config.apiKey }),
        ...(headers === undefined ? {} : { headers }),
      }).chatModel(modelId);
  }
}

function toModelMessages(messages: readonly MessageV1[]): ModelMessage[] {
  return messages.map(toModelMessage);
}

function toModelMessage(message: MessageV1): ModelMessage {
  const text = message.content
    .flatMap((part) => (part.type === 'text' ? [part.text] : []))
    .join('');
  switch (message.role) {
    case 'system':
      return { role: 'system', content: text };
    case 'user':
      return { role: 'user', content: [{ type: 'text', text }] };
    case 'assistant':
      return {
        role: 'assistant',
        content: message.content.flatMap(
          (
            part,
          ): Array<
            | { type: 'text'; text: string }
            | { type: 'tool-call'; toolCallId: string; toolName: string; input: unknown }
          > => {
            if (part.type === 'text') return [{ type: 'text', text: part.text }];
            if (part.type === 'tool-call') {
              return [
                {
                  type: 'tool-call',
                  toolCallId: part.toolCallId,
                  toolName: toProviderToolName(part.toolName),
                  input: part.input,
                },
              ];
            }
            return [];
          },
        ),
      };
    case 'tool':
      return {
        role: 'tool',
        content: message.content.flatMap((part) =>
          part.type === 'tool-result'
            ? [
                {
                  type: 'tool-result' as const,
                  toolCallId: part.toolCallId,
                  toolName: toProviderToolName(part.toolName),
                  output:
                    typeof part.output === 'string'
                      ? { type: 'text' as const, value: part.output }
                      : { type: 'json' as const, value: (part.output ?? null) as never },
                },
              ]
            : [],
        ),
      };
  }
  throw new Error(`unknown message role ${String(message.role)}`);
}

function toToolSet(tools: readonly ToolDescriptionV1[]): ToolSet {
  return Object.fromEntries(
    tools.map((description) => [
      toProviderToolName(description.name),
      tool({
        description: description.description,
        inputSchema: jsonSchema(description.inputSchema as never),
      }),
    ]),
  );
}

/** The longest wait a provider's Retry-After is taken for: an hour, whatever it says. */
const maxRetryAfterSeconds = 3600;

/**
 * Seconds from a Retry-After (or retry-after-ms) response header, when it is usable: capped at
 * an hour (a provider's header cools a shared deployment for every tenant), and a blank header
 * is absent (`Number('')` is 0, which would hide the other header's time).
 */
function retryAfterSeconds(headers: Record<string, string> | undefined): number | undefined {
  if (headers === undefined) return undefined;
  const msText = headers['retry-after-ms']?.trim();
  const ms = msText === undefined || msText === '' ? Number.NaN : Number(msText);
  if (Number.isFinite(ms) && ms >= 0) return Math.min(ms / 1000, maxRetryAfterSeconds);
  const value = headers['retry-after']?.trim();
  if (value === undefined || value === '') return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds))
    return seconds >= 0 ? Math.min(seconds, maxRetryAfterSeconds) : undefined;
  const date = Date.parse(value);
  return Number.isNaN(date)
    ? undefined
    : Math.min(Math.max(0, (date - Date.now()) / 1000), maxRetryAfterSeconds);
}

const contextLengthPattern =
  /context_length_exceeded|context length|too many tokens|prompt is too long/i;
const contentFilterPattern = /content_filter|content_policy|content management policy/i;

/**
 * Maps a provider failure to an AppError with a stable code (never leaking the request). The
 * `failure` detail tells the router how to react (retry, cool down, fall back).
 */
function toProviderError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  if (APICallError.isInstance(error))
    return providerHttpError({
      status: error.statusCode,
      body: typeof error.responseBody === 'string' ? error.responseBody : '',
      headers: error.responseHeaders,
      cause: error,
    });
  return new AppError('provider_unavailable', 'The model provider could not be reached.', {
    cause: error,
    details: { failure: 'server_error' },
  });
}

/**
 * Maps a provider's HTTP error answer to an AppError with a stable code and the `failure`
 * detail the router reacts to (never leaking the request).
 */
export function providerHttpError(answer: {
  readonly status: number | undefined;
  readonly body: string;
  readonly headers: Record<string, string> | undefined;
  readonly cause?: unknown;
}): AppError {
  const { status, cause } = answer;
  const body = answer.body.slice(0, 4096);
  // A Retry-After counts on a 5xx as on a 429 (a 503 while a provider sheds load names one):
  // the router cools the deployment down for that long, and the client is told the time.
  const retryAfter = retryAfterSeconds(answer.headers);
  const after = retryAfter === undefined ? {} : { retryAfterSeconds: retryAfter };
  if (status === 429)
    return new AppError('provider_rate_limited', 'The model provider is rate limiting requests.', {
      cause,
      details: { failure: 'rate_limited', ...after },
    });
  if (status !== undefined && status >= 500)
    return new AppError('provider_unavailable', `The model provider failed (${status}).`, {
      cause,
      details: { failure: 'server_error', ...after },
    });
  // The client's mistake, answered as OpenAI does (400 context_length_exceeded), which agent
  // frameworks recognise to trim their history.
  if (status === 400 && contextLengthPattern.test(body))
    return new AppError(
      'context_length_exceeded',
      'The prompt is longer than the model’s context.',
      {
        cause,
        details: { failure: 'context_length' },
      },
    );
  if (status === 400 && contentFilterPattern.test(body))
    return new AppError('provider_error', 'The provider’s content filter refused the request.', {
      cause,
      details: { failure: 'content_filter' },
    });
  return new AppError(
    'provider_error',
    `The model provider rejected the request${status === undefined ? '' : ` (${status})`}.`,
    { cause, details: { failure: 'client_error' } },
  );
}

/**
 * The AI SDK output of a `response_format`: the provider is asked for JSON (with the schema,
 * when given), and the text is passed through as it came. Validating it is the client's business;
 * a gateway that threw on imperfect JSON would turn a paid answer into an error.
 */
function outputOf(format: ResponseFormat | undefined): OutputInterface<string, string> | undefined {
  if (format === undefined || format.type === 'text') return undefined;
  return {
    name: 'json',
    responseFormat: Promise.resolve({
      type: 'json',
      ...(format.schema === undefined ? {} : { schema: format.schema as never }),
      ...(format.name === undefined ? {} : { name: format.name }),
      ...(format.description === undefined ? {} : { description: format.description }),
    }),
    parseCompleteOutput: async ({ text }) => text,
    parsePartialOutput: async () => undefined,
    createElementStreamTransform: () => undefined,
  };
}

function strictOf(format: ResponseFormat | undefined): boolean {
  return format?.type === 'json' && format.strict === true;
}

/** Stream parts that are the model's output: the first one starts a streaming attempt's flow. */
const outputParts: ReadonlySet<string> = new Set([
  'text-delta',
  'reasoning-delta',
  'tool-input-start',
  'tool-input-delta',
  'tool-call',
]);

/**
 * Calls a model through the AI SDK. With `onTextDelta` the provider streams and every text
 * delta is passed on; without it the call is not streamed (`generateText`: one JSON response,
 * far less CPU than a stream of chunks through web streams). Retries are the gateway's job, so
 * the SDK's own are off. Usage missing from the provider is estimated and marked `estimated`.
 */
export async function generateWithAiSdk(request: {
  readonly model: LanguageModel;
  readonly messages: readonly MessageV1[];
  readonly tools: readonly ToolDescriptionV1[];
  readonly maxOutputTokens: number;
  readonly signal: AbortSignal;
  readonly onTextDelta?: ((delta: string) => void) | undefined;
  /** Streaming: told of every part from the first output (text, tool-call input, reasoning) on. */
  readonly onProgress?: (() => void) | undefined;
  readonly responseFormat?: ResponseFormat | undefined;
  readonly sampling?: Sampling | undefined;
  readonly toolChoice?: ToolChoice | undefined;
  /** The prompt's counts made already, for usage the provider leaves out. */
  readonly promptTokens?: PromptTokens | undefined;
}): Promise<ModelResultV1> {
  const system = request.messages
    .filter((message) => message.role === 'system')
    .flatMap((message) =>
      message.content.flatMap((part) => (part.type === 'text' ? [part.text] : [])),
    )
    .join('\n\n');
  const output = outputOf(request.responseFormat);
  const call = {
    model: request.model,
    // Instructions go in `system`, never among the messages (where the AI SDK warns about
    // prompt injection, and where untrusted content could imitate them).
    ...(system.length === 0 ? {} : { system }),
    messages: toModelMessages(request.messages.filter((message) => message.role !== 'system')),
    ...(request.tools.length === 0 ? {} : { tools: toToolSet(request.tools) }),
    ...sdkCallSettings(request),
    ...(output === undefined
      ? {}
      : {
          output,
          // The client's `strict` (OpenAI's default is false; the SDK's would be true).
          providerOptions: {
            openai: { strictJsonSchema: strictOf(request.responseFormat) },
            openaiCompatible: { strictJsonSchema: strictOf(request.responseFormat) },
          },
        }),
    maxOutputTokens: request.maxOutputTokens,
    abortSignal: request.signal,
    maxRetries: 0,
  };
  if (request.onTextDelta === undefined) {
    let answer: Awaited<ReturnType<typeof generateText>>;
    try {
      answer = await generateText(call);
    } catch (error) {
      request.signal.throwIfAborted();
      throw toProviderError(error);
    }
    return toResult(resultRequest(request), answer);
  }
  let failure: unknown;
  const result = streamText({
    ...call,
    // Every provider chunk as a part (`raw`) when someone watches the flow: a provider's
    // finish and usage chunks are signs of life, though they make no part of their own
    // until the stream ends.
    includeRawChunks: request.onProgress !== undefined,
    onError: ({ error }) => {
      failure = error;
    },
  });
  let text = '';
  let flowing = false;
  try {
    for await (const part of result.fullStream) {
      // From the first output on, every part is a sign of life (raw chunks included).
      if (!flowing && outputParts.has(part.type)) flowing = true;
      if (flowing) request.onProgress?.();
      if (part.type === 'raw') continue;
      if (part.type === 'text-delta') {
        text += part.text;
        request.onTextDelta(part.text);
      } else if (part.type === 'error') {
        failure = part.error;
      }
    }
  } catch (error) {
    // A stream broken mid-response (connection reset) throws here instead of an error part.
    failure = error;
  }
  request.signal.throwIfAborted();
  if (failure !== undefined) throw toProviderError(failure);
  const [toolCalls, finishReason, usage] = await Promise.all([
    result.toolCalls,
    result.finishReason,
    result.usage,
  ]);
  return toResult(resultRequest(request), {
    text,
    toolCalls,
    finishReason,
    usage: {
      inputTokens: usage.inputTokens,
      outputTokens: usage.outputTokens,
      cachedInputTokens: usage.inputTokenDetails?.cacheReadTokens ?? usage.cachedInputTokens,
    },
  });
}

function resultRequest(
  request: Prompt & {
    readonly model: LanguageModel;
    readonly promptTokens?: PromptTokens | undefined;
  },
): ResultRequest {
  return {
    messages: request.messages,
    tools: request.tools,
    responseFormat: request.responseFormat,
    modelId: typeof request.model === 'string' ? request.model : request.model.modelId,
    promptTokens: request.promptTokens,
  };
}
