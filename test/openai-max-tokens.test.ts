import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createMockModelServer, type MockModelServer } from '../src/testing/index.ts';
import { apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { collect, openAiClient } from './support/openai-fixtures.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * The output limit a provider is sent through `/v1/chat/completions`: the client's own
 * (`max_completion_tokens` or `max_tokens`), or none when it named none — a forced default can
 * exceed a small model's context, which vLLM and llama.cpp refuse — except to Anthropic, which
 * requires one and gets Brigade's default. An agent run sends its agent's `maxOutputTokens`.
 */
let mock: MockModelServer;
let anthropic: Server;
/** Bodies of the requests the Anthropic stand-in received. */
const anthropicBodies: Record<string, unknown>[] = [];
let server: TestServer;
let client: OpenAI;

/** A stand-in for Anthropic's Messages API: records each body, answers `hi`. */
function startAnthropic(): Promise<string> {
  anthropic = createServer((request, response) => {
    let text = '';
    request.setEncoding('utf8');
    request.on('data', (chunk: string) => {
      text += chunk;
    });
    request.on('end', () => {
      anthropicBodies.push(JSON.parse(text) as Record<string, unknown>);
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(
        JSON.stringify({
          id: 'msg_1',
          type: 'message',
          role: 'assistant',
          model: 'claude-sonnet-4-5',
          content: [{ type: 'text', text: 'hi' }],
          stop_reason: 'end_turn',
          stop_sequence: null,
          usage: { input_tokens: 3, output_tokens: 1 },
        }),
      );
    });
  });
  return new Promise((resolve) =>
    anthropic.listen(0, '127.0.0.1', () =>
      resolve(`http://127.0.0.1:${(anthropic.address() as AddressInfo).port}/v1`),
    ),
  );
}

/** The body of the last chat request the mock received. */
const lastBody = () => mock.calls.at(-1)?.body as Record<string, unknown>;

beforeAll(async () => {
  mock = await createMockModelServer({ apiKey: 'mock-secret-key' });
  const anthropicUrl = await startAnthropic();
  server = await startTestServer(
    {
      providers: {
        direct: { type: 'openai-compatible', baseUrl: mock.url, apiKeyEnv: 'MOCK_API_KEY' },
        sdk: { type: 'openai', baseUrl: mock.url, apiKeyEnv: 'MOCK_API_KEY' },
        claude: { type: 'anthropic', baseUrl: anthropicUrl, apiKeyEnv: 'MOCK_API_KEY' },
      },
      routes: [{ name: 'routed', deployments: [{ model: 'direct:mock-model' }] }],
    },
    { env: { MOCK_API_KEY: 'mock-secret-key' } },
  );
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'max-tokens');
  const admin = apiClient(
    server.url,
    (await seedUser(operator, { tenantId, role: 'admin' })).secret,
  );
  const agent = { name: 'terse', model: 'direct:mock-model', maxOutputTokens: 300 };
  expect((await admin.post('/v1/agents', agent)).status).toBe(201);
  client = openAiClient(
    server.url,
    (await seedUser(operator, { tenantId, role: 'member' })).secret,
  );
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await mock?.close();
  await new Promise((resolve) => anthropic?.close(resolve));
});

beforeEach(() => {
  mock.reset();
});

/** A completion of `model` with `extra` fields, streamed or not. */
async function complete(model: string, extra: Record<string, unknown>, stream = false) {
  const request = { model, messages: [{ role: 'user' as const, content: 'hello' }], ...extra };
  if (stream) await collect(await client.chat.completions.create({ ...request, stream: true }));
  else await client.chat.completions.create(request);
}

describe('the output limit sent to the provider', () => {
  for (const model of ['direct:mock-model', 'routed', 'sdk:mock-model'])
    for (const stream of [false, true]) {
      const how = `${model}, ${stream ? 'streaming' : 'not streaming'}`;

      it(`is none when the client named none (${how})`, async () => {
        await complete(model, {}, stream);
        expect(lastBody()).not.toHaveProperty('max_tokens');
        expect(lastBody()).not.toHaveProperty('max_completion_tokens');
      });

      it(`is the client's max_tokens or max_completion_tokens (${how})`, async () => {
        await complete(model, { max_tokens: 50 }, stream);
        const sent = lastBody();
        expect(sent['max_tokens'] ?? sent['max_completion_tokens']).toBe(50);
        await complete(model, { max_completion_tokens: 60, max_tokens: 50 }, stream);
        const preferred = lastBody();
        expect(preferred['max_tokens'] ?? preferred['max_completion_tokens']).toBe(60);
      });
    }

  it('is the agent’s maxOutputTokens in an agent:<name> run', async () => {
    await complete('agent:terse', {});
    expect(lastBody()['max_tokens']).toBe(300);
  });

  it('is Brigade’s default (4096) for Anthropic, which requires one, and the client’s when named', async () => {
    await complete('claude:claude-sonnet-4-5', {});
    expect(anthropicBodies.at(-1)?.['max_tokens']).toBe(4096);
    await complete('claude:claude-sonnet-4-5', { max_tokens: 70 });
    expect(anthropicBodies.at(-1)?.['max_tokens']).toBe(70);
  });
});
