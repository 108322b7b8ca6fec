import type OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createMockModelServer, type MockModelServer } from '../src/testing/index.ts';
import {
  type ApiClient,
  apiClient,
  seedTenant,
  seedUser,
  usageWhen,
} from './support/api-client.ts';
import { openAiClient } from './support/openai-fixtures.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * Providers serve repeated prompt prefixes from a cache and bill those tokens less
 * (`usage.prompt_tokens_details.cached_tokens`). They are metered: the usage record counts
 * them, the cost prices them at the cached rate, and the OpenAI-compatible answer passes them
 * on. Through Brigade's own caller (`openai-compatible`) and the AI SDK's (`openai`),
 * streamed and not.
 */
let mock: MockModelServer;
let server: TestServer;
let client: OpenAI;
let member: ApiClient;

// $1,000 per million input tokens, $100 per million cached ones, output free: a call of 30
// prompt tokens of which 20 cached costs 10 × 1,000 + 20 × 100 = 12,000 micro-USD.
const price = { inputPerMTok: 1000, outputPerMTok: 0, cachedInputPerMTok: 100 };

beforeAll(async () => {
  mock = await createMockModelServer({ apiKey: 'mock-secret-key' });
  server = await startTestServer(
    {
      providers: {
        direct: { type: 'openai-compatible', baseUrl: mock.url, apiKeyEnv: 'MOCK_API_KEY' },
        sdk: { type: 'openai', baseUrl: mock.url, apiKeyEnv: 'MOCK_API_KEY' },
      },
      models: { prices: { 'mock-model': price } },
    },
    { env: { MOCK_API_KEY: 'mock-secret-key' } },
  );
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'cached-tokens');
  const secret = (await seedUser(operator, { tenantId, role: 'member' })).secret;
  client = openAiClient(server.url, secret);
  member = apiClient(server.url, secret);
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await mock?.close();
});

beforeEach(() => {
  mock.reset();
  mock.setScript(() => ({
    text: 'ok',
    usage: { promptTokens: 30, completionTokens: 5, cachedTokens: 20 },
  }));
});

interface UsageReport {
  totals: { requests: number };
  data: { model: string; requests: number; cachedTokens: number; costUsd: number }[];
}

describe('prompt tokens served from the provider’s cache', () => {
  it.each(['direct', 'sdk'])('are metered and priced at the cached rate (%s)', async (provider) => {
    const model = `${provider}:mock-model`;
    const plain = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'hello' }],
    });
    expect(plain.usage).toMatchObject({
      prompt_tokens: 30,
      completion_tokens: 5,
      prompt_tokens_details: { cached_tokens: 20 },
    });
    const stream = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'hello' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let streamedUsage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) streamedUsage = chunk.usage ?? streamedUsage;
    expect(streamedUsage?.prompt_tokens_details?.cached_tokens).toBe(20);

    // Usage records are written in batches: wait for both.
    const rowOf = (report: UsageReport) =>
      report.data.find((candidate) => candidate.model === model);
    const report = await usageWhen<UsageReport>(
      member,
      'groupBy=model',
      (current) => rowOf(current)?.requests === 2,
    );
    const row = rowOf(report);
    expect(row).toMatchObject({ requests: 2, cachedTokens: 40 });
    expect(row?.costUsd).toBeCloseTo(2 * 0.012, 9);
  });
});
