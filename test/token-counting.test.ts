import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import type OpenAI from 'openai';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createMockModelServer, type MockModelServer } from '../src/testing/index.ts';
import { apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { collect, failureOf, openAiClient } from './support/openai-fixtures.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * Token counts through `/v1/chat/completions`: a prompt larger than a deployment's context by
 * a tokenizer's count is not sent to it (and falls over to a route that holds it), one that
 * fits by the count is sent though its bytes say otherwise, and a provider's missing usage is
 * counted with a tokenizer and marked estimated. `small` (a mock) counts the calls it gets;
 * `big` answers the fallback's.
 */
let small: MockModelServer;
let big: MockModelServer;
let server: TestServer;
let client: OpenAI;
let tenantId: string;

/** 400 words: 401 o200k tokens (the last space is one), 408 with a user message's overhead. */
const fourHundredTokens = 'word '.repeat(400);

beforeAll(async () => {
  small = await createMockModelServer();
  big = await createMockModelServer({ script: () => ({ text: 'big here' }) });
  server = await startTestServer(
    {
      providers: {
        p: { type: 'openai-compatible', baseUrl: small.url },
        sdk: { type: 'openai', baseUrl: small.url, apiKeyEnv: 'SDK_KEY' },
        b: { type: 'openai-compatible', baseUrl: big.url },
      },
      routes: [
        { name: 'small', deployments: [{ model: 'p:m-small', contextTokens: 300 }] },
        {
          name: 'smallfb',
          deployments: [{ model: 'p:m-small', contextTokens: 300 }],
          fallbacks: [{ route: 'big', on: ['context_length'] }],
        },
        { name: 'big', deployments: [{ model: 'b:m-big', contextTokens: 100_000 }] },
        { name: 'roomy', deployments: [{ model: 'p:m-mid', contextTokens: 600 }] },
        // An OpenAI family is counted with its own encoding: no margin.
        { name: 'exact', deployments: [{ model: 'p:gpt-4o-mini', contextTokens: 407 }] },
      ],
      limits: { requestsPerMinute: { key: 1_000_000, user: 1_000_000, tenant: 1_000_000 } },
    },
    { env: { SDK_KEY: 'unused' } },
  );
  const operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'token-counting');
  client = openAiClient(
    server.url,
    (await seedUser(operator, { tenantId, role: 'member' })).secret,
  );
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await small?.close();
  await big?.close();
});

beforeEach(() => {
  small.reset();
  big.reset();
});

const messages = (content: string) => [{ role: 'user' as const, content }];
const ask = (model: string, content: string) =>
  client.chat.completions.create({ model, messages: messages(content) });
const askStreamed = (model: string, content: string) =>
  client.chat.completions
    .create({ model, messages: messages(content), stream: true })
    .then(collect);
const either = (stream: boolean, model: string, content: string): Promise<unknown> =>
  stream ? askStreamed(model, content) : ask(model, content);

describe('a prompt larger than a deployment’s context by its token count', () => {
  it.each([false, true])(
    'is refused with 400 context_length_exceeded before any provider is called (stream: %s)',
    async (stream) => {
      const error = await failureOf(either(stream, 'small', fourHundredTokens));
      expect(error.status).toBe(400);
      expect(error.code).toBe('context_length_exceeded');
      expect(small.calls).toHaveLength(0);
      // An OpenAI family is judged by its exact count: 408 tokens do not fit 407.
      expect((await failureOf(either(stream, 'exact', fourHundredTokens))).status).toBe(400);
      expect(small.calls).toHaveLength(0);
    },
  );

  it('is refused for a direct model of the built-in table (900 KB, 180k tokens, to gpt-4o’s 128k)', async () => {
    const error = await failureOf(ask('p:gpt-4o', 'word '.repeat(180_000)));
    expect(error.status).toBe(400);
    expect(error.code).toBe('context_length_exceeded');
    expect(small.calls).toHaveLength(0);
  });

  it('goes to the route’s context_length fallback that holds it', async () => {
    const answer = await ask('smallfb', fourHundredTokens);
    expect(answer.choices[0]?.message.content).toBe('big here');
    expect(small.calls).toHaveLength(0);
    expect(big.calls).toHaveLength(1);
  });
});

describe('a prompt that fits by its token count', () => {
  it('is sent though its bytes are more than the window (at 3 or even 8 bytes a token)', async () => {
    await ask('roomy', fourHundredTokens); // 2,000 bytes, 408 tokens, in 600
    await ask('exact', 'word '.repeat(399)); // 407 tokens, in 407
    // A markdown rule of 8,000 dashes is 125 tokens (the old floor said 1,000).
    const rule = '-'.repeat(8_000);
    await ask('roomy', rule);
    expect(small.calls).toHaveLength(3);
    expect(textOf(small.calls[2]?.body)).toBe(rule);
  });
});

function textOf(body: unknown): unknown {
  return (body as { messages: { content: unknown }[] }).messages.at(-1)?.content;
}

/** The usage records of the tenant, newest first. */
async function usageRecords(): Promise<
  { input_tokens: number; output_tokens: number; estimated: boolean; status: string }[]
> {
  const database = new pg.Client({ connectionString: server.database.url });
  await database.connect();
  try {
    const { rows } = await database.query(
      `select input_tokens, output_tokens, estimated, status from brigade.usage_records
        where tenant_id = $1 order by created_at desc`,
      [tenantId],
    );
    return rows;
  } finally {
    await database.end();
  }
}

describe('usage a provider leaves out', () => {
  const content = 'hello '.repeat(300);
  // What OpenAI would report: the text's tokens plus 7 of the chat format.
  const promptTokens = countTokens(content) + 7;
  const answerTokens = countTokens(`echo: ${content}`);
  const near = (value: number | undefined, expected: number) => {
    expect(value).toBeGreaterThanOrEqual(expected * 0.97);
    expect(value).toBeLessThanOrEqual(expected * 1.03);
  };

  it.each([
    ['p:mock-model', false],
    ['p:mock-model', true],
    ['sdk:mock-model', false],
    ['sdk:mock-model', true],
  ] as const)(
    'is counted with a tokenizer and marked estimated (%s, stream: %s)',
    async (model, stream) => {
      small.setFaults({ omitUsage: true });
      const usage = stream
        ? (
            await client.chat.completions
              .create({
                model,
                messages: [{ role: 'user', content }],
                stream: true,
                stream_options: { include_usage: true },
              })
              .then(collect)
          ).at(-1)?.usage
        : (await ask(model, content)).usage;
      near(usage?.prompt_tokens, promptTokens);
      near(usage?.completion_tokens, answerTokens);
      const [record] = await usageRecords();
      expect(record).toMatchObject({ estimated: true, status: 'ok' });
      near(record?.input_tokens, promptTokens);
      near(record?.output_tokens, answerTokens);
    },
  );

  it('is counted for a stream cut off after output began, which the provider bills', async () => {
    small.setFaults({ omitUsage: true, resetAfterChunks: 4 });
    const failed = await client.chat.completions
      .create({ model: 'p:mock-model', messages: [{ role: 'user', content }], stream: true })
      .then(collect)
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    expect(failed).toBeDefined();
    const [record] = await usageRecords();
    expect(record).toMatchObject({ estimated: true, status: 'error' });
    near(record?.input_tokens, promptTokens);
    // `echo: hello hello` streamed: a few tokens, not its characters.
    expect(record?.output_tokens).toBeGreaterThan(0);
    expect(record?.output_tokens).toBeLessThan(6);
  });
});
