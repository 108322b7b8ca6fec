import { countWords } from './default-mock-reply.ts';
import type { MockFinishReason, MockReply } from './mock-model-types.ts';

/** A tool call with its id settled and its arguments serialized, as both wire forms need. */
export interface WireToolCall {
  readonly id: string;
  readonly name: string;
  readonly argumentsJson: string;
}

/** Everything that identifies one completion on the wire. */
export interface WireCompletion {
  readonly id: string;
  readonly model: string;
  /** Unix seconds. */
  readonly created: number;
  readonly text: string | undefined;
  readonly toolCalls: readonly WireToolCall[];
  readonly finishReason: MockFinishReason;
  readonly usage: WireUsage;
}

/** The `usage` object of the OpenAI API. */
export interface WireUsage {
  readonly prompt_tokens: number;
  readonly completion_tokens: number;
  readonly total_tokens: number;
  readonly prompt_tokens_details?: { readonly cached_tokens: number };
}

/** Inputs of {@link toWireCompletion}. */
export interface WireCompletionOptions {
  readonly reply: MockReply;
  readonly id: string;
  readonly model: string;
  readonly created: number;
  readonly promptWords: number;
  readonly nextToolCallId: () => string;
}

/** Characters per `arguments` fragment when a tool call streams. */
const argumentsFragmentLength = 8;

/** Settles defaults (finish reason, ids, usage) of a scripted reply. */
export function toWireCompletion(options: WireCompletionOptions): WireCompletion {
  const { reply } = options;
  const toolCalls = (reply.toolCalls ?? []).map(
    (call): WireToolCall => ({
      id: call.id ?? options.nextToolCallId(),
      name: call.name,
      argumentsJson:
        typeof call.arguments === 'string' ? call.arguments : JSON.stringify(call.arguments),
    }),
  );
  const completionWords =
    countWords(reply.text ?? '') +
    toolCalls.reduce((sum, call) => sum + countWords(`${call.name} ${call.argumentsJson}`), 0);
  const prompt = reply.usage?.promptTokens ?? options.promptWords;
  const completion = reply.usage?.completionTokens ?? completionWords;
  return {
    id: options.id,
    model: options.model,
    created: options.created,
    text: reply.text,
    toolCalls,
    finishReason: reply.finishReason ?? (toolCalls.length > 0 ? 'tool_calls' : 'stop'),
    usage: {
      prompt_tokens: prompt,
      completion_tokens: completion,
      total_tokens: prompt + completion,
      ...(reply.usage?.cachedTokens === undefined
        ? {}
        : { prompt_tokens_details: { cached_tokens: reply.usage.cachedTokens } }),
    },
  };
}

/** The non-streaming `chat.completion` response body. */
export function completionBody(completion: WireCompletion): Record<string, unknown> {
  const message: Record<string, unknown> = {
    role: 'assistant',
    content: completion.text ?? null,
    refusal: null,
    annotations: [],
  };
  if (completion.toolCalls.length > 0) {
    message['tool_calls'] = completion.toolCalls.map((call) => ({
      id: call.id,
      type: 'function',
      function: { name: call.name, arguments: call.argumentsJson },
    }));
  }
  return {
    id: completion.id,
    object: 'chat.completion',
    created: completion.created,
    model: completion.model,
    choices: [{ index: 0, message, logprobs: null, finish_reason: completion.finishReason }],
    usage: completion.usage,
    system_fingerprint: 'fp_mock',
  };
}

/**
 * The `chat.completion.chunk` objects of a streamed completion, lazily and in order: the role delta, one
 * content delta per word (with its leading whitespace), per tool call a delta with id, type and
 * name then `arguments` fragments, the finish chunk and, when `includeUsage`, the usage chunk
 * with empty `choices`. Every chunk carries `usage: null` before that one, as OpenAI's do.
 */
export function* completionChunks(
  completion: WireCompletion,
  includeUsage: boolean,
): Generator<Record<string, unknown>, void, undefined> {
  const header = {
    id: completion.id,
    object: 'chat.completion.chunk',
    created: completion.created,
    model: completion.model,
    system_fingerprint: 'fp_mock',
  };
  const chunk = (
    delta: Record<string, unknown>,
    finishReason: MockFinishReason | null = null,
  ): Record<string, unknown> => ({
    ...header,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
    ...(includeUsage ? { usage: null } : {}),
  });
  yield chunk({ role: 'assistant', content: '', refusal: null });
  for (const piece of completion.text?.matchAll(/\s*\S+|\s+/g) ?? []) {
    yield chunk({ content: piece[0] });
  }
  for (const [index, call] of completion.toolCalls.entries()) {
    yield chunk({
      tool_calls: [
        { index, id: call.id, type: 'function', function: { name: call.name, arguments: '' } },
      ],
    });
    for (const fragment of splitEvery(call.argumentsJson, argumentsFragmentLength)) {
      yield chunk({ tool_calls: [{ index, function: { arguments: fragment } }] });
    }
  }
  yield chunk({}, completion.finishReason);
  if (includeUsage) yield { ...header, choices: [], usage: completion.usage };
}

function* splitEvery(text: string, length: number): Generator<string, void, undefined> {
  for (let start = 0; start < text.length; start += length) {
    yield text.slice(start, start + length);
  }
}
