import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AppError } from '../domain/errors.ts';
import type { MessageV1 } from '../plugin-api/index.ts';
import { createMockModelServer, type MockModelServer } from '../testing/index.ts';
import { createOpenAIChatCaller, type OpenAIChatCaller } from './openai-chat.ts';

let server: MockModelServer;
let call: OpenAIChatCaller;

beforeAll(async () => {
  server = await createMockModelServer();
  call = createOpenAIChatCaller({
    type: 'openai-compatible',
    baseUrl: server.url,
    apiKey: 'sk-test-direct',
  });
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
  name: 'mcp:docs:lookup',
  description: 'Looks a word up.',
  inputSchema: { type: 'object', properties: { word: { type: 'string' } } },
};

async function failure(promise: Promise<unknown>): Promise<AppError> {
  const caught = await promise.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(caught).toBeInstanceOf(AppError);
  return caught as AppError;
}

describe('the direct OpenAI-compatible caller', () => {
  it('sends the chat request the provider expects and maps the answer, tool names included', async () => {
    server.setScript([
      {
        toolCalls: [{ id: 'call_1', name: 'mcp__docs__lookup', arguments: { word: 'brigade' } }],
        usage: { promptTokens: 11, completionTokens: 4 },
      },
    ]);
    const result = await call({
      modelId: 'mock-model',
      messages: [
        { role: 'system', content: [{ type: 'text', text: 'Be brief.' }], provenance: 'system' },
        user('what is a brigade?'),
      ],
      tools: [lookup],
      maxOutputTokens: 64,
      signal: new AbortController().signal,
    });
    expect(result).toEqual({
      text: '',
      toolCalls: [
        { toolCallId: 'call_1', toolName: 'mcp:docs:lookup', input: { word: 'brigade' } },
      ],
      finishReason: 'tool-calls',
      usage: { inputTokens: 11, outputTokens: 4, estimated: false },
    });
    const sent = server.calls[0];
    expect(sent?.authorization).toMatchObject({ scheme: 'Bearer' });
    expect(sent?.body).toMatchObject({
      model: 'mock-model',
      max_tokens: 64,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'what is a brigade?' },
      ],
      tools: [{ type: 'function', function: { name: 'mcp__docs__lookup' } }],
    });
    expect(JSON.stringify(sent?.body)).not.toContain('"stream":true');
  });

  it('sends earlier tool calls and their results back in the provider’s shape', async () => {
    server.setScript([{ text: 'A crew.' }]);
    await call({
      modelId: 'mock-model',
      messages: [
        user('look it up'),
        {
          role: 'assistant',
          content: [
            {
              type: 'tool-call',
              toolCallId: 'c1',
              toolName: 'mcp:docs:lookup',
              input: { word: 'x' },
            },
          ],
          provenance: 'assistant',
        },
        {
          role: 'tool',
          content: [
            {
              type: 'tool-result',
              toolCallId: 'c1',
              toolName: 'mcp:docs:lookup',
              output: { a: 1 },
            },
          ],
          provenance: 'tool:mcp:docs:lookup',
        },
      ],
      tools: [lookup],
      maxOutputTokens: 64,
      signal: new AbortController().signal,
    });
    const sent = server.calls[0]?.body as { messages: unknown[] };
    expect(sent.messages.slice(1)).toEqual([
      {
        role: 'assistant',
        content: '',
        tool_calls: [
          {
            id: 'c1',
            type: 'function',
            function: { name: 'mcp__docs__lookup', arguments: '{"word":"x"}' },
          },
        ],
      },
      { role: 'tool', tool_call_id: 'c1', content: '{"a":1}' },
    ]);
  });

  it('maps 429 and 5xx with Retry-After and a reset connection to what the router reacts to', async () => {
    const request = {
      modelId: 'mock-model',
      messages: [user('hi')],
      tools: [],
      maxOutputTokens: 16,
      signal: new AbortController().signal,
    };
    server.setFaults({ status: 429, retryAfterSeconds: 7 });
    const limited = await failure(call(request));
    expect(limited.code).toBe('provider_rate_limited');
    expect(limited.details).toMatchObject({ failure: 'rate_limited', retryAfterSeconds: 7 });
    server.setFaults({ status: 503 });
    expect((await failure(call(request))).details).toMatchObject({ failure: 'server_error' });
    server.setFaults({ status: 503, retryAfterMs: 1_500 });
    expect((await failure(call(request))).details).toMatchObject({
      failure: 'server_error',
      retryAfterSeconds: 1.5,
    });
    server.setFaults({ reset: true });
    const reset = await failure(call(request));
    expect(reset.code).toBe('provider_unavailable');
    // Nothing of the request (the key above all) is in what the caller is told.
    expect(JSON.stringify([limited.message, reset.message])).not.toContain('sk-test-direct');
  });

  it('stops at once when its signal aborts, with the signal’s reason', async () => {
    server.setFaults({ hang: true });
    const controller = new AbortController();
    const started = Date.now();
    const pending = call({
      modelId: 'mock-model',
      messages: [user('hi')],
      tools: [],
      maxOutputTokens: 16,
      signal: controller.signal,
    });
    setTimeout(() => controller.abort('timeout'), 50);
    await expect(pending).rejects.toBe('timeout');
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});

/** A streamed call (SSE, read by openai-chat-stream.ts); deltas are collected in `deltas`. */
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
          { id: 'call_a', name: 'mcp__docs__lookup', arguments: { word: 'brigade' } },
          { id: 'call_b', name: 'mcp__docs__lookup', arguments: { word: 'harness' } },
        ],
      },
    ]);
    const result = await streamed('look two words up', []);
    expect(result.finishReason).toBe('tool-calls');
    expect(result.toolCalls).toEqual([
      { toolCallId: 'call_a', toolName: 'mcp:docs:lookup', input: { word: 'brigade' } },
      { toolCallId: 'call_b', toolName: 'mcp:docs:lookup', input: { word: 'harness' } },
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
