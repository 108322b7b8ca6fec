import type OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockModelServer, type MockModelServer } from '../src/testing/index.ts';
import { apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { collect, openAiClient, weatherTool } from './support/openai-fixtures.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * Tool-call arguments through `/v1/chat/completions` reach the client as the provider wrote
 * them: arguments that are not JSON (an answer cut off at its output limit) are passed on as
 * their text, not encoded a second time into a JSON string literal, and JSON arguments still
 * arrive as JSON. Both provider paths (`openai-compatible`, called directly, and `openai`,
 * through the AI SDK), streaming or not.
 */
let mock: MockModelServer;
let server: TestServer;
let client: OpenAI;

/** The arguments the mock answers with: the text after the last `args:` of the user message. */
function argumentsOf(request: { readonly messages: readonly { content?: unknown }[] }): string {
  const content = request.messages.at(-1)?.content;
  return String(content).slice(String(content).lastIndexOf('args:') + 'args:'.length);
}

beforeAll(async () => {
  mock = await createMockModelServer({
    apiKey: 'mock-secret-key',
    script: (request) => {
      const text = argumentsOf(request);
      let parsed: Record<string, unknown> | undefined;
      try {
        parsed = JSON.parse(text) as Record<string, unknown>;
      } catch {
        parsed = undefined;
      }
      return {
        toolCalls: [{ id: 'call_w', name: 'get_weather', arguments: parsed ?? text }],
        finishReason: parsed === undefined ? 'length' : 'tool_calls',
      };
    },
  });
  server = await startTestServer(
    {
      providers: {
        direct: { type: 'openai-compatible', baseUrl: mock.url, apiKeyEnv: 'MOCK_API_KEY' },
        sdk: { type: 'openai', baseUrl: mock.url, apiKeyEnv: 'MOCK_API_KEY' },
      },
    },
    { env: { MOCK_API_KEY: 'mock-secret-key' } },
  );
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'tool-arguments');
  client = openAiClient(
    server.url,
    (await seedUser(operator, { tenantId, role: 'member' })).secret,
  );
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await mock?.close();
});

/** The first tool call's arguments and the finish reason of a completion asking for `args`. */
async function complete(model: string, options: { args: string; stream: boolean }) {
  const request = {
    model,
    messages: [{ role: 'user' as const, content: `weather please args:${options.args}` }],
    tools: [weatherTool],
  };
  if (!options.stream) {
    const completion = await client.chat.completions.create(request);
    const call = completion.choices[0]?.message.tool_calls?.[0];
    return {
      arguments: call?.type === 'function' ? call.function.arguments : undefined,
      finishReason: completion.choices[0]?.finish_reason,
    };
  }
  const chunks = await collect(await client.chat.completions.create({ ...request, stream: true }));
  return {
    arguments: chunks
      .flatMap((chunk) => chunk.choices[0]?.delta.tool_calls ?? [])
      .map((delta) => delta.function?.arguments ?? '')
      .join(''),
    finishReason: chunks.findLast((chunk) => chunk.choices[0]?.finish_reason != null)?.choices[0]
      ?.finish_reason,
  };
}

describe('tool-call arguments from the provider', () => {
  for (const model of ['direct:mock-model', 'sdk:mock-model'])
    for (const stream of [false, true]) {
      const how = `${model}, ${stream ? 'streaming' : 'not streaming'}`;

      it(`passes arguments that are not JSON on as the provider wrote them (${how})`, async () => {
        const answer = await complete(model, { args: '{"city": "Par', stream });
        expect(answer.arguments).toBe('{"city": "Par');
        expect(answer.finishReason).toBe('length');
      });

      it(`passes JSON arguments on as JSON (${how})`, async () => {
        const answer = await complete(model, { args: '{"city": "Paris"}', stream });
        expect(JSON.parse(answer.arguments ?? '')).toEqual({ city: 'Paris' });
        expect(answer.finishReason).toBe('tool_calls');
      });
    }
});
