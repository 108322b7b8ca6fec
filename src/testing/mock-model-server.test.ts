import { AuthenticationError, BadRequestError } from 'openai';
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { MockModelServer } from './index.ts';
import { createMockModelServer } from './index.ts';
import {
  clientFor,
  collect,
  hello,
  postChat,
  weatherTool,
  withServer,
} from './internal/openai-test-kit.ts';

let server: MockModelServer;

beforeAll(async () => {
  server = await createMockModelServer();
});

afterAll(async () => {
  await server.close();
});

beforeEach(() => {
  server.reset();
});

describe('createMockModelServer with the official openai client', () => {
  it('answers a plain completion with an echo and word-count usage', async () => {
    const completion = await clientFor(server).chat.completions.create({
      model: 'mock-model',
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'hello there' },
      ],
    });

    expect(completion.object).toBe('chat.completion');
    expect(completion.model).toBe('mock-model');
    expect(completion.id).toMatch(/^chatcmpl-/);
    expect(completion.choices[0]?.message).toMatchObject({
      role: 'assistant',
      content: 'echo: hello there',
    });
    expect(completion.choices[0]?.finish_reason).toBe('stop');
    expect(completion.usage).toEqual({ prompt_tokens: 4, completion_tokens: 3, total_tokens: 7 });
  });

  it('streams the role first, then one content delta per word, then usage', async () => {
    const stream = await clientFor(server).chat.completions.create({
      model: 'mock-model',
      messages: [{ role: 'user', content: 'one two three' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = await collect(stream);

    expect(chunks[0]?.choices[0]?.delta.role).toBe('assistant');
    const text = chunks.map((chunk) => chunk.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe('echo: one two three');
    expect(chunks.filter((chunk) => chunk.choices[0]?.delta.content)).toHaveLength(4);
    const finish = chunks.at(-2);
    expect(finish?.choices[0]?.finish_reason).toBe('stop');
    const usageChunk = chunks.at(-1);
    expect(usageChunk?.choices).toEqual([]);
    expect(usageChunk?.usage).toEqual({ prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 });
    expect(chunks.slice(0, -1).every((chunk) => chunk.usage === null)).toBe(true);
  });

  it('ends the event stream with data: [DONE] and sends usage only when asked', async () => {
    const withUsage = await postChat(server, {
      ...hello,
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(withUsage.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = (await withUsage.text()).split('\n\n').filter((event) => event !== '');
    expect(events.every((event) => event.startsWith('data: '))).toBe(true);
    expect(events.at(-1)).toBe('data: [DONE]');
    const usageEvent = JSON.parse(
      events.at(-2)?.slice('data: '.length) ?? '',
    ) as ChatCompletionChunk;
    expect(usageEvent.object).toBe('chat.completion.chunk');
    expect(usageEvent.usage?.total_tokens).toBe(5);

    const withoutUsage = await postChat(server, { ...hello, stream: true });
    const plain = (await withoutUsage.text()).split('\n\n').filter((event) => event !== '');
    expect(plain.at(-1)).toBe('data: [DONE]');
    expect(plain.some((event) => event.includes('"usage"'))).toBe(false);
  });

  it('makes the tool call a user message asks for', async () => {
    const completion = await clientFor(server).chat.completions.create({
      model: 'mock-model',
      messages: [{ role: 'user', content: 'please call get_weather {"city":"Oslo"}' }],
      tools: [weatherTool],
    });

    const choice = completion.choices[0];
    expect(choice?.finish_reason).toBe('tool_calls');
    expect(choice?.message.content).toBeNull();
    const call = choice?.message.tool_calls?.[0];
    expect(call?.type).toBe('function');
    expect(call?.id).toMatch(/^call_/);
    if (call?.type !== 'function') throw new Error('expected a function tool call');
    expect(call.function.name).toBe('get_weather');
    expect(JSON.parse(call.function.arguments)).toEqual({ city: 'Oslo' });
  });

  it('echoes instead of calling a tool that was not offered', async () => {
    const completion = await clientFor(server).chat.completions.create({
      model: 'mock-model',
      messages: [{ role: 'user', content: 'call get_weather {"city":"Oslo"}' }],
    });
    expect(completion.choices[0]?.message.content).toBe('echo: call get_weather {"city":"Oslo"}');
  });

  it('streams tool calls whose argument fragments reassemble by index', async () => {
    server.setScript([
      {
        toolCalls: [
          { name: 'get_weather', arguments: { city: 'Oslo', unit: 'celsius' } },
          { name: 'get_time', arguments: { zone: 'Europe/Oslo' }, id: 'call_fixed' },
        ],
      },
    ]);
    const stream = await clientFor(server).chat.completions.create({
      model: 'mock-model',
      messages: [{ role: 'user', content: 'weather and time' }],
      tools: [weatherTool],
      stream: true,
    });
    const chunks = await collect(stream);

    const calls = new Map<number, { id: string; name: string; arguments: string }>();
    for (const chunk of chunks) {
      for (const delta of chunk.choices[0]?.delta.tool_calls ?? []) {
        const current = calls.get(delta.index);
        if (current === undefined) {
          expect(delta.id).toBeDefined();
          expect(delta.type).toBe('function');
          calls.set(delta.index, {
            id: delta.id ?? '',
            name: delta.function?.name ?? '',
            arguments: delta.function?.arguments ?? '',
          });
        } else {
          expect(delta.id).toBeUndefined();
          current.arguments += delta.function?.arguments ?? '';
        }
      }
    }
    expect(calls.get(0)?.name).toBe('get_weather');
    expect(JSON.parse(calls.get(0)?.arguments ?? '')).toEqual({ city: 'Oslo', unit: 'celsius' });
    expect(calls.get(1)).toMatchObject({ id: 'call_fixed', name: 'get_time' });
    expect(JSON.parse(calls.get(1)?.arguments ?? '')).toEqual({ zone: 'Europe/Oslo' });
    expect(chunks.filter((chunk) => chunk.choices[0]?.delta.tool_calls).length).toBeGreaterThan(4);
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('tool_calls');
  });

  it('answers a tool result with what the tool said', async () => {
    const completion = await clientFor(server).chat.completions.create({
      model: 'mock-model',
      messages: [
        { role: 'user', content: 'call get_weather {"city":"Oslo"}' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: 'call_1',
              type: 'function',
              function: { name: 'get_weather', arguments: '{"city":"Oslo"}' },
            },
          ],
        },
        { role: 'tool', tool_call_id: 'call_1', content: 'sunny, 21 C' },
      ],
      tools: [weatherTool],
    });
    expect(completion.choices[0]?.message.content).toBe('tool said: sunny, 21 C');
  });

  it('checks the API key and records only the scheme of the authorization header', async () => {
    await withServer({ apiKey: 'sk-mock-secret' }, async (target) => {
      const wrong = await clientFor(target, { apiKey: 'sk-wrong' })
        .chat.completions.create(hello)
        .catch((caught: unknown) => caught);
      expect(wrong).toBeInstanceOf(AuthenticationError);
      expect((wrong as AuthenticationError).code).toBe('invalid_api_key');

      const missing = await fetch(`${target.url}/models`);
      expect(missing.status).toBe(401);
      const missingBody = (await missing.json()) as { error: { message: string; type: string } };
      expect(missingBody.error.type).toBe('invalid_request_error');

      const ok = await clientFor(target, { apiKey: 'sk-mock-secret' }).chat.completions.create(
        hello,
      );
      expect(ok.choices[0]?.message.content).toBe('echo: hello there');

      expect(target.calls.map((call) => call.authorization)).toEqual([
        { present: true, scheme: 'Bearer' },
        { present: false },
        { present: true, scheme: 'Bearer' },
      ]);
      expect(target.calls.every((call) => !('authorization' in call.headers))).toBe(true);
      const recorded = JSON.stringify(target.calls);
      expect(recorded).not.toContain('sk-mock-secret');
      expect(recorded).not.toContain('sk-wrong');
    });
  });

  it('replays a scripted queue in order and says when it runs out', async () => {
    server.setScript([{ text: 'first' }, { text: 'second reply', finishReason: 'length' }]);
    const client = clientFor(server);

    const first = await client.chat.completions.create(hello);
    const second = await client.chat.completions.create(hello);
    const third = await client.chat.completions.create(hello).catch((caught: unknown) => caught);

    expect(first.choices[0]?.message.content).toBe('first');
    expect(second.choices[0]?.message.content).toBe('second reply');
    expect(second.choices[0]?.finish_reason).toBe('length');
    expect(third).toBeInstanceOf(BadRequestError);
    expect((third as BadRequestError).code).toBe('mock_script_exhausted');
  });

  it('passes the parsed request to a script function', async () => {
    const seen: string[] = [];
    server.setScript((request) => {
      seen.push(`${request.chatIndex}:${request.model}:${request.toolNames.join(',')}`);
      return { text: `turn ${request.chatIndex}`, usage: { promptTokens: 100 } };
    });
    const client = clientFor(server);
    await client.chat.completions.create({ ...hello, tools: [weatherTool] });
    const second = await client.chat.completions.create(hello);

    expect(seen).toEqual(['0:mock-model:get_weather', '1:mock-model:']);
    expect(second.choices[0]?.message.content).toBe('turn 1');
    expect(second.usage).toEqual({ prompt_tokens: 100, completion_tokens: 2, total_tokens: 102 });
  });

  it('records every call with its parsed body, headers and outcome', async () => {
    const stream = await clientFor(server).chat.completions.create({
      model: 'mock-model',
      messages: [{ role: 'user', content: 'call get_weather {"city":"Oslo"}' }],
      tools: [weatherTool],
      stream: true,
      stream_options: { include_usage: true },
    });
    await collect(stream);
    await clientFor(server).models.list();

    const [chat, models] = server.calls;
    expect(chat).toMatchObject({
      method: 'POST',
      path: '/v1/chat/completions',
      outcome: 'completed',
      status: 200,
      body: {
        model: 'mock-model',
        stream: true,
        stream_options: { include_usage: true },
        tools: [{ type: 'function', function: { name: 'get_weather' } }],
      },
      reply: { toolCalls: [{ name: 'get_weather', arguments: { city: 'Oslo' } }] },
    });
    expect(chat?.headers['content-type']).toContain('application/json');
    expect(chat?.finishedAt).toBeGreaterThanOrEqual(chat?.startedAt ?? Number.POSITIVE_INFINITY);
    expect(models).toMatchObject({ method: 'GET', path: '/v1/models', body: undefined });
  });

  it('lists its models', async () => {
    await withServer({ models: ['small', 'large'] }, async (target) => {
      const page = await clientFor(target).models.list();
      expect(page.data.map((model) => model.id)).toEqual(['small', 'large']);
    });
  });

  it('rejects unknown paths, bad JSON and oversized bodies with OpenAI-shaped errors', async () => {
    await withServer({ maxBodyBytes: 64 }, async (target) => {
      const unknown = await fetch(`${target.url}/embeddings`, { method: 'POST', body: '{}' });
      expect(unknown.status).toBe(404);
      const badJson = await fetch(`${target.url}/chat/completions`, { method: 'POST', body: '{' });
      expect(badJson.status).toBe(400);
      const tooLarge = await postChat(target, { ...hello, padding: 'x'.repeat(200) });
      expect(tooLarge.status).toBe(413);
      const body = (await tooLarge.json()) as { error: { message: string } };
      expect(body.error.message).toContain('64 bytes');
    });
  });
});
