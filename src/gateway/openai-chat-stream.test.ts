import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AppError } from '../domain/errors.ts';
import type { MessageV1 } from '../plugin-api/index.ts';
import { createMockModelServer, type MockModelServer } from '../testing/index.ts';
import { createOpenAIChatCaller, type OpenAIChatCaller } from './openai-chat.ts';

/** The direct caller's streaming path against the mock provider's real SSE, faults included. */
let server: MockModelServer;
let call: OpenAIChatCaller;

beforeAll(async () => {
  server = await createMockModelServer();
  call = createOpenAIChatCaller({ type: 'openai-compatible', baseUrl: server.url, apiKey: 'sk-s' });
});

afterAll(async () => {
  await server.close();
});

beforeEach(() => {
  server.reset();
});

const user = (text: string): MessageV1 => ({
  role: 'user',
  content: [{ type: 'text', text }],
  provenance: 'user',
});

const lookup = {
  name: 'lookup',
  description: 'Looks a word up.',
  inputSchema: { type: 'object', properties: { word: { type: 'string' } } },
};

function streamed(text: string, deltas: string[], signal = new AbortController().signal) {
  return call({
    modelId: 'mock-model',
    messages: [user(text)],
    tools: [lookup],
    maxOutputTokens: 64,
    signal,
    onTextDelta: (delta) => deltas.push(delta),
  });
}

async function failure(promise: Promise<unknown>): Promise<AppError> {
  const caught = await promise.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(caught).toBeInstanceOf(AppError);
  return caught as AppError;
}

describe('the direct caller, streaming', () => {
  it('hands text over delta by delta and reports the provider’s usage', async () => {
    server.setScript([
      { text: 'one two three four', usage: { promptTokens: 9, completionTokens: 4 } },
    ]);
    const deltas: string[] = [];
    const result = await streamed('count', deltas);
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.join('')).toBe('one two three four');
    expect(result).toMatchObject({
      text: 'one two three four',
      toolCalls: [],
      finishReason: 'stop',
      usage: { inputTokens: 9, outputTokens: 4, estimated: false },
    });
    const body = server.calls[0]?.body as Record<string, unknown>;
    expect(body['stream']).toBe(true);
    expect(body['stream_options']).toEqual({ include_usage: true });
  });

  it('puts streamed tool calls together', async () => {
    server.setScript([
      {
        toolCalls: [
          { id: 'call_a', name: 'lookup', arguments: { word: 'brigade' } },
          { id: 'call_b', name: 'lookup', arguments: { word: 'harness' } },
        ],
      },
    ]);
    const result = await streamed('look two words up', []);
    expect(result.finishReason).toBe('tool-calls');
    expect(result.toolCalls).toEqual([
      { toolCallId: 'call_a', toolName: 'lookup', input: { word: 'brigade' } },
      { toolCallId: 'call_b', toolName: 'lookup', input: { word: 'harness' } },
    ]);
  });

  it('fails a malformed chunk as provider_unavailable (server_error)', async () => {
    server.setFaults({ malformedChunk: true });
    const error = await failure(streamed('hello', []));
    expect(error.code).toBe('provider_unavailable');
    expect(error.details).toMatchObject({ failure: 'server_error' });
  });

  it('fails a stream cut off mid-way, after the deltas it delivered', async () => {
    server.setScript([{ text: 'a b c d e f g h i j' }]);
    server.setFaults({ resetAfterChunks: 3 });
    const deltas: string[] = [];
    const error = await failure(streamed('hello', deltas));
    expect(error.code).toBe('provider_unavailable');
    expect(deltas.join('').length).toBeGreaterThan(0);
    expect(deltas.join('')).not.toBe('a b c d e f g h i j');
  });

  it('maps an error status before the stream to the provider error, Retry-After included', async () => {
    server.setFaults({ status: 429, retryAfterSeconds: 7 });
    const error = await failure(streamed('hello', []));
    expect(error.code).toBe('provider_rate_limited');
    expect(error.details).toMatchObject({ failure: 'rate_limited', retryAfterSeconds: 7 });
  });

  it('stops at once when aborted mid-stream', async () => {
    server.setScript([{ text: 'a b c d e f g h i j', fault: { tokenDelayMs: 100 } }]);
    const controller = new AbortController();
    const deltas: string[] = [];
    const started = Date.now();
    const pending = streamed('slow', deltas, controller.signal);
    setTimeout(() => controller.abort(new Error('cancelled')), 150);
    await expect(pending).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(800);
    expect(deltas.join('')).not.toBe('a b c d e f g h i j');
  });
});
