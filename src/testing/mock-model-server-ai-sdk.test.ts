import { createOpenAI } from '@ai-sdk/openai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { generateText, jsonSchema, streamText, tool } from 'ai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { MockModelServer } from './index.ts';
import { createMockModelServer } from './index.ts';

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

describe('createMockModelServer with the AI SDK', () => {
  const compatibleModel = () =>
    createOpenAICompatible({
      name: 'mock',
      baseURL: server.url,
      apiKey: 'test-key',
      includeUsage: true,
    }).chatModel('mock-model');

  it('serves generateText through @ai-sdk/openai-compatible', async () => {
    const result = await generateText({
      model: compatibleModel(),
      prompt: 'hello there',
      maxRetries: 0,
    });
    expect(result.text).toBe('echo: hello there');
    expect(result.finishReason).toBe('stop');
    expect(result.usage.inputTokens).toBe(2);
    expect(result.usage.outputTokens).toBe(3);
  });

  it('serves streamText with usage through @ai-sdk/openai-compatible', async () => {
    const result = streamText({ model: compatibleModel(), prompt: 'one two three', maxRetries: 0 });
    expect(await result.text).toBe('echo: one two three');
    expect((await result.usage).totalTokens).toBe(7);
    expect(server.calls[0]?.body).toMatchObject({ stream_options: { include_usage: true } });
  });

  it('streams a tool call through @ai-sdk/openai-compatible', async () => {
    const result = streamText({
      model: compatibleModel(),
      prompt: 'call get_weather {"city":"Oslo"}',
      tools: {
        get_weather: tool({
          description: 'Current weather in a city',
          inputSchema: jsonSchema<{ city: string }>({
            type: 'object',
            properties: { city: { type: 'string' } },
            required: ['city'],
          }),
        }),
      },
      maxRetries: 0,
    });
    const toolCalls = await result.toolCalls;
    expect(toolCalls).toHaveLength(1);
    expect(toolCalls[0]).toMatchObject({ toolName: 'get_weather', input: { city: 'Oslo' } });
    expect(await result.finishReason).toBe('tool-calls');
  });

  it('serves streamText and tool calls through @ai-sdk/openai', async () => {
    const model = createOpenAI({ baseURL: server.url, apiKey: 'test-key' }).chat('mock-model');
    const text = streamText({ model, prompt: 'hello there', maxRetries: 0 });
    expect(await text.text).toBe('echo: hello there');
    expect((await text.usage).inputTokens).toBe(2);

    const called = await generateText({
      model,
      prompt: 'call get_weather {"city":"Bergen"}',
      tools: {
        get_weather: tool({
          inputSchema: jsonSchema<{ city: string }>({
            type: 'object',
            properties: { city: { type: 'string' } },
          }),
        }),
      },
      maxRetries: 0,
    });
    expect(called.toolCalls[0]).toMatchObject({
      toolName: 'get_weather',
      input: { city: 'Bergen' },
    });
  });
});
