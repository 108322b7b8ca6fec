import type OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createMockModelServer, type MockModelServer } from '../src/testing/index.ts';
import { apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { openAiClient } from './support/openai-fixtures.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * `/v1/chat/completions` without `max_tokens`: servers of small models (vLLM, llama.cpp)
 * refuse a prompt whose tokens plus `max_tokens` exceed their context, so Brigade's default
 * limit is fitted to what the prompt leaves of a deployment's known window, by its token count
 * (exact for an OpenAI family, plus 25 % for other models). A limit the client set is sent as
 * set, and a deployment of unknown size gets the default.
 */
let mock: MockModelServer;
let server: TestServer;
let client: OpenAI;
const window = 2_000;
const defaultLimit = 4_096;

beforeAll(async () => {
  mock = await createMockModelServer({ apiKey: 'mock-secret-key' });
  server = await startTestServer(
    {
      providers: {
        direct: { type: 'openai-compatible', baseUrl: mock.url, apiKeyEnv: 'MOCK_API_KEY' },
        sdk: { type: 'openai', baseUrl: mock.url, apiKeyEnv: 'MOCK_API_KEY' },
      },
      routes: [
        { name: 'small', deployments: [{ model: 'direct:mock-model', contextTokens: window }] },
        { name: 'small-sdk', deployments: [{ model: 'sdk:mock-model', contextTokens: window }] },
        {
          name: 'small-openai',
          deployments: [{ model: 'direct:gpt-4o-mini', contextTokens: window }],
        },
      ],
    },
    { env: { MOCK_API_KEY: 'mock-secret-key' } },
  );
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'output-limit');
  client = openAiClient(
    server.url,
    (await seedUser(operator, { tenantId, role: 'member' })).secret,
  );
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await mock?.close();
});

beforeEach(() => mock.reset());

/** The output limit the provider was sent by the last call (either of OpenAI's two names). */
function sentLimit(): number {
  const body = mock.calls.at(-1)?.body as Record<string, unknown> | undefined;
  return Number(body?.['max_completion_tokens'] ?? body?.['max_tokens']);
}

async function complete(model: string, content: string, maxTokens?: number): Promise<void> {
  const completion = await client.chat.completions.create({
    model,
    messages: [{ role: 'user', content }],
    ...(maxTokens === undefined ? {} : { max_tokens: maxTokens }),
  });
  expect(completion.choices[0]?.message.content).toBeTypeOf('string');
}

describe('the output limit sent to a provider', () => {
  it.each(['small', 'small-sdk'])(
    'leaves the prompt room in a small window when the client set no limit (%s)',
    async (model) => {
      // 3,000 bytes (1,000 tokens at 3 bytes a token): 608 tokens, 760 with the margin of a
      // model counted approximately.
      await complete(model, 'word '.repeat(600));
      expect(sentLimit()).toBe(window - 760);
      await complete(model, 'hi');
      expect(sentLimit()).toBeGreaterThan(window - 100);
      expect(sentLimit()).toBeLessThan(window);
    },
  );

  it('leaves an OpenAI model what its exact count leaves', async () => {
    await complete('small-openai', 'word '.repeat(600));
    expect(sentLimit()).toBe(window - 608);
  });

  it('sends a limit the client chose as chosen, even past the window', async () => {
    await complete('small', 'word '.repeat(600), 3_000);
    expect(sentLimit()).toBe(3_000);
    await complete('small', 'hi', 50);
    expect(sentLimit()).toBe(50);
  });

  it('sends the default where the window is unknown or large', async () => {
    await complete('direct:mock-model', 'word '.repeat(600));
    expect(sentLimit()).toBe(defaultLimit);
    await complete('direct:gpt-4o', 'word '.repeat(600)); // 128k tokens (the built-in table)
    expect(sentLimit()).toBe(defaultLimit);
  });

  it('asks for at least 256 tokens when the estimate leaves less', async () => {
    // 1,508 tokens, 1,885 with the margin: it fits, with less than 256 left.
    await complete('small', 'word '.repeat(1_500));
    expect(sentLimit()).toBe(256);
  });
});
