import { randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { AppError } from '../domain/errors.ts';
import { parseBoundedJson } from '../domain/json-depth.ts';
import type { MessageV1, ModelResultV1, ToolDescriptionV1 } from '../plugin-api/index.ts';
import { type ProviderConfig, providerHttpError } from './ai-sdk-model.ts';
import { openAiCallSettings, toProviderToolName } from './call-settings.ts';
import type { ResponseFormat, Sampling, ToolChoice } from './model-gateway.ts';
import { toResult } from './model-result.ts';
import { readChatStream, type StreamedAnswer } from './openai-chat-stream.ts';
import type { PromptTokens } from './token-count.ts';
import { toolResultText } from './tool-result-text.ts';

/**
 * Connections to a provider: kept alive, no cap on how many are open at once (a streamed answer
 * holds its connection for as long as the model writes; a route's `maxConcurrency` is the cap),
 * and up to 256 idle ones kept for reuse.
 */
const agentOptions = { keepAlive: true, maxFreeSockets: 256 } as const;

/** Largest provider answer read, in bytes (a chat completion is a few kilobytes). */
const maxAnswerBytes = 32 * 1024 * 1024;

/** A non-streaming chat completion on an OpenAI-compatible endpoint. */
export type OpenAIChatCaller = (request: {
  readonly modelId: string;
  readonly messages: readonly MessageV1[];
  readonly tools: readonly ToolDescriptionV1[];
  readonly maxOutputTokens: number;
  readonly signal: AbortSignal;
  readonly responseFormat?: ResponseFormat | undefined;
  readonly sampling?: Sampling | undefined;
  readonly toolChoice?: ToolChoice | undefined;
  /** Streams the answer (SSE), handing each text delta over as it arrives. */
  readonly onTextDelta?: ((delta: string) => void) | undefined;
  /** The prompt's counts made already, for usage the provider leaves out. */
  readonly promptTokens?: PromptTokens | undefined;
  /** Streaming: told of every chunk from the first output (text, tool-call fragments, reasoning) on. */
  readonly onProgress?: (() => void) | undefined;
}) => Promise<ModelResultV1>;

/**
 * Calls `POST {baseUrl}/chat/completions` of an OpenAI-compatible provider directly, for
 * calls whose caller does not stream (the OpenAI-compatible API's non-streaming requests): one
 * JSON request on a keep-alive `node:http` agent, one JSON answer. It sends what the AI SDK's
 * openai-compatible provider sends and maps the answer and its failures the same way
 * (`toResult`, `providerHttpError`), without the SDK's web streams, `fetch` and response
 * validation, which were a quarter of the gateway's CPU per request (bench/RESULTS.md, gateway).
 * Streaming calls still go through the AI SDK.
 */
export function createOpenAIChatCaller(config: ProviderConfig): OpenAIChatCaller {
  const base = new URL(
    `${(config.baseUrl ?? 'http://127.0.0.1:11434/v1').replace(/\/+$/, '')}/chat/completions`,
  );
  const secure = base.protocol === 'https:';
  const agent = secure ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
  const headers: Record<string, string> = {
    ...config.headers,
    'content-type': 'application/json',
    accept: 'application/json',
    ...(config.apiKey === undefined ? {} : { authorization: `Bearer ${config.apiKey}` }),
  };
  /** The streaming call: SSE read as it arrives (see openai-chat-stream.ts). */
  async function streamed(
    request: Parameters<OpenAIChatCaller>[0],
    onTextDelta: (delta: string) => void,
  ): Promise<ModelResultV1> {
    const body = JSON.stringify({
      ...chatRequest(request),
      stream: true,
      stream_options: { include_usage: true },
    });
    let incoming: http.IncomingMessage;
    try {
      incoming = await open({
        url: base,
        secure,
        agent,
        headers: { ...headers, accept: 'text/event-stream' },
        body,
        signal: request.signal,
      });
    } catch (error) {
      request.signal.throwIfAborted();
      throw new AppError('provider_unavailable', 'The model provider could not be reached.', {
        cause: error,
        details: { failure: 'server_error' },
      });
    }
    const status = incoming.statusCode ?? 0;
    if (status < 200 || status >= 300) {
      const text = await readAll(incoming).catch(() => '');
      throw providerHttpError({ status, body: text, headers: headersOf(incoming) });
    }
    let answer: StreamedAnswer;
    try {
      answer = await readChatStream(incoming, onTextDelta, request.onProgress);
    } catch (error) {
      request.signal.throwIfAborted();
      throw error;
    }
    return toResult(request, {
      text: answer.text,
      toolCalls: answer.toolCalls.map((call) => ({
        toolCallId: call.id ?? `call_${randomUUID()}`,
        toolName: call.name,
        input: parseArguments(call.arguments),
      })),
      finishReason: finishReasons[answer.finishReason ?? ''] ?? 'other',
      usage: {
        inputTokens: answer.usage.inputTokens,
        outputTokens: answer.usage.outputTokens,
        cachedInputTokens: answer.usage.cachedInputTokens,
      },
    });
  }
  return async (request) => {
    if (request.onTextDelta !== undefined) return streamed(request, request.onTextDelta);
    const body = JSON.stringify(chatRequest(request));
    let answer: { status: number; headers: Record<string, string>; text: string };
    try {
      answer = await post({ url: base, secure, agent, headers, body, signal: request.signal });
    } catch (error) {
      request.signal.throwIfAborted();
      throw new AppError('provider_unavailable', 'The model provider could not be reached.', {
        cause: error,
        details: { failure: 'server_error' },
      });
    }
    if (answer.status < 200 || answer.status >= 300)
      throw providerHttpError({
        status: answer.status,
        body: answer.text,
        headers: answer.headers,
      });
    let parsed: ChatCompletion;
    try {
      parsed = JSON.parse(answer.text) as ChatCompletion;
    } catch (error) {
      throw new AppError('provider_unavailable', 'The model provider sent an invalid answer.', {
        cause: error,
        details: { failure: 'server_error' },
      });
    }
    const choice = parsed.choices?.[0];
    if (choice?.message === undefined)
      throw new AppError('provider_unavailable', 'The model provider sent no choice.', {
        details: { failure: 'server_error' },
      });
    return toResult(request, {
      text: choice.message.content ?? '',
      toolCalls: (choice.message.tool_calls ?? []).map((call) => ({
        toolCallId: call.id ?? `call_${randomUUID()}`,
        toolName: call.function.name,
        input: parseArguments(call.function.arguments),
      })),
      finishReason: finishReasons[choice.finish_reason ?? ''] ?? 'other',
      usage: {
        inputTokens: parsed.usage?.prompt_tokens,
        outputTokens: parsed.usage?.completion_tokens,
        cachedInputTokens: parsed.usage?.prompt_tokens_details?.cached_tokens,
      },
    });
  };
}

interface ChatCompletion {
  readonly choices?: readonly {
    readonly message?: {
      readonly content?: string | null;
      readonly tool_calls?: readonly {
        readonly id?: string;
        readonly function: { readonly name: string; readonly arguments: string };
      }[];
    };
    readonly finish_reason?: string | null;
  }[];
  readonly usage?: {
    readonly prompt_tokens?: number;
    readonly completion_tokens?: number;
    readonly prompt_tokens_details?: { readonly cached_tokens?: number } | null;
  };
}

const finishReasons: Record<string, string> = {
  stop: 'stop',
  length: 'length',
  tool_calls: 'tool-calls',
  function_call: 'tool-calls',
  content_filter: 'content-filter',
};

/** Tool arguments as the model wrote them: JSON, or the raw text for the tool gate to refuse. */
function parseArguments(text: string): unknown {
  try {
    return parseBoundedJson(text === '' ? '{}' : text);
  } catch {
    return text;
  }
}

/** The chat completion request the AI SDK's openai-compatible provider would send. */
function chatRequest(request: Parameters<OpenAIChatCaller>[0]): Record<string, unknown> {
  const system = request.messages
    .filter((message) => message.role === 'system')
    .flatMap((message) =>
      message.content.flatMap((part) => (part.type === 'text' ? [part.text] : [])),
    )
    .join('\n\n');
  const messages: Record<string, unknown>[] =
    system.length === 0 ? [] : [{ role: 'system', content: system }];
  for (const message of request.messages) {
    if (message.role !== 'system') messages.push(...toChatMessages(message));
  }
  const format = request.responseFormat;
  return {
    model: request.modelId,
    messages,
    max_tokens: request.maxOutputTokens,
    ...openAiCallSettings(request),
    ...(request.tools.length === 0
      ? {}
      : {
          tools: request.tools.map((tool) => ({
            type: 'function',
            function: {
              name: toProviderToolName(tool.name),
              description: tool.description,
              parameters: tool.inputSchema,
            },
          })),
        }),
    ...(format === undefined || format.type === 'text'
      ? {}
      : {
          response_format:
            format.schema === undefined
              ? { type: 'json_object' }
              : {
                  type: 'json_schema',
                  json_schema: {
                    name: format.name ?? 'response',
                    ...(format.description === undefined
                      ? {}
                      : { description: format.description }),
                    schema: format.schema,
                    strict: format.strict === true,
                  },
                },
        }),
  };
}

function toChatMessages(message: MessageV1): Record<string, unknown>[] {
  const text = message.content
    .flatMap((part) => (part.type === 'text' ? [part.text] : []))
    .join('');
  if (message.role === 'user') return [{ role: 'user', content: text }];
  if (message.role === 'assistant') {
    const calls = message.content.flatMap((part) =>
      part.type === 'tool-call'
        ? [
            {
              id: part.toolCallId,
              type: 'function',
              function: {
                name: toProviderToolName(part.toolName),
                arguments: JSON.stringify(part.input ?? {}),
              },
            },
          ]
        : [],
    );
    return [
      { role: 'assistant', content: text, ...(calls.length === 0 ? {} : { tool_calls: calls }) },
    ];
  }
  return message.content.flatMap((part) =>
    part.type === 'tool-result'
      ? [
          {
            role: 'tool',
            tool_call_id: part.toolCallId,
            content: toolResultText(part.output),
          },
        ]
      : [],
  );
}

/** A response's single-valued headers. */
function headersOf(incoming: http.IncomingMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(incoming.headers))
    if (typeof value === 'string') headers[name] = value;
  return headers;
}

/**
 * The rest of a response's body as text; fails when it is larger than {@link maxAnswerBytes}
 * or the connection drops before its end.
 */
function readAll(incoming: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    incoming.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxAnswerBytes) {
        incoming.destroy(new Error('the provider answer is too large'));
        return;
      }
      chunks.push(chunk);
    });
    incoming.on('error', reject);
    incoming.on('close', () => {
      // A connection that dropped mid-answer (after 'end' this does nothing).
      if (!incoming.complete) reject(new Error('the provider closed the answer early'));
    });
    incoming.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

/** One POST; resolves with the response once its headers are in (the body is the caller's). */
function open(options: {
  readonly url: URL;
  readonly secure: boolean;
  readonly agent: http.Agent;
  readonly headers: Record<string, string>;
  readonly body: string;
  readonly signal: AbortSignal;
}): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const send = options.secure ? https.request : http.request;
    const outgoing = send(
      options.url,
      {
        method: 'POST',
        agent: options.agent,
        headers: { ...options.headers, 'content-length': String(Buffer.byteLength(options.body)) },
        signal: options.signal,
      },
      resolve,
    );
    outgoing.on('error', reject);
    outgoing.end(options.body);
  });
}

/** One POST; resolves with the whole answer (up to {@link maxAnswerBytes}). */
async function post(
  options: Parameters<typeof open>[0],
): Promise<{ status: number; headers: Record<string, string>; text: string }> {
  const incoming = await open(options);
  const text = await readAll(incoming);
  return { status: incoming.statusCode ?? 0, headers: headersOf(incoming), text };
}
