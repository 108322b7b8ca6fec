import type { ModelResultV1 } from '../../plugin-api/index.ts';
import { toFinishReason, toToolCalls, toUsage } from './chat-messages.ts';
import { toOpenAiError } from './openai-error.ts';

/** What every chunk of one completion repeats. */
export interface ChunkIdentity {
  readonly id: string;
  readonly created: number;
  readonly model: string;
}

/** Options for {@link streamChatCompletion}. */
export interface StreamChatCompletionOptions {
  readonly identity: ChunkIdentity;
  readonly includeUsage: boolean;
  /** Starts the call; deltas go to `onTextDelta`. */
  readonly start: (onTextDelta: (delta: string) => void) => Promise<ModelResultV1>;
  /** Aborts the call: the client went away. */
  readonly abort: () => void;
  readonly headers?: Readonly<Record<string, string>>;
}

const encoder = new TextEncoder();

/**
 * Streams a completion as OpenAI `chat.completion.chunk` server-sent events. The response
 * starts only with the first text delta (or the finished result), so a failure before any
 * output rejects the returned promise and the client gets a proper status code; a failure
 * after the first byte is written as one `{"error": …}` event and the stream ends (official
 * clients raise it). The role chunk comes first, then content deltas, then tool calls, the
 * chunk with `finish_reason`, a usage chunk when asked for, and `data: [DONE]`.
 */
export async function streamChatCompletion(
  options: StreamChatCompletionOptions,
): Promise<Response> {
  const { identity, includeUsage } = options;
  const chunk = (choices: readonly unknown[], usage?: unknown) =>
    `data: ${JSON.stringify({
      id: identity.id,
      object: 'chat.completion.chunk',
      created: identity.created,
      model: identity.model,
      choices,
      ...(includeUsage ? { usage: usage ?? null } : {}),
    })}\n\n`;
  const delta = (value: Record<string, unknown>, finishReason: string | null = null) =>
    chunk([{ index: 0, delta: value, finish_reason: finishReason, logprobs: null }]);

  const pending: string[] = [chunk([{ index: 0, delta: { role: 'assistant', content: '' } }])];
  let wake: (() => void) | undefined;
  let started = false;
  let markStarted: () => void = () => undefined;
  const firstOutput = new Promise<void>((resolve) => {
    markStarted = resolve;
  });
  const push = (text: string) => {
    pending.push(text);
    wake?.();
  };
  const call = options.start((text) => {
    if (text.length === 0) return;
    push(delta({ content: text }));
    started = true;
    markStarted();
  });
  let outcome: { result: ModelResultV1 } | { error: unknown } | undefined;
  const settled = call.then(
    (result) => {
      outcome = { result };
    },
    (error: unknown) => {
      outcome = { error };
    },
  );
  await Promise.race([firstOutput, settled]);
  if (!started && outcome !== undefined && 'error' in outcome) throw outcome.error;

  let closed = false;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      while (pending.length === 0 && outcome === undefined) {
        await Promise.race([
          settled,
          new Promise<void>((resolve) => {
            wake = resolve;
          }),
        ]);
        wake = undefined;
      }
      if (pending.length > 0) {
        controller.enqueue(encoder.encode(pending.splice(0).join('')));
        return;
      }
      if (closed) return;
      closed = true;
      if (outcome !== undefined && 'result' in outcome) {
        const { result } = outcome;
        let tail = '';
        toToolCalls(result).forEach((toolCall, index) => {
          tail += delta({ tool_calls: [{ index, ...toolCall }] });
        });
        tail += delta({}, toFinishReason(result.finishReason));
        if (includeUsage) tail += chunk([], toUsage(result.usage));
        tail += 'data: [DONE]\n\n';
        controller.enqueue(encoder.encode(tail));
      } else if (outcome !== undefined) {
        const error = toOpenAiError(outcome.error);
        controller.enqueue(encoder.encode(`data: ${JSON.stringify(error.body)}\n\n`));
      }
      controller.close();
    },
    cancel() {
      options.abort();
    },
  });
  return new Response(body, {
    status: 200,
    headers: {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
      ...options.headers,
    },
  });
}
