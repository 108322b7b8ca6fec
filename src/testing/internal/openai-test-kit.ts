import { OpenAI } from 'openai';
import type { ChatCompletionChunk, ChatCompletionTool } from 'openai/resources/chat/completions';
import { createMockModelServer } from '../mock-model-server.ts';
import type { MockModelServer, MockModelServerOptions } from './mock-model-types.ts';

/** A function tool the default script can be asked to call (`call get_weather {...}`). */
export const weatherTool: ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

/** The smallest chat request: two words from the user, answered `echo: hello there`. */
export const hello = {
  model: 'mock-model',
  messages: [{ role: 'user' as const, content: 'hello there' }],
};

/** Options of {@link clientFor}. */
export interface TestClientOptions {
  readonly apiKey?: string;
  /** Request timeout in milliseconds. */
  readonly timeout?: number;
  /** Defaults to 0, so a fault surfaces as the first error. */
  readonly maxRetries?: number;
}

/** An official `openai` client pointed at `target`, silent and without retries by default. */
export function clientFor(target: MockModelServer, options: TestClientOptions = {}): OpenAI {
  return new OpenAI({
    baseURL: target.url,
    apiKey: options.apiKey ?? 'test-key',
    maxRetries: options.maxRetries ?? 0,
    logLevel: 'off',
    ...(options.timeout === undefined ? {} : { timeout: options.timeout }),
  });
}

/** Reads a chunk stream to its end. */
export async function collect(
  stream: AsyncIterable<ChatCompletionChunk>,
): Promise<ChatCompletionChunk[]> {
  const chunks: ChatCompletionChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

/** Sends a chat request with plain fetch, so no client retries or parsing get in the way. */
export function postChat(
  target: MockModelServer,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(`${target.url}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer test-key', ...headers },
    body: JSON.stringify(body),
  });
}

/** Runs `run` against a server of its own, closed afterwards whatever happens. */
export async function withServer(
  options: MockModelServerOptions,
  run: (target: MockModelServer) => Promise<void>,
): Promise<void> {
  const target = await createMockModelServer(options);
  try {
    await run(target);
  } finally {
    await target.close();
  }
}
