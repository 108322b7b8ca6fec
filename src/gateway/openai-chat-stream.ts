import type { IncomingMessage } from 'node:http';
import { AppError } from '../domain/errors.ts';

/** What a streamed chat completion added up to. */
export interface StreamedAnswer {
  readonly text: string;
  readonly toolCalls: readonly { id: string | undefined; name: string; arguments: string }[];
  readonly finishReason: string | undefined;
  readonly usage: {
    readonly inputTokens?: number;
    readonly outputTokens?: number;
    readonly cachedInputTokens?: number;
  };
}

/** One `chat.completion.chunk` as far as it is read here. */
interface Chunk {
  readonly error?: unknown;
  readonly choices?: readonly {
    readonly delta?: {
      readonly content?: string | null;
      readonly tool_calls?: readonly {
        readonly index?: number;
        readonly id?: string;
        readonly function?: { readonly name?: string; readonly arguments?: string };
      }[];
    };
    readonly finish_reason?: string | null;
  }[];
  readonly usage?: {
    readonly prompt_tokens?: number;
    readonly completion_tokens?: number;
    readonly prompt_tokens_details?: { readonly cached_tokens?: number } | null;
  } | null;
}

/**
 * Whether a chunk's delta carries output: anything but its role (text, tool-call fragments, a
 * reasoning model's `reasoning_content`), so a role-only first chunk, which some servers send
 * before the model has produced anything, does not count as the first token.
 */
function carriesOutput(delta: object | undefined): boolean {
  if (delta === undefined || delta === null) return false;
  return Object.entries(delta).some(
    ([key, value]) =>
      key !== 'role' &&
      ((typeof value === 'string' && value.length > 0) ||
        (Array.isArray(value) && value.length > 0)),
  );
}

/** Largest single SSE line accepted (a chunk is a few hundred bytes). */
const maxLineBytes = 1024 * 1024;

function brokenStream(message: string, cause?: unknown): AppError {
  return new AppError('provider_unavailable', message, {
    cause,
    details: { failure: 'server_error' },
  });
}

/**
 * Reads an OpenAI-compatible streaming answer (server-sent `chat.completion.chunk` events up to
 * `data: [DONE]`) from `incoming`: text deltas go to `onTextDelta` as they arrive, tool-call
 * fragments are put together by index, and the finish reason and usage (with
 * `stream_options.include_usage`) are kept; `onProgress` is told of every chunk from the first
 * that carries output (see {@link carriesOutput}) on. A chunk that is not JSON, an `error` chunk, an
 * over-long line or a connection that drops before the end fail the call as
 * `provider_unavailable`, as the AI SDK's stream does.
 */
export function readChatStream(
  incoming: IncomingMessage,
  onTextDelta: (delta: string) => void,
  onProgress?: () => void,
): Promise<StreamedAnswer> {
  return new Promise((resolve, reject) => {
    let text = '';
    let finishReason: string | undefined;
    let usage: StreamedAnswer['usage'] = {};
    const calls: { id: string | undefined; name: string; arguments: string }[] = [];
    /** Whether output began (see {@link carriesOutput}). */
    let flowing = false;
    let pending = '';
    let settled = false;
    const fail = (error: AppError) => {
      if (settled) return;
      settled = true;
      incoming.destroy();
      reject(error);
    };
    const finish = () => {
      if (settled) return;
      settled = true;
      resolve({ text, toolCalls: calls, finishReason, usage });
    };
    const take = (payload: string): boolean => {
      if (payload === '[DONE]') {
        if (flowing) onProgress?.();
        return true;
      }
      let chunk: Chunk;
      try {
        chunk = JSON.parse(payload) as Chunk;
      } catch (error) {
        fail(brokenStream('The model provider sent an invalid stream chunk.', error));
        return true;
      }
      if (chunk.error !== undefined && chunk.error !== null) {
        fail(brokenStream('The model provider reported an error mid-stream.'));
        return true;
      }
      if (chunk.usage != null)
        usage = {
          ...(chunk.usage.prompt_tokens === undefined
            ? {}
            : { inputTokens: chunk.usage.prompt_tokens }),
          ...(chunk.usage.completion_tokens === undefined
            ? {}
            : { outputTokens: chunk.usage.completion_tokens }),
          ...(chunk.usage.prompt_tokens_details?.cached_tokens === undefined
            ? {}
            : { cachedInputTokens: chunk.usage.prompt_tokens_details.cached_tokens }),
        };
      const choice = chunk.choices?.[0];
      if (!flowing && carriesOutput(choice?.delta)) flowing = true;
      // Once output began every chunk is a sign of life (the finish and usage chunks too).
      if (flowing) onProgress?.();
      if (choice === undefined) return false;
      if (choice.finish_reason != null) finishReason = choice.finish_reason;
      const content = choice.delta?.content;
      if (typeof content === 'string' && content.length > 0) {
        text += content;
        onTextDelta(content);
      }
      for (const fragment of choice.delta?.tool_calls ?? []) {
        const index = fragment.index ?? calls.length;
        const call = calls[index] ?? { id: undefined, name: '', arguments: '' };
        calls[index] = call;
        if (fragment.id !== undefined) call.id = fragment.id;
        if (fragment.function?.name !== undefined) call.name += fragment.function.name;
        if (fragment.function?.arguments !== undefined)
          call.arguments += fragment.function.arguments;
      }
      return false;
    };
    incoming.setEncoding('utf8');
    incoming.on('data', (data: string) => {
      if (settled) return;
      pending += data;
      let newline = pending.indexOf('\n');
      while (newline >= 0) {
        const line = pending.slice(0, newline).replace(/\r$/, '');
        pending = pending.slice(newline + 1);
        if (line.startsWith('data:') && take(line.slice(5).trimStart())) {
          if (!settled) finish();
          incoming.resume();
          return;
        }
        newline = pending.indexOf('\n');
      }
      if (pending.length > maxLineBytes)
        fail(brokenStream('The model provider sent an over-long stream line.'));
    });
    incoming.on('error', (error) => fail(brokenStream('The model provider stream broke.', error)));
    incoming.on('close', () => {
      if (settled) return;
      // A stream that ended cleanly without [DONE] is complete; one cut off is not.
      if (incoming.complete) {
        const line = pending.replace(/\r$/, '');
        if (line.startsWith('data:')) take(line.slice(5).trimStart());
        finish();
      } else {
        fail(brokenStream('The model provider closed the stream early.'));
      }
    });
  });
}
